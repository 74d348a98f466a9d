"""A tiny checkpoint in the exact LLaDA-8B layout loads through the Auto classes without remote code and computes
the same logits as an independent plain-torch forward."""

import json

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM

from hf_dlm import LLaDAConfig, LLaDAModelLM

from tests.utils.llada_layout import (D, EMB, HEADS, KV_HEADS, LAYERS, MLP, REAL_LAYOUT_CONFIG, VOCAB,
                                      _real_layout_state_dict, plain_llada_forward)


@pytest.fixture(scope="module")
def llada_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("llada8b_layout")
    (path / "config.json").write_text(json.dumps(REAL_LAYOUT_CONFIG, indent=2))
    sd = _real_layout_state_dict(torch.Generator().manual_seed(0))
    save_file(sd, str(path / "model.safetensors"), metadata={"format": "pt"})
    return path, sd


@pytest.mark.parametrize("auto_class", [AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM])
def test_real_layout_loads_without_remote_code_and_matches_plain_forward(llada_checkpoint, auto_class):
    path, sd = llada_checkpoint
    # trust_remote_code is never passed; the model computes norms and rotary angles in float32 (as LLaDA does),
    # hence the 1e-5 tolerance against the float64 reference
    model = auto_class.from_pretrained(path, dtype=torch.float64).eval()
    assert type(model) is LLaDAModelLM
    ids = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (2, 12, EMB)  # embedding_size > vocab_size: logits span the padded table
    torch.testing.assert_close(logits, plain_llada_forward(sd, ids), rtol=1e-5, atol=1e-5)


def test_real_field_names_and_standard_aliases(llada_checkpoint):
    path, _ = llada_checkpoint
    config = AutoConfig.from_pretrained(path)
    assert isinstance(config, LLaDAConfig)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (D, LAYERS, HEADS)
    assert (config.num_key_value_heads, config.intermediate_size, config.max_position_embeddings) == (KV_HEADS, MLP, 64)
    assert config.tie_word_embeddings is False and config.mask_token_id == 118
    standard = LLaDAConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=48,
                           vocab_size=50, embedding_size=64, mask_token_id=63, pad_token_id=0)
    assert (standard.d_model, standard.n_layers, standard.n_heads, standard.mlp_hidden_size) == (32, 1, 2, 48)


def test_padded_rows_match_unpadded_rows(llada_checkpoint):
    path, sd = llada_checkpoint
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float64).eval()
    short = torch.randint(0, VOCAB, (1, 7), generator=torch.Generator().manual_seed(2))
    padded = torch.cat([torch.full((1, 3), 117), short], dim=1)
    mask = torch.tensor([[0, 0, 0] + [1] * 7])
    with torch.no_grad():
        alone = model(short).logits
        in_batch = model(padded, attention_mask=mask).logits[:, 3:]
    torch.testing.assert_close(in_batch, alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model(padded, attention_mask=mask).logits.detach(),
                               plain_llada_forward(sd, padded, mask), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_attention_backends_agree(llada_checkpoint, attn):
    path, sd = llada_checkpoint
    model = AutoModel.from_pretrained(path, dtype=torch.float64, attn_implementation=attn).eval()
    ids = torch.randint(0, VOCAB, (2, 9), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(model(ids).logits.detach(), plain_llada_forward(sd, ids), rtol=1e-5, atol=1e-5)


def test_save_load_round_trip_is_exact(tmp_path, tiny_llada):
    tiny_llada.generation_config.steps = 6
    tiny_llada.generation_config.block_length = 3
    tiny_llada.generation_config.max_new_tokens = 6
    tiny_llada.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, 90, (2, 10))
    assert torch.equal(reloaded(ids).logits, tiny_llada(ids).logits)
    assert reloaded.generation_config == tiny_llada.generation_config
    assert (reloaded.generation_config.steps, reloaded.generation_config.block_length) == (6, 3)


def test_tied_variant_shares_head_and_embedding(tmp_path):
    from tests.utils.models import tiny_llada_config

    model = LLaDAModelLM(tiny_llada_config(weight_tying=True))
    assert model.model.transformer.ff_out.weight is model.model.transformer.wte.weight
    model.save_pretrained(tmp_path)
    reloaded = LLaDAModelLM.from_pretrained(tmp_path)
    assert reloaded.model.transformer.ff_out.weight is reloaded.model.transformer.wte.weight
    ids = torch.randint(0, 90, (1, 5))
    assert torch.equal(reloaded(ids).logits, model(ids).logits)


@pytest.mark.parametrize("bad, match", [
    (dict(pad_token_id=95), "pad_token_id"),
    (dict(mask_token_id=200), "mask_token_id"),
    (dict(n_heads=3, n_kv_heads=3), "d_model"),
    (dict(n_kv_heads=3), "n_kv_heads"),
    (dict(activation_type="gelu"), "activation_type"),
    (dict(embedding_size=50), "embedding_size"),
])
def test_bad_config_raises(bad, match):
    from tests.utils.models import tiny_llada_config

    with pytest.raises(ValueError, match=match):
        tiny_llada_config(**bad)


def test_prompt_longer_than_positions_raises(tiny_llada):
    with pytest.raises(ValueError, match="exceeds the 64 positions"):
        tiny_llada(torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(ValueError, match="exceeds the model's 64 positions"):
        tiny_llada.generate(torch.zeros(1, 60, dtype=torch.long), max_new_tokens=8)
