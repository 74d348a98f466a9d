"""A tiny checkpoint in the exact layout of GSAI-ML/LLaDA-8B-Instruct (config fields, state-dict names) and an
independent plain-torch float64 forward for it; shared by tests/models/test_llada_checkpoint.py and the reliability
suite."""

import math

import torch
import torch.nn.functional as F

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
