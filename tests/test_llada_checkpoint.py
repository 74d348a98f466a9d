"""A tiny checkpoint in the exact LLaDA-8B layout loads through the Auto classes without remote code and computes
the same logits as an independent plain-torch forward."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM

from hf_dlm import LLaDAConfig, LLaDAModelLM

D, LAYERS, HEADS, KV_HEADS, MLP, VOCAB, EMB, THETA, EPS = 64, 2, 4, 2, 96, 120, 128, 500000.0, 1e-5

REAL_LAYOUT_CONFIG = {  # the field set of GSAI-ML/LLaDA-8B-Instruct's config.json, with tiny sizes
    "activation_type": "silu", "alibi": False, "alibi_bias_max": 8.0, "architectures": ["LLaDAModelLM"],
    "attention_dropout": 0.0, "attention_layer_norm": False, "attention_layer_norm_with_affine": True,
    "auto_map": {"AutoConfig": "configuration_llada.LLaDAConfig",
                 "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM", "AutoModel": "modeling_llada.LLaDAModelLM"},
    "bias_for_layer_norm": False, "block_group_size": 1, "block_type": "llama", "d_model": D,
    "embedding_dropout": 0.0, "embedding_size": EMB, "eos_token_id": 117, "flash_attention": False,
    "include_bias": False, "include_qkv_bias": False, "init_cutoff_factor": None, "init_device": "meta",
    "init_fn": "mitchell", "init_std": 0.02, "input_emb_norm": False, "layer_norm_type": "rms",
    "layer_norm_with_affine": True, "mask_token_id": 118, "max_sequence_length": 64, "mlp_hidden_size": MLP,
    "mlp_ratio": 4, "model_type": "llada", "multi_query_attention": None, "n_heads": HEADS, "n_kv_heads": KV_HEADS,
    "n_layers": LAYERS, "pad_token_id": 117, "precision": "amp_bf16", "residual_dropout": 0.0, "rms_norm_eps": EPS,
    "rope": True, "rope_full_precision": True, "rope_theta": THETA, "scale_logits": False,
    "transformers_version": "4.46.3", "use_cache": False, "vocab_size": VOCAB, "weight_tying": False,
}


def _real_layout_state_dict(generator: torch.Generator) -> dict[str, torch.Tensor]:
    def rnd(*shape, scale=0.2):
        return torch.randn(*shape, generator=generator) * scale

    head_dim = D // HEADS
    sd = {"model.transformer.wte.weight": rnd(EMB, D, scale=1.0), "model.transformer.ln_f.weight": 1 + rnd(D),
          "model.transformer.ff_out.weight": rnd(EMB, D)}
    for i in range(LAYERS):
        p = f"model.transformer.blocks.{i}."
        sd.update({p + "q_proj.weight": rnd(D, D), p + "k_proj.weight": rnd(KV_HEADS * head_dim, D),
                   p + "v_proj.weight": rnd(KV_HEADS * head_dim, D), p + "attn_out.weight": rnd(D, D),
                   p + "attn_norm.weight": 1 + rnd(D), p + "ff_norm.weight": 1 + rnd(D),
                   p + "ff_proj.weight": rnd(MLP, D), p + "up_proj.weight": rnd(MLP, D),
                   p + "ff_out.weight": rnd(D, MLP)})
    return sd


def plain_llada_forward(sd: dict[str, torch.Tensor], ids: torch.LongTensor,
                        attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """LLaDA's forward in float64 written from the paper/model card: RMSNorm, half-split RoPE, bidirectional GQA attention,
    SwiGLU-style MLP ``ff_out(silu(ff_proj(h)) * up_proj(h))``, untied head ``ff_out``."""
    batch, length = ids.shape
    head_dim = D // HEADS

    def rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * w

    positions = torch.arange(length).expand(batch, length).double()
    if attention_mask is not None:
        positions = (attention_mask.cumsum(-1) - 1).clamp(min=0).double()
    inv = 1.0 / THETA ** (torch.arange(0, head_dim, 2).double() / head_dim)
    angles = positions[..., None] * inv
    cos, sin = torch.cat([angles, angles], -1).cos()[:, None], torch.cat([angles, angles], -1).sin()[:, None]

    def rope(t):
        t1, t2 = t[..., : head_dim // 2], t[..., head_dim // 2:]
        return t * cos + torch.cat([-t2, t1], -1) * sin

    bias = torch.zeros(batch, 1, 1, length, dtype=torch.float64)
    if attention_mask is not None:
        bias = bias.masked_fill(attention_mask[:, None, None, :] == 0, float("-inf"))
    sd = {k: v.double() for k, v in sd.items()}
    x = sd["model.transformer.wte.weight"][ids]
    for i in range(LAYERS):
        p = f"model.transformer.blocks.{i}."
        h = rms(x, sd[p + "attn_norm.weight"])
        q = (h @ sd[p + "q_proj.weight"].T).view(batch, length, HEADS, head_dim).transpose(1, 2)
        k = (h @ sd[p + "k_proj.weight"].T).view(batch, length, KV_HEADS, head_dim).transpose(1, 2)
        v = (h @ sd[p + "v_proj.weight"].T).view(batch, length, KV_HEADS, head_dim).transpose(1, 2)
        q, k = rope(q), rope(k)
        k, v = k.repeat_interleave(HEADS // KV_HEADS, 1), v.repeat_interleave(HEADS // KV_HEADS, 1)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(head_dim) + bias, -1) @ v
        x = x + att.transpose(1, 2).reshape(batch, length, D) @ sd[p + "attn_out.weight"].T
        h = rms(x, sd[p + "ff_norm.weight"])
        x = x + (F.silu(h @ sd[p + "ff_proj.weight"].T) * (h @ sd[p + "up_proj.weight"].T)) @ sd[p + "ff_out.weight"].T
    return rms(x, sd["model.transformer.ln_f.weight"]) @ sd["model.transformer.ff_out.weight"].T


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
    from conftest import tiny_llada_config

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
    from conftest import tiny_llada_config

    with pytest.raises(ValueError, match=match):
        tiny_llada_config(**bad)


def test_prompt_longer_than_positions_raises(tiny_llada):
    with pytest.raises(ValueError, match="exceeds the 64 positions"):
        tiny_llada(torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(ValueError, match="exceeds the model's 64 positions"):
        tiny_llada.generate(torch.zeros(1, 60, dtype=torch.long), max_new_tokens=8)
