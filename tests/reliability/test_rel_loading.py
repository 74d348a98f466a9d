"""Loading refuses what it cannot honour ("Nothing silent"): weights that do not cover the architecture, a config that
lacks an architecture field, a layer count that disagrees with the weights, a Quant-dLLM checkpoint missing a packed
tensor, a truncated safetensors file. Every refusal is a typed error naming the keys, the field or the file; the
legitimate cases (released layouts, a tied head absent from the file, a resized vocabulary, an explicit
``strict=False``) still load.

The LLaDA and Dream checkpoints are written in the exact released layouts, with the helpers of
tests/test_llada_checkpoint.py and tests/test_dream_checkpoint.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from tests.utils import dream_layout, llada_layout
from tests.utils.models import tiny_dream_config, tiny_llada_config
from hf_dlm import (DreamConfig, DreamModel, LLaDAConfig, LLaDAModelLM, LogitFMConfig, LogitFMModel,
                    QuantDLLMConfig, QuantDLLMQuantizer)
from hf_dlm.models import DreamBaseModel, MaskedImageTransformer
from hf_dlm.models._loading import CheckpointFileError, CheckpointMismatchError, MissingConfigFieldError
from hf_dlm.quantization.hf_quantizer import MissingPackedTensorsError

WEIGHTS = "model.safetensors"


# ------------------------------------------------------------------------------------------------------------------
# checkpoint writers


def _write(path: Path, config: dict, state_dict: dict[str, torch.Tensor], name: str = WEIGHTS,
           metadata: dict[str, str] | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config, indent=2))
    save_file(state_dict, str(path / name), metadata=metadata or {"format": "pt"})
    return path


def llada_released(path: Path, config_edit=None, sd_edit=None) -> Path:
    """A checkpoint in LLaDA-8B's released layout (tiny sizes), optionally with its config / state dict edited."""
    config = dict(llada_layout.REAL_LAYOUT_CONFIG)
    sd = llada_layout._real_layout_state_dict(torch.Generator().manual_seed(0))
    if config_edit:
        config_edit(config)
    if sd_edit:
        sd_edit(sd)
    return _write(path, config, sd)


def dream_released(path: Path, config_edit=None, sd_edit=None) -> Path:
    """A checkpoint in Dream-v0-7B's released layout (tiny sizes), optionally edited."""
    config = dict(dream_layout.REAL_LAYOUT_CONFIG)
    sd = dream_layout._state_dict(torch.Generator().manual_seed(0))
    if config_edit:
        config_edit(config)
    if sd_edit:
        sd_edit(sd)
    return _write(path, config, sd)


def tiny_logit_fm_config(**overrides) -> LogitFMConfig:
    kwargs = dict(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                  max_position_embeddings=48, time_embedding_dim=16, pad_token_id=39)
    kwargs.update(overrides)
    return LogitFMConfig(**kwargs)


def tiny_image_transformer() -> MaskedImageTransformer:
    torch.manual_seed(0)
    return MaskedImageTransformer(codebook_size=16, sample_size=4, hidden_size=32, num_layers=2,
                                  num_attention_heads=2, num_classes=3)


def saved(model, path: Path) -> Path:
    model.save_pretrained(path)
    return path


def weights_file(path: Path) -> Path:
    files = sorted(path.glob("*.safetensors"))
    assert len(files) == 1, files
    return files[0]


def edit_weights(path: Path, edit) -> None:
    """Rewrite the single safetensors file of ``path`` after ``edit(state_dict)``, keeping its metadata."""
    file = weights_file(path)
    with safe_open(str(file), framework="pt") as handle:
        metadata = handle.metadata()
    sd = load_file(str(file))
    edit(sd)
    save_file(sd, str(file), metadata=metadata)


def edit_config(path: Path, edit) -> None:
    config = json.loads((path / "config.json").read_text())
    edit(config)
    (path / "config.json").write_text(json.dumps(config, indent=2))


# ------------------------------------------------------------------------------------------------------------------
# a tensor missing from the checkpoint, for every kind of tensor of the released layouts

LLADA_KINDS = ["model.transformer.wte.weight", "model.transformer.ln_f.weight", "model.transformer.ff_out.weight"] + [
    f"model.transformer.blocks.1.{name}.weight" for name in
    ("q_proj", "k_proj", "v_proj", "attn_out", "attn_norm", "ff_norm", "ff_proj", "up_proj", "ff_out")]
DREAM_KINDS = ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"] + [
    f"model.layers.0.{name}" for name in
    ("self_attn.q_proj.weight", "self_attn.q_proj.bias", "self_attn.k_proj.weight", "self_attn.k_proj.bias",
     "self_attn.v_proj.weight", "self_attn.v_proj.bias", "self_attn.o_proj.weight", "mlp.gate_proj.weight",
     "mlp.up_proj.weight", "mlp.down_proj.weight", "input_layernorm.weight", "post_attention_layernorm.weight")]


@pytest.mark.parametrize("key", LLADA_KINDS)
def test_llada_released_layout_missing_tensor_is_refused_by_name(tmp_path, key):
    path = llada_released(tmp_path, sd_edit=lambda sd: sd.pop(key))
    with pytest.raises(CheckpointMismatchError, match="missing from the checkpoint") as info:
        AutoModelForCausalLM.from_pretrained(path)
    assert info.value.missing_keys == [key] and not info.value.unexpected_keys
    assert key in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("key", DREAM_KINDS)
def test_dream_released_layout_missing_tensor_is_refused_by_name(tmp_path, key):
    path = dream_released(tmp_path, sd_edit=lambda sd: sd.pop(key))
    with pytest.raises(CheckpointMismatchError, match="missing from the checkpoint") as info:
        AutoModel.from_pretrained(path)
    assert info.value.missing_keys == [key] and key in str(info.value)


def test_logit_fm_missing_tensor_is_refused(tmp_path):
    path = saved(LogitFMModel(tiny_logit_fm_config()), tmp_path)
    edit_weights(path, lambda sd: sd.pop("layers.1.modulation.weight"))
    with pytest.raises(CheckpointMismatchError) as info:
        LogitFMModel.from_pretrained(path)
    assert info.value.missing_keys == ["layers.1.modulation.weight"]


def test_masked_image_transformer_missing_tensor_is_refused(tmp_path):
    path = saved(tiny_image_transformer(), tmp_path)
    edit_weights(path, lambda sd: sd.pop("blocks.0.attn1.to_q.weight"))
    with pytest.raises(CheckpointMismatchError, match="blocks.0.attn1.to_q.weight") as info:
        MaskedImageTransformer.from_pretrained(path)
    assert info.value.missing_keys == ["blocks.0.attn1.to_q.weight"]


# ------------------------------------------------------------------------------------------------------------------
# an unexpected tensor


def _extra(sd: dict[str, torch.Tensor], key: str) -> None:
    sd[key] = torch.zeros(3)


@pytest.mark.parametrize("arch", ["llada", "dream", "logit_fm", "masked_image"])
def test_unexpected_tensor_is_refused_by_name(tmp_path, arch):
    if arch == "llada":
        path, key = llada_released(tmp_path, sd_edit=lambda sd: _extra(sd, "model.transformer.extra.weight")), \
            "model.transformer.extra.weight"
        load = lambda: AutoModelForCausalLM.from_pretrained(path)  # noqa: E731
    elif arch == "dream":
        path, key = dream_released(tmp_path, sd_edit=lambda sd: _extra(sd, "model.extra.weight")), "model.extra.weight"
        load = lambda: AutoModel.from_pretrained(path)  # noqa: E731
    elif arch == "logit_fm":
        path, key = saved(LogitFMModel(tiny_logit_fm_config()), tmp_path), "time_embedding.extra.weight"
        edit_weights(path, lambda sd: _extra(sd, key))
        load = lambda: LogitFMModel.from_pretrained(path)  # noqa: E731
    else:
        path, key = saved(tiny_image_transformer(), tmp_path), "blocks.0.extra.weight"
        edit_weights(path, lambda sd: _extra(sd, key))
        load = lambda: MaskedImageTransformer.from_pretrained(path)  # noqa: E731
    with pytest.raises(CheckpointMismatchError, match="no place in the model") as info:
        load()
    assert info.value.unexpected_keys == [key] and not info.value.missing_keys and key in str(info.value)


def test_stale_rotary_buffer_in_an_old_checkpoint_is_not_an_unexpected_key(tmp_path):
    """Old exports stored the (non-persistent) rotary ``inv_freq``; it is rebuilt at load, never refused."""
    path = llada_released(tmp_path, sd_edit=lambda sd: _extra(sd, "model.rotary_emb.inv_freq"))
    model = AutoModelForCausalLM.from_pretrained(path)
    assert torch.equal(model.model.rotary_emb.inv_freq, model.model.rotary_emb.compute_inv_freq())


# ------------------------------------------------------------------------------------------------------------------
# a wrong layer count in config.json


@pytest.mark.parametrize("arch, field", [("llada", "n_layers"), ("dream", "num_hidden_layers"),
                                         ("logit_fm", "num_hidden_layers"), ("masked_image", "num_layers")])
@pytest.mark.parametrize("delta", [-1, +1])
def test_layer_count_off_by_one_in_config_json_is_refused(tmp_path, arch, field, delta):
    bump = lambda config: config.update({field: config[field] + delta})  # noqa: E731
    if arch == "llada":
        path, load = llada_released(tmp_path, config_edit=bump), AutoModelForCausalLM.from_pretrained
    elif arch == "dream":
        path, load = dream_released(tmp_path, config_edit=bump), AutoModel.from_pretrained
    elif arch == "logit_fm":
        path, load = saved(LogitFMModel(tiny_logit_fm_config()), tmp_path), LogitFMModel.from_pretrained
        edit_config(path, bump)
    else:
        path, load = saved(tiny_image_transformer(), tmp_path), MaskedImageTransformer.from_pretrained
        edit_config(path, bump)
    with pytest.raises(CheckpointMismatchError, match="the checkpoint holds 2 layer") as info:
        load(path)
    message = str(info.value)
    assert f"the configuration builds {2 + delta}" in message
    if delta > 0:  # the extra layer's weights are named as missing
        assert info.value.missing_keys and all(".2." in key for key in info.value.missing_keys)
    else:  # the checkpoint's last layer is named as unexpected
        assert info.value.unexpected_keys and all(".1." in key for key in info.value.unexpected_keys)


def test_layer_override_that_drops_layers_needs_strict_false(tmp_path):
    path = llada_released(tmp_path)
    with pytest.raises(CheckpointMismatchError, match="strict=False"):
        LLaDAModelLM.from_pretrained(path, n_layers=1)
    partial = LLaDAModelLM.from_pretrained(path, n_layers=1, strict=False)
    full = LLaDAModelLM.from_pretrained(path)
    assert partial.config.n_layers == 1 and len(partial.model.transformer.blocks) == 1
    first = full.model.transformer.blocks[0]
    assert torch.equal(partial.model.transformer.blocks[0].q_proj.weight, first.q_proj.weight)


# ------------------------------------------------------------------------------------------------------------------
# a config.json lacking a required architecture field


@pytest.mark.parametrize("field", LLaDAConfig.required_fields)
def test_llada_config_json_without_required_field_is_refused(tmp_path, field):
    path = llada_released(tmp_path, config_edit=lambda config: config.pop(field))
    for load in (AutoModelForCausalLM.from_pretrained, LLaDAModelLM.from_pretrained, AutoConfig.from_pretrained):
        with pytest.raises(MissingConfigFieldError, match=f"`{field}`") as info:
            load(path)
        assert info.value.fields == [field] and "config.json" in str(info.value)
    # the model class knows where it reads from: the message names the file itself
    with pytest.raises(MissingConfigFieldError, match=str(path / "config.json")):
        LLaDAModelLM.from_pretrained(path)


@pytest.mark.parametrize("field", DreamConfig.required_fields)
def test_dream_config_json_without_required_field_is_refused(tmp_path, field):
    path = dream_released(tmp_path, config_edit=lambda config: config.pop(field))
    with pytest.raises(MissingConfigFieldError, match=f"`{field}`") as info:
        AutoModel.from_pretrained(path)
    assert info.value.fields == [field]
    with pytest.raises(MissingConfigFieldError, match=str(path / "config.json")):
        DreamConfig.from_pretrained(path)


@pytest.mark.parametrize("field", ["num_hidden_layers", "time_conditioning"])
def test_logit_fm_config_json_without_required_field_is_refused(tmp_path, field):
    path = saved(LogitFMModel(tiny_logit_fm_config()), tmp_path)
    edit_config(path, lambda config: config.pop(field))
    with pytest.raises(MissingConfigFieldError, match=f"`{field}`"):
        LogitFMModel.from_pretrained(path)


@pytest.mark.parametrize("field", ["num_layers", "hidden_size", "codebook_size"])
def test_masked_image_config_json_without_required_field_is_refused(tmp_path, field):
    path = saved(tiny_image_transformer(), tmp_path)
    edit_config(path, lambda config: config.pop(field))
    with pytest.raises(MissingConfigFieldError, match=f"{path / 'config.json'} lacks .*`{field}`"):
        MaskedImageTransformer.from_pretrained(path)


def test_config_json_json_file_and_from_dict_paths_refuse_too(tmp_path):
    path = llada_released(tmp_path, config_edit=lambda config: config.pop("d_model"))
    with pytest.raises(MissingConfigFieldError, match="`d_model`"):
        LLaDAConfig.from_json_file(path / "config.json")
    with pytest.raises(MissingConfigFieldError, match="`d_model`"):
        LLaDAConfig.from_dict(json.loads((path / "config.json").read_text()))


def test_configs_built_in_code_keep_their_defaults_and_aliases_count():
    assert LLaDAConfig().n_layers == 32 and DreamConfig().num_hidden_layers == 28
    assert MaskedImageTransformer.from_config({"codebook_size": 16, "sample_size": 2, "hidden_size": 16,
                                               "num_layers": 1, "num_attention_heads": 2}).config.num_classes == 0
    # the standard alias satisfies the requirement
    released = dict(llada_layout.REAL_LAYOUT_CONFIG)
    released["num_hidden_layers"] = released.pop("n_layers")
    assert LLaDAConfig.from_dict(released).n_layers == llada_layout.LAYERS


def test_missing_field_supplied_by_from_pretrained_loads_and_overrides_are_validated(tmp_path):
    path = llada_released(tmp_path, config_edit=lambda config: config.pop("n_layers"))
    model = LLaDAModelLM.from_pretrained(path, n_layers=llada_layout.LAYERS)
    assert model.config.n_layers == llada_layout.LAYERS
    # an override goes through LLaDAConfig's validation like any other value
    with pytest.raises(ValueError, match="`n_layers` must be a positive integer"):
        LLaDAModelLM.from_pretrained(path, n_layers=0)
    with pytest.raises(ValueError, match="`d_model`"):
        LLaDAModelLM.from_pretrained(path, n_layers=2, n_heads=3, n_kv_heads=3)


# ------------------------------------------------------------------------------------------------------------------
# Quant-dLLM: a packed tensor missing


def _quantized(arch: str):
    torch.manual_seed(0)
    model = (LLaDAModelLM(tiny_llada_config()) if arch == "llada" else DreamModel(tiny_dream_config())).eval()
    config = QuantDLLMConfig(block_size=16, use_dor=False, abmp_fraction=0.0, rsr_iterations=2)
    QuantDLLMQuantizer(config).quantize_model(model, show_progress=False)
    return model


@pytest.fixture(scope="module")
def quantized_checkpoints(tmp_path_factory):
    return {arch: saved(_quantized(arch), tmp_path_factory.mktemp(f"q_{arch}")) for arch in ("llada", "dream")}


@pytest.mark.parametrize("arch, key, kind", [
    ("llada", "model.transformer.blocks.1.up_proj.weight", "signs"),
    ("llada", "model.transformer.blocks.0.q_proj.row_scale", "row scales"),
    ("llada", "model.transformer.blocks.0.ff_out.col_scale", "column scales"),
    ("llada", "model.transformer.blocks.1.attn_out.block_orders", "block orders"),
    ("dream", "model.layers.0.self_attn.k_proj.bias", "bias"),
    ("dream", "model.layers.1.mlp.down_proj.col_scale", "column scales"),
])
def test_quantized_checkpoint_missing_a_packed_tensor_is_refused(tmp_path, quantized_checkpoints, arch, key, kind):
    import shutil

    path = Path(shutil.copytree(quantized_checkpoints[arch], tmp_path / "q"))
    edit_weights(path, lambda sd: sd.pop(key))
    with pytest.raises(MissingPackedTensorsError, match=kind) as info:
        AutoModelForCausalLM.from_pretrained(path)
    assert info.value.missing_keys == [key] and key in str(info.value) and str(weights_file(path)) in str(info.value)


def test_complete_quantized_checkpoint_still_reloads_exactly(quantized_checkpoints):
    model = _quantized("llada")
    reloaded = AutoModelForCausalLM.from_pretrained(quantized_checkpoints["llada"]).eval()
    ids = torch.randint(0, 90, (1, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, model(ids).logits)


# ------------------------------------------------------------------------------------------------------------------
# a truncated safetensors file


def _truncate(file: Path, keep: int | None = None) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: len(data) - 64] if keep is None else data[:keep])


@pytest.mark.parametrize("arch", ["llada", "dream", "logit_fm", "quantized_llada"])
@pytest.mark.parametrize("keep", [None, 40], ids=["data_cut", "header_cut"])
def test_truncated_safetensors_file_is_named(tmp_path, quantized_checkpoints, arch, keep):
    import shutil

    if arch == "llada":
        path, load, error = llada_released(tmp_path), AutoModelForCausalLM.from_pretrained, CheckpointFileError
    elif arch == "dream":
        path, load, error = dream_released(tmp_path), AutoModel.from_pretrained, CheckpointFileError
    elif arch == "logit_fm":
        path, load = saved(LogitFMModel(tiny_logit_fm_config()), tmp_path), LogitFMModel.from_pretrained
        error = CheckpointFileError
    else:  # the quantizer reads the headers first
        path = Path(shutil.copytree(quantized_checkpoints["llada"], tmp_path / "q"))
        load, error = AutoModelForCausalLM.from_pretrained, OSError
    file = weights_file(path)
    _truncate(file, keep)
    with pytest.raises(error, match="truncated") as info:
        load(path)
    assert str(file) in str(info.value)


def test_truncated_shard_of_a_sharded_checkpoint_is_named(tmp_path):
    torch.manual_seed(0)
    LLaDAModelLM(tiny_llada_config()).save_pretrained(tmp_path, max_shard_size="100KB")
    shards = sorted(tmp_path.glob("model-*.safetensors"))
    assert len(shards) > 1
    _truncate(shards[-1])
    with pytest.raises(CheckpointFileError) as info:
        LLaDAModelLM.from_pretrained(tmp_path)
    assert info.value.path == str(shards[-1]) and shards[-1].name in str(info.value)


def test_truncated_masked_image_checkpoint_is_named(tmp_path):
    path = saved(tiny_image_transformer(), tmp_path)
    file = weights_file(path)
    _truncate(file)
    with pytest.raises(OSError, match=str(file)):
        MaskedImageTransformer.from_pretrained(path)


# ------------------------------------------------------------------------------------------------------------------
# size mismatches: refused by name, or re-initialised on purpose


def test_size_mismatch_names_keys_and_shapes_unless_ignore_mismatched_sizes(tmp_path):
    path = llada_released(tmp_path)
    bigger = llada_layout.EMB + 64
    with pytest.raises(CheckpointMismatchError, match=r"model.transformer.wte.weight: checkpoint \(128, 64\) vs "
                                                      r"model \(192, 64\)") as info:
        LLaDAModelLM.from_pretrained(path, embedding_size=bigger)
    assert isinstance(info.value, RuntimeError)  # what transformers raised for mismatches before
    model = LLaDAModelLM.from_pretrained(path, embedding_size=bigger, ignore_mismatched_sizes=True)
    assert model.model.transformer.wte.weight.shape == (bigger, llada_layout.D)


# ------------------------------------------------------------------------------------------------------------------
# what must keep loading


def test_released_layouts_still_load_and_match_the_plain_forward(tmp_path):
    ids = torch.randint(0, 110, (1, 9), generator=torch.Generator().manual_seed(1))
    path = llada_released(tmp_path / "llada")
    sd = llada_layout._real_layout_state_dict(torch.Generator().manual_seed(0))
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float64).eval()
    torch.testing.assert_close(model(ids).logits.detach(), llada_layout.plain_llada_forward(sd, ids),
                               rtol=1e-5, atol=1e-5)
    path = dream_released(tmp_path / "dream")
    sd = dream_layout._state_dict(torch.Generator().manual_seed(0))
    model = AutoModel.from_pretrained(path, dtype=torch.float64).eval()
    torch.testing.assert_close(model(ids).logits.detach(), dream_layout.plain_dream_forward(sd, ids),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ["llada", "dream"])
def test_tied_head_absent_from_the_file_loads(tmp_path, arch):
    torch.manual_seed(0)
    if arch == "llada":
        model, head = LLaDAModelLM(tiny_llada_config(weight_tying=True)), "model.transformer.ff_out.weight"
    else:
        model, head = DreamModel(tiny_dream_config(tie_word_embeddings=True)), "lm_head.weight"
    model.save_pretrained(tmp_path)
    assert head not in load_file(str(weights_file(tmp_path)))
    reloaded = type(model).from_pretrained(tmp_path)
    assert reloaded.get_output_embeddings().weight is reloaded.get_input_embeddings().weight
    ids = torch.randint(0, 90, (1, 6))
    assert torch.equal(reloaded(ids).logits, model.eval()(ids).logits)


def test_untied_head_absent_from_the_file_is_refused(tmp_path):
    path = llada_released(tmp_path, sd_edit=lambda sd: sd.pop("model.transformer.ff_out.weight"))
    with pytest.raises(CheckpointMismatchError, match="model.transformer.ff_out.weight"):
        LLaDAModelLM.from_pretrained(path)


def test_resized_vocabulary_round_trips(tmp_path, tiny_llada):
    tiny_llada.resize_token_embeddings(150)
    tiny_llada.save_pretrained(tmp_path)
    reloaded = LLaDAModelLM.from_pretrained(tmp_path).eval()
    assert reloaded.config.embedding_size == 150
    ids = torch.randint(0, 90, (1, 7))
    assert torch.equal(reloaded(ids).logits, tiny_llada(ids).logits)


def test_dream_trunk_loads_from_a_full_checkpoint_but_a_head_model_needs_its_head(tmp_path):
    path = dream_released(tmp_path / "full")
    trunk = DreamBaseModel.from_pretrained(path)
    assert trunk.config.num_hidden_layers == dream_layout.LAYERS
    torch.manual_seed(0)
    trunk_only = saved(DreamBaseModel(tiny_dream_config()), tmp_path / "trunk")
    with pytest.raises(CheckpointMismatchError, match="lm_head.weight"):
        DreamModel.from_pretrained(trunk_only)
    with_new_head = DreamModel.from_pretrained(trunk_only, strict=False)  # an explicit choice: a fresh head
    assert torch.isfinite(with_new_head.lm_head.weight).all()


def test_strict_false_on_the_image_transformer_initialises_missing_weights(tmp_path):
    path = saved(tiny_image_transformer(), tmp_path)
    with pytest.raises(CheckpointMismatchError):
        MaskedImageTransformer.from_pretrained(path, num_layers=3)
    model = MaskedImageTransformer.from_pretrained(path, num_layers=3, strict=False)
    weight = model.blocks[2].attn1.to_q.weight
    assert weight.device.type == "cpu" and torch.isfinite(weight).all() and weight.abs().max() < 10
    logits = model(torch.zeros(1, 16, dtype=torch.long), class_labels=torch.tensor([0])).sample
    assert torch.isfinite(logits).all()


def test_strict_must_be_a_bool(tmp_path):
    path = llada_released(tmp_path)
    with pytest.raises(TypeError, match="`strict`"):
        LLaDAModelLM.from_pretrained(path, strict="no")


def test_a_whole_layer_missing_in_the_middle_is_named_with_the_layers_held(tmp_path):
    def drop_block_zero(sd):
        for key in [k for k in sd if k.startswith("model.transformer.blocks.0.")]:
            sd.pop(key)

    path = llada_released(tmp_path, sd_edit=drop_block_zero)
    with pytest.raises(CheckpointMismatchError, match=r"holds layers \[1\] in `model.transformer.blocks`, the "
                                                      r"configuration builds 2") as info:
        LLaDAModelLM.from_pretrained(path)
    assert len(info.value.missing_keys) == 9


def test_quantized_checkpoint_of_a_transformers_architecture_missing_a_tensor_is_refused(tmp_path):
    """The quantizer checks presence itself: a Llama (no hf-dlm strict loading) is refused as well."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=1,
                                         num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=32)).eval()
    QuantDLLMQuantizer(QuantDLLMConfig(block_size=16, use_dor=False, abmp_fraction=0.0, rsr_iterations=2)
                       ).quantize_model(model, show_progress=False)
    path = saved(model, tmp_path)
    edit_weights(path, lambda sd: sd.pop("model.layers.0.mlp.gate_proj.row_scale"))
    with pytest.raises(MissingPackedTensorsError, match="model.layers.0.mlp.gate_proj.row_scale"):
        AutoModelForCausalLM.from_pretrained(path)
