"""A tiny checkpoint in the exact layout of Dream-org/Dream-v0-Instruct-7B (config fields, state-dict names) and an
independent plain-torch float64 Qwen2-style bidirectional forward for it; shared by
tests/models/test_dream_checkpoint.py and the reliability suite."""

import math

import torch
import torch.nn.functional as F

D, LAYERS, HEADS, KV_HEADS, MLP, VOCAB, THETA, EPS = 64, 2, 4, 2, 96, 128, 1000000.0, 1e-6
MASK = 126

REAL_LAYOUT_CONFIG = {  # the field set of Dream-org/Dream-v0-Instruct-7B's config.json, with tiny sizes
    "architectures": ["DreamModel"], "attention_dropout": 0.0,
    "auto_map": {"AutoConfig": "configuration_dream.DreamConfig", "AutoModel": "modeling_dream.DreamModel"},
    "bos_token_id": 120, "eos_token_id": 121, "hidden_act": "silu", "hidden_size": D, "initializer_range": 0.02,
    "intermediate_size": MLP, "mask_token_id": MASK, "max_position_embeddings": 64, "max_window_layers": LAYERS,
    "model_type": "Dream", "num_attention_heads": HEADS, "num_hidden_layers": LAYERS,
    "num_key_value_heads": KV_HEADS, "pad_token_id": 122, "rms_norm_eps": EPS, "rope_scaling": None,
    "rope_theta": THETA, "sliding_window": None, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "transformers_version": "4.46.2", "use_cache": False, "use_mrope": False, "use_sliding_window": False,
    "vocab_size": VOCAB,
}


def _state_dict(generator):
    def rnd(*shape, scale=0.2):
        return torch.randn(*shape, generator=generator) * scale

    hd = D // HEADS
    sd = {"model.embed_tokens.weight": rnd(VOCAB, D, scale=1.0), "model.norm.weight": 1 + rnd(D),
          "lm_head.weight": rnd(VOCAB, D)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        sd.update({p + "self_attn.q_proj.weight": rnd(D, D), p + "self_attn.q_proj.bias": rnd(D),
                   p + "self_attn.k_proj.weight": rnd(KV_HEADS * hd, D), p + "self_attn.k_proj.bias": rnd(KV_HEADS * hd),
                   p + "self_attn.v_proj.weight": rnd(KV_HEADS * hd, D), p + "self_attn.v_proj.bias": rnd(KV_HEADS * hd),
                   p + "self_attn.o_proj.weight": rnd(D, D), p + "mlp.gate_proj.weight": rnd(MLP, D),
                   p + "mlp.up_proj.weight": rnd(MLP, D), p + "mlp.down_proj.weight": rnd(D, MLP),
                   p + "input_layernorm.weight": 1 + rnd(D), p + "post_attention_layernorm.weight": 1 + rnd(D)})
    return sd


def plain_dream_forward(sd, ids):
    """Qwen2 block stack without a causal mask, in float64; returns the raw (next-token) logits."""
    batch, length = ids.shape
    hd = D // HEADS
    sd = {k: v.double() for k, v in sd.items()}

    def rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * w

    inv = 1.0 / THETA ** (torch.arange(0, hd, 2).double() / hd)
    angles = torch.arange(length).double()[:, None] * inv
    cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()

    def rope(t):
        return t * cos + torch.cat([-t[..., hd // 2:], t[..., : hd // 2]], -1) * sin

    x = sd["model.embed_tokens.weight"][ids]
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        h = rms(x, sd[p + "input_layernorm.weight"])

        def proj(name, heads):
            out = h @ sd[p + f"self_attn.{name}.weight"].T + sd[p + f"self_attn.{name}.bias"]
            return out.view(batch, length, heads, hd).transpose(1, 2)

        q, k, v = rope(proj("q_proj", HEADS)), rope(proj("k_proj", KV_HEADS)), proj("v_proj", KV_HEADS)
        k, v = k.repeat_interleave(HEADS // KV_HEADS, 1), v.repeat_interleave(HEADS // KV_HEADS, 1)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), -1) @ v
        x = x + att.transpose(1, 2).reshape(batch, length, D) @ sd[p + "self_attn.o_proj.weight"].T
        h = rms(x, sd[p + "post_attention_layernorm.weight"])
        x = x + (F.silu(h @ sd[p + "mlp.gate_proj.weight"].T) * (h @ sd[p + "mlp.up_proj.weight"].T)) @ \
            sd[p + "mlp.down_proj.weight"].T
    return rms(x, sd["model.norm.weight"]) @ sd["lm_head.weight"].T
