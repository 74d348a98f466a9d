"""`QuantDLLMLinear` storage and forward; `QuantDLLMConfig` serialisation and validation."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from transformers.quantizers.auto import AutoQuantizationConfig

from hf_dlm.quantization import QuantDLLMConfig, quantization_report, quantize_weight
from hf_dlm.quantization.daq import reconstruct
from hf_dlm.quantization.packed_linear import pack_signs, unpack_signs


def test_pack_unpack_round_trip():
    signs = torch.where(torch.rand(5, 37) < 0.5, -1.0, 1.0)
    packed = pack_signs(signs)
    assert packed.dtype == torch.uint8 and packed.shape == (5, math.ceil(37 / 8))
    assert torch.equal(unpack_signs(packed, 37), signs)
    # bit i of byte c is column 8c + i
    one = torch.full((1, 8), -1.0)
    one[0, 3] = 1.0
    assert pack_signs(one).item() == 8


def _quantized(in_features=72, out_features=24, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(out_features, in_features, generator=g)
    x = torch.randn(256, in_features, generator=g)
    config = QuantDLLMConfig(block_size=16, abmp_fraction=0.25, rsr_iterations=4)
    b = torch.randn(out_features, generator=g) if bias else None
    return quantize_weight(weight, config, statistics=x.T @ x, bias=b), weight, config


def test_forward_equals_dense_dequantized_linear():
    result, _, _ = _quantized()
    layer = result.layer
    assert sorted(set(result.block_orders)) == [1, 2, 3] and result.block_orders[-1] == 2  # ragged 72 = 4·16 + 8
    x = torch.randn(3, 5, 72)  # 15 tokens < in_features: the plane-by-plane sum
    dense = F.linear(x, layer.dequantize(torch.float32), layer.bias)
    assert torch.allclose(layer(x), dense, atol=1e-5, rtol=1e-5)
    many = torch.cat([x.reshape(15, 72), torch.randn(100, 72)])  # ≥ in_features tokens: transient dense Ŵ
    assert torch.allclose(layer(many)[:15], layer(x).reshape(15, 24), atol=1e-5, rtol=1e-5)


def test_a_dtype_cast_keeps_the_stored_fp16_scales():
    """`.to(torch.bfloat16)` of a model casts the bias and the compute, not the 2-bit format: the fp16 scales keep
    their dtype and values (bf16 would round them to 7 mantissa bits)."""
    layer = _quantized()[0].layer
    row, col = layer.row_scale.clone(), layer.col_scale.clone()
    assert row.dtype == torch.float16
    x = torch.randn(4, 72)
    expected = F.linear(x.bfloat16().float(), layer.dequantize(torch.float32), layer.bias.bfloat16().float())
    layer.to(torch.bfloat16)
    assert torch.equal(layer.row_scale, row) and torch.equal(layer.col_scale, col)
    assert layer.bias.dtype == torch.bfloat16
    out = layer(x.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, atol=0.05, rtol=0.02)


def test_dequantize_is_sum_of_scaled_sign_planes():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(8, 32, generator=g)
    result = quantize_weight(w, QuantDLLMConfig(block_size=16, abmp_fraction=0.0, use_dor=False, rsr_iterations=3))
    layer = result.layer
    # rebuild Σ_k (α_r,k α_c,kᵀ) ⊙ B_k per block from the stored fp16 factors
    signs = unpack_signs(layer.weight, layer.packed_width)
    row, col = layer.row_scale.float(), layer.col_scale.float()
    blocks = []
    for g_index in range(2):
        planes = [2 * g_index, 2 * g_index + 1]
        cols = [slice(p * 16, (p + 1) * 16) for p in planes]
        blocks.append(reconstruct(torch.stack([row[:, p] for p in planes]).unsqueeze(0),
                                  torch.stack([col[c] for c in cols]).unsqueeze(0),
                                  torch.stack([signs[:, c] for c in cols]).unsqueeze(0))[0])
    assert torch.allclose(layer.dequantize(), torch.cat(blocks, dim=1), atol=1e-6)


def test_stored_bytes_are_sign_bits_plus_scales():
    result, _, config = _quantized(in_features=64, out_features=24, bias=False)
    layer = result.layer
    n, m, groups = 24, 64, 4
    assert layer.weight.dtype == torch.uint8 and layer.weight.numel() == n * config.bits * m // 8
    assert layer.row_scale.dtype == torch.float16 and layer.row_scale.shape == (n, config.bits * groups)
    assert layer.col_scale.dtype == torch.float16 and layer.col_scale.shape == (config.bits * m,)
    report = quantization_report(torch.nn.Sequential(layer))
    expected_bytes = n * m * 2 // 8 + 2 * n * 2 * groups + 2 * 2 * m + groups
    assert report["quantized_bytes"] == expected_bytes
    assert report["sign_bits_per_weight"] == 2.0
    assert report["bits_per_weight"] == pytest.approx(8 * expected_bytes / (n * m))
    # no full-precision weight is kept: the only floating tensors are the fp16 scales
    assert {t.dtype for t in layer.buffers()} == {torch.uint8, torch.float16}


def test_corrupt_block_orders_are_rejected():
    result, _, _ = _quantized(bias=False)
    result.layer.block_orders[0] = 3
    result.layer.block_orders[1] = 3
    with pytest.raises(ValueError, match="do not average bits=2"):
        result.layer(torch.randn(2, 72))


def test_layer_error_shrinks_with_rsr_and_quantization_is_better_than_sign():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(32, 64, generator=g)
    plain = quantize_weight(w, QuantDLLMConfig(block_size=32, abmp_fraction=0, use_dor=False, rsr_iterations=0))
    refined = quantize_weight(w, QuantDLLMConfig(block_size=32, abmp_fraction=0, use_dor=False, rsr_iterations=10))
    assert refined.objective_final < plain.objective_final
    assert (w - refined.layer.dequantize()).norm() < (w - plain.layer.dequantize()).norm()


def test_config_json_round_trip_and_registry():
    config = QuantDLLMConfig(bits=3, orders=(2, 3, 4), block_size=64, importance_factor=3.0, dataset=["a b"],
                             tokenizer="some/tokenizer", modules_to_not_convert=["model.transformer.ff_out"])
    data = json.loads(config.to_json_string(use_diff=False))
    assert data["quant_method"] == "quant_dllm" and data["orders"] == [2, 3, 4]
    again = QuantDLLMConfig.from_dict(data)
    assert again == config
    through_registry = AutoQuantizationConfig.from_dict(data)
    assert isinstance(through_registry, QuantDLLMConfig) and through_registry == config
    assert json.loads(config.to_json_string())["quant_method"] == "quant_dllm"  # the diff keeps the method


@pytest.mark.parametrize("kwargs, field", [
    (dict(bits=2, orders=(1, 3, 4)), "cannot average"),
    (dict(bits=2, orders=(1, 2, 4)), "cannot average"),
    (dict(bits=3, orders=(1, 2), abmp_fraction=0.0), "must be one of `orders`"),
    (dict(abmp_fraction=0.7), "abmp_fraction"),
    (dict(block_size=0), "block_size"),
    (dict(importance_factor=0.5), "importance_factor"),
    (dict(prefix_ratio=1.0), "prefix_ratio"),
    (dict(visibility_schedule="exp"), "visibility_schedule"),
    (dict(scale_axes="col"), "scale_axes"),
    (dict(quant_method="gptq"), "quant_method"),
])
def test_config_rejects_bad_values(kwargs, field):
    with pytest.raises(ValueError, match=field):
        QuantDLLMConfig(**kwargs)


def test_tokenizer_object_is_not_serialised():
    config = QuantDLLMConfig(tokenizer=object())
    assert config.to_dict()["tokenizer"] is None
