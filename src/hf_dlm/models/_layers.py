"""Building blocks shared by our text architectures: rotary embeddings, bidirectional attention, gated MLP.

RMSNorm, ``rotate_half``-style rotary application and the eager attention kernel come from transformers'
Llama implementation; attention dispatch (eager / sdpa / flash / flex) goes through ``ALL_ATTENTION_FUNCTIONS``.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import BaseModelOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, eager_attention_forward

from ..generation.cache import MaskedDiffusionCache


class RotaryEmbedding(nn.Module):
    """Half-split RoPE (Su et al., 2021) computed in float32, as LLaDA (``rope_full_precision``) and Qwen2 do."""

    def __init__(self, head_dim: int, theta: float) -> None:
        super().__init__()
        self.head_dim, self.theta = head_dim, theta
        self.register_buffer("inv_freq", self.compute_inv_freq(), persistent=False)

    def compute_inv_freq(self) -> torch.Tensor:
        return 1.0 / (self.theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim))

    @torch.no_grad()
    def forward(self, x: torch.Tensor, position_ids: torch.LongTensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[..., None].float() * self.inv_freq.to(device=x.device, dtype=torch.float32)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def positions_from_attention_mask(attention_mask: torch.Tensor | None, batch: int, length: int,
                                  device: torch.device) -> torch.LongTensor:
    """Position ids that skip padding: the first real token of every row sits at position 0.

    With left padding this makes a padded row see exactly the rotary positions it would see unpadded.
    """
    if attention_mask is None:
        return torch.arange(length, device=device).unsqueeze(0).expand(batch, length)
    positions = attention_mask.long().cumsum(-1) - 1
    return positions.clamp(min=0)


def run_bidirectional_stack(model: nn.Module, embed: nn.Embedding, layers: nn.ModuleList, final_norm: nn.Module,
                            input_ids: torch.LongTensor | None, inputs_embeds: torch.Tensor | None,
                            attention_mask: torch.Tensor | None, position_ids: torch.LongTensor | None,
                            output_hidden_states: bool | None, return_dict: bool | None,
                            cache: MaskedDiffusionCache | None = None, cache_position: torch.LongTensor | None = None,
                            **kwargs) -> BaseModelOutput | tuple:
    """The trunk forward both architectures share: embed, derive positions from padding, build the bidirectional
    padding mask, run the blocks, apply the final norm. ``model`` supplies ``config`` and ``rotary_emb``.

    With a [`MaskedDiffusionCache`] (Fast-dLLM, arXiv 2505.22618), a call without ``cache_position`` encodes the whole
    canvas and stores every layer's keys and values (a refresh); a call with ``cache_position`` feeds only those
    canvas positions (``input_ids`` / ``inputs_embeds`` hold just them), attending to the cached keys and values of
    the rest. ``attention_mask`` always covers the whole canvas; positions come from it and are sliced to the window.
    """
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("Pass exactly one of `input_ids` and `inputs_embeds`.")
    if "past_key_values" in kwargs:  # transformers' former name of `cache`
        if cache is not None:
            raise ValueError("Pass the cache once, as `cache` (`past_key_values` is its former name).")
        cache = kwargs.pop("past_key_values")
    if cache_position is not None and cache is None:
        raise ValueError("`cache_position` selects a window of a cached canvas; pass the `cache` it belongs to.")
    if cache is not None and not isinstance(cache, MaskedDiffusionCache):
        raise TypeError(f"A bidirectional denoiser can only use a `MaskedDiffusionCache`, got {type(cache).__name__}.")
    if inputs_embeds is None:
        inputs_embeds = embed(input_ids)
    batch, length, _ = inputs_embeds.shape
    if cache is not None:
        cache.set_window(cache_position, length)
        kwargs["cache"] = cache
    canvas = length if cache_position is None else cache.get_seq_length()
    max_positions = model.config.max_position_embeddings
    if canvas > max_positions:
        raise ValueError(f"Input length {canvas} exceeds the {max_positions} positions of this model "
                         "(`max_position_embeddings` / `max_sequence_length`).")
    if attention_mask is not None and attention_mask.dim() == 2 and attention_mask.shape[1] != canvas:
        raise ValueError(f"`attention_mask` must cover the whole canvas of {canvas} positions, got "
                         f"{attention_mask.shape[1]}.")
    if position_ids is None:
        position_ids = positions_from_attention_mask(attention_mask, batch, canvas, inputs_embeds.device)
        if cache_position is not None:
            position_ids = position_ids[:, cache_position]
    mask = create_bidirectional_mask(config=model.config, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                     cache=cache)
    position_embeddings = model.rotary_emb(inputs_embeds, position_ids)
    hidden = inputs_embeds
    all_hidden = [] if output_hidden_states else None
    for layer in layers:
        if all_hidden is not None:
            all_hidden.append(hidden)
        hidden = layer(hidden, position_embeddings, mask, **kwargs)
    hidden = final_norm(hidden)
    if all_hidden is not None:
        all_hidden.append(hidden)
    out = BaseModelOutput(last_hidden_state=hidden, hidden_states=tuple(all_hidden) if all_hidden else None)
    return out if return_dict is not False else out.to_tuple()


def init_weights(model: PreTrainedModel, module: nn.Module) -> None:
    """transformers' standard initialisation, plus the rotary buffer, which is not stored in checkpoints and is
    therefore rebuilt after a (meta-device) ``from_pretrained``."""
    PreTrainedModel._init_weights(model, module)
    if isinstance(module, RotaryEmbedding):
        init.copy_(module.inv_freq, module.compute_inv_freq())


class AttentionHeads:
    """Head bookkeeping that transformers' attention kernels read from the calling module."""

    is_causal = False

    def setup_heads(self, config, hidden_size: int, num_heads: int, num_kv_heads: int) -> None:
        self.config = config
        self.head_dim = hidden_size // num_heads
        self.num_heads = num_heads
        self.num_key_value_heads = num_kv_heads
        self.num_key_value_groups = num_heads // num_kv_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = float(getattr(config, "attention_dropout", 0.0))

    def bidirectional_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                position_embeddings: tuple[torch.Tensor, torch.Tensor],
                                attention_mask: torch.Tensor | None, **kwargs) -> torch.Tensor:
        """Full (non-causal) attention of projected ``q, k, v`` of shape (batch, length, heads*head_dim).

        Applies RoPE, dispatches to ``config._attn_implementation`` and returns (batch, length, heads*head_dim)
        before the output projection. Grouped-query attention repeats the key/value heads.
        """
        batch, length, _ = q.shape
        q = q.view(batch, length, -1, self.head_dim).transpose(1, 2)
        k = k.view(batch, length, -1, self.head_dim).transpose(1, 2)
        v = v.view(batch, length, -1, self.head_dim).transpose(1, 2)
        cos, sin = position_embeddings
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        cache = kwargs.pop("cache", None)
        if cache is not None:  # a masked-diffusion cache returns the keys and values of the whole canvas
            k, v = cache.update(k, v, self.layer_idx)
        attention = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        out, _ = attention(
            self, q, k, v, attention_mask,
            scaling=self.scaling,
            dropout=self.attention_dropout if self.training else 0.0,
            is_causal=False,
            **kwargs,
        )
        return out.reshape(batch, length, -1).contiguous()
