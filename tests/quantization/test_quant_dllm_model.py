"""Quant-dLLM on whole models: block-wise quantization, save → reload through transformers, quantize at load,
dequantize, loud failure without the plugin, and bad input."""

import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from tests.utils.models import tiny_dream_config, tiny_llada_config
from hf_dlm import DreamModel, LLaDAModelLM, QuantDLLMConfig, QuantDLLMLinear, QuantDLLMQuantizer
from hf_dlm.quantization import quantization_report

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "src")


def _config(**overrides) -> QuantDLLMConfig:
    kwargs = dict(block_size=16, abmp_fraction=0.25, num_calibration_sequences=8, calibration_seq_len=24,
                  mcs_timesteps=2, rsr_iterations=3, calibration_batch_size=4)
    kwargs.update(overrides)
    return QuantDLLMConfig(**kwargs)


def _calibration(seed=0) -> torch.Tensor:
    return torch.randint(0, 90, (8, 24), generator=torch.Generator().manual_seed(seed))


def _quantized_llada(**overrides):
    torch.manual_seed(0)
    model = LLaDAModelLM(tiny_llada_config()).eval()
    quantizer = QuantDLLMQuantizer(_config(**overrides))
    quantizer.quantize_model(model, calibration_data=_calibration(), show_progress=False)
    return model, quantizer


def _run(script: str, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": SRC, **env}
    return subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True,
                          timeout=300)


def test_quantize_model_converts_block_linears_only():
    model, quantizer = _quantized_llada()
    converted = {n for n, m in model.named_modules() if isinstance(m, QuantDLLMLinear)}
    assert len(converted) == 2 * 7
    # LLaDA's head and its MLP down-projections are all `ff_out`: only the head stays dense
    assert isinstance(model.model.transformer.ff_out, nn.Linear)
    assert isinstance(model.model.transformer.blocks[0].ff_out, QuantDLLMLinear)
    assert model.config.quantization_config.modules_to_not_convert == ["model.transformer.wte",
                                                                       "model.transformer.ff_out"]
    report = quantization_report(model)
    assert report["sign_bits_per_weight"] == 2.0
    assert len(quantizer.block_reports) == 2
    for block in quantizer.block_reports:
        assert block.seconds > 0 and set(block.layers) == {"q_proj", "k_proj", "v_proj", "attn_out", "ff_proj",
                                                           "up_proj", "ff_out"}
        assert block.cpu_seconds > 0 and 0 <= block.statistics_seconds <= block.seconds
        if sys.platform == "linux":  # the peak resident set comes from /proc
            assert block.peak_rss_bytes >= block.rss_bytes * 0.5 > 0
        for layer in block.layers.values():
            assert layer["seconds"] > 0
            assert layer["objective_final"] <= layer["objective_init"]
            assert sum(layer["block_orders"]) == 2 * len(layer["block_orders"])


def test_statistics_stream_into_one_shared_accumulator_per_input():
    """S_MCS = Σ_b X_bᵀX_b accumulated in place; q/k/v (and ff_proj/up_proj) read the same input and share one
    tensor. Reference: the inputs captured by plain hooks, multiplied out here."""
    torch.manual_seed(0)
    model = LLaDAModelLM(tiny_llada_config()).eval()
    quantizer = QuantDLLMQuantizer(_config())
    from hf_dlm.quantization.quantizer import convertible_linears, find_blocks

    prefix, blocks = find_blocks(model)
    inputs = quantizer.calibration_inputs(model, _calibration(), None)
    hidden, extras = quantizer._capture_first_block_inputs(model, blocks, inputs)
    linears = convertible_linears(blocks[0], [], prefix=f"{prefix}.0")
    captured = {}
    handles = [linear.register_forward_pre_hook(
        lambda module, args, name=name: captured.setdefault(name, []).append(args[0].reshape(-1, args[0].shape[-1])))
        for name, linear in linears]
    with torch.no_grad():
        statistics = quantizer._statistics(blocks[0], linears, hidden, extras)
    for handle in handles:
        handle.remove()
    assert len(hidden) == 4  # 16 MCS rows in batches of 4: four accumulation steps
    assert statistics["q_proj"] is statistics["k_proj"] is statistics["v_proj"]
    assert statistics["ff_proj"] is statistics["up_proj"] and statistics["ff_proj"] is not statistics["q_proj"]
    for name, parts in captured.items():
        x = torch.cat(parts).double()
        assert torch.allclose(statistics[name].double(), x.T @ x, rtol=1e-5, atol=1e-4), name


def test_calibration_inputs_are_mcs_masked():
    torch.manual_seed(0)
    model = LLaDAModelLM(tiny_llada_config()).eval()
    quantizer = QuantDLLMQuantizer(_config(prefix_ratio=0.5))
    inputs = quantizer.calibration_inputs(model, _calibration(), None)
    assert inputs.shape == (8 * 2, 24)
    assert quantizer.config.mask_token_id == 95
    assert not (inputs[:, :12] == 95).any() and (inputs[:, 12:] == 95).any()
    plain = QuantDLLMQuantizer(_config(use_mcs=False)).calibration_inputs(model, _calibration(), None)
    assert torch.equal(plain, _calibration())


def test_save_reload_in_fresh_process_gives_identical_logits_and_generates(tmp_path):
    model, _ = _quantized_llada()
    ids = torch.randint(0, 90, (2, 12), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        logits = model(ids).logits
    model.save_pretrained(tmp_path / "q")
    torch.save({"ids": ids, "logits": logits}, tmp_path / "expected.pt")
    saved = json.loads((tmp_path / "q" / "config.json").read_text())
    assert saved["quantization_config"]["quant_method"] == "quant_dllm"
    script = f"""
import torch, hf_dlm
from transformers import AutoModelForCausalLM
from hf_dlm import QuantDLLMLinear
model = AutoModelForCausalLM.from_pretrained({str(tmp_path / 'q')!r}).eval()
assert isinstance(model.model.transformer.blocks[1].up_proj, QuantDLLMLinear)
assert model.model.transformer.blocks[1].up_proj.row_scale.dtype == torch.float16
expected = torch.load({str(tmp_path / 'expected.pt')!r}, weights_only=True)
with torch.no_grad():
    assert torch.equal(model(expected["ids"]).logits, expected["logits"])
out = model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=8, steps=4, block_length=8)
assert out.shape == (1, 11) and not (out == model.config.mask_token_id).any()
print("OK")
"""
    result = _run(script)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


def test_reload_with_mismatched_config_raises(tmp_path):
    model, _ = _quantized_llada()
    model.save_pretrained(tmp_path / "q")
    path = tmp_path / "q" / "config.json"
    data = json.loads(path.read_text())
    data["quantization_config"]["block_size"] = 32
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="does not match the weights"):
        AutoModelForCausalLM.from_pretrained(tmp_path / "q")


def test_quantize_at_load_equals_quantize_model(tmp_path):
    torch.manual_seed(0)
    LLaDAModelLM(tiny_llada_config()).save_pretrained(tmp_path / "fp")
    data = _calibration().tolist()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "fp", quantization_config=_config(dataset=data))
    assert isinstance(loaded.model.transformer.blocks[0].q_proj, QuantDLLMLinear)
    reference = AutoModelForCausalLM.from_pretrained(tmp_path / "fp")
    QuantDLLMQuantizer(_config()).quantize_model(reference, calibration_data=torch.tensor(data),
                                                 show_progress=False)
    ids = torch.randint(0, 90, (2, 10))
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, reference(ids).logits)


def test_quantize_at_load_without_data_is_a_clear_error(tmp_path):
    torch.manual_seed(0)
    LLaDAModelLM(tiny_llada_config()).save_pretrained(tmp_path / "fp")
    with pytest.raises(ValueError, match="calibration data"):
        AutoModelForCausalLM.from_pretrained(tmp_path / "fp", quantization_config=_config())


def test_dequantize_restores_dense_linears():
    model, _ = _quantized_llada()
    ids = torch.randint(0, 90, (2, 10))
    with torch.no_grad():
        quantized = model(ids).logits
        model.dequantize()
        dense = model(ids).logits
    assert not any(isinstance(m, QuantDLLMLinear) for m in model.modules())
    assert getattr(model.config, "quantization_config", None) is None
    assert torch.allclose(dense, quantized, atol=1e-5)


def test_dream_with_biases_quantizes_and_keeps_bias():
    torch.manual_seed(0)
    model = DreamModel(tiny_dream_config()).eval()
    q_bias = model.model.layers[0].self_attn.q_proj.bias.detach().clone()
    QuantDLLMQuantizer(_config()).quantize_model(model, calibration_data=_calibration(), show_progress=False)
    layer = model.model.layers[0].self_attn.q_proj
    assert isinstance(layer, QuantDLLMLinear) and torch.equal(layer.bias, q_bias)
    assert isinstance(model.lm_head, nn.Linear)
    with torch.no_grad():
        assert torch.isfinite(model(torch.randint(0, 90, (1, 8))).logits).all()


def test_data_free_config_needs_no_calibration():
    torch.manual_seed(0)
    model = LLaDAModelLM(tiny_llada_config()).eval()
    QuantDLLMQuantizer(_config(use_dor=False, abmp_fraction=0.0)).quantize_model(model, show_progress=False)
    assert isinstance(model.model.transformer.blocks[0].q_proj, QuantDLLMLinear)
    with pytest.raises(ValueError, match="calibration data"):
        QuantDLLMQuantizer(_config()).quantize_model(LLaDAModelLM(tiny_llada_config()), show_progress=False)


def test_checkpoint_without_plugin_fails_loudly_and_loads_with_it(tmp_path):
    """A native architecture quantized by us: transformers alone must refuse it, not load random weights."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    model = LlamaForCausalLM(config).eval()
    QuantDLLMQuantizer(_config(use_mcs=False)).quantize_model(model, calibration_data=_calibration() % 60,
                                                              show_progress=False)
    ids = torch.randint(0, 60, (1, 9))
    with torch.no_grad():
        expected = model(ids).logits
    model.save_pretrained(tmp_path / "llama")
    without = f"""
from transformers import AutoModelForCausalLM
try:
    AutoModelForCausalLM.from_pretrained({str(tmp_path / 'llama')!r})
except Exception as error:
    print("REFUSED", type(error).__name__)
else:
    print("LOADED")
"""
    result = _run(without)
    assert "REFUSED" in result.stdout, result.stdout + result.stderr[-2000:]
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "llama").eval()
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, expected)


def test_mcs_needs_a_mask_token():
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2)
    with pytest.raises(ValueError, match="mask token"):
        QuantDLLMQuantizer(_config()).quantize_model(LlamaForCausalLM(config), calibration_data=_calibration(),
                                                     show_progress=False)


def _triton_installed() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _triton_installed(), reason="triton is not installed")
def test_triton_kernel_matches_torch_path_in_interpreter():
    """The GPU kernel's arithmetic, run by Triton's interpreter on CPU, equals the torch reference path."""
    script = """
import torch
from hf_dlm.quantization import QuantDLLMConfig, quantize_weight
from hf_dlm.quantization.triton_kernel import packed_matmul
g = torch.Generator().manual_seed(0)
weight, x = torch.randn(70, 136, generator=g), torch.randn(512, 136, generator=g)
config = QuantDLLMConfig(block_size=16, abmp_fraction=0.25, rsr_iterations=2)
layer = quantize_weight(weight, config, statistics=x.T @ x).layer
inputs = torch.randn(21, 136, generator=g)
input_index, plane_index = layer.layout()
scaled = inputs[:, input_index] * layer.col_scale.float()
out = packed_matmul(scaled, layer.weight, layer.row_scale, plane_index)
assert torch.allclose(out, layer(inputs), atol=1e-4, rtol=1e-4), (out - layer(inputs)).abs().max()
print("OK")
"""
    result = _run(script, TRITON_INTERPRET="1")
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


@pytest.mark.skipif(not torch.cuda.is_available() or not _triton_installed(), reason="needs CUDA and Triton")
def test_triton_kernel_matches_torch_path_on_gpu():
    from hf_dlm.quantization import quantize_weight

    g = torch.Generator().manual_seed(0)
    weight, x = torch.randn(200, 136, generator=g), torch.randn(512, 136, generator=g)
    layer = quantize_weight(weight, _config(), statistics=x.T @ x).layer.cuda()
    inputs = torch.randn(3, 37, 136, device="cuda")
    layer.kernel = "torch"
    reference = layer(inputs)
    layer.kernel = "triton"
    assert torch.allclose(layer(inputs), reference, atol=1e-4, rtol=1e-4)
    half = layer(inputs.half())
    assert torch.allclose(half.float(), reference, atol=5e-2, rtol=5e-2)


def test_generate_of_a_2bit_model_runs_the_compiled_cpu_kernels(monkeypatch):
    """`generate` (no grad) reaches the packed layers' compiled CPU path; without the kernels the tokens are the
    same (greedy decoding: the two paths differ by float rounding only)."""
    from hf_dlm.quantization import packed_linear
    from hf_dlm.quantization.cpu_kernel import cpu_kernel

    if cpu_kernel() is None:
        pytest.skip("the compiled CPU kernels could not be built here")
    model, _ = _quantized_llada()
    calls = []
    real = cpu_kernel()

    class Spy:
        def __getattr__(self, name):
            attr = getattr(real, name)
            if not name.endswith("_matmul"):
                return attr
            return lambda *args: calls.append(name) or attr(*args)

    monkeypatch.setattr(packed_linear, "cpu_kernel", lambda: Spy())
    prompt = torch.tensor([[5, 6, 7]])
    fast = model.generate(prompt, max_new_tokens=8, steps=4, block_length=8, temperature=0.0)
    assert calls and set(calls) <= {"lut_matmul", "lut16_matmul", "tile_matmul"}
    monkeypatch.setattr(packed_linear, "cpu_kernel", lambda: None)
    assert torch.equal(model.generate(prompt, max_new_tokens=8, steps=4, block_length=8, temperature=0.0), fast)
