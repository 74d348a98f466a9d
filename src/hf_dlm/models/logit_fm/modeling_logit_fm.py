"""Logit-FM: a bidirectional transformer that reads a point x_t of the vocabulary simplex at every position and the
flow time t, and returns the logits of p_θ(x_1 | x_t, t) (the denoiser of eq. 15).

The input embedding is x_t·E (a probability-weighted mix of token embeddings; a one-hot point — a prompt token —
gives exactly that token's embedding). Time enters by LayerNorm modulation (DiT's adaLN-Zero, or PixArt-α's cheaper
adaLN-single) or as an extra token, the three strategies of the paper's Appendix A.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput

from ...generation.logit_fm.mixin import LogitFMGenerationMixin
from .._layers import AttentionHeads, RotaryEmbedding, init_weights, run_bidirectional_stack
from .configuration_logit_fm import LogitFMConfig
from .._loading import StrictLoadingMixin
from .._sharing import HubSharingMixin


@dataclass
class LogitFMOutput(ModelOutput):
    """Output of [`LogitFMModel`].

    Args:
        loss: with ``labels``, the mean cross-entropy −log p_θ(x_1 | x_t) over labelled positions (eq. 15).
        logits: (batch, length, vocab_size), unnormalised log p_θ(x_1 | x_t, t) per position.
        hidden_states: with ``output_hidden_states``, the input of every block and the final hidden states.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


class AdaLNModulation(nn.Linear):
    """A linear map from the time embedding to LayerNorm shifts, scales and gates; zero at initialisation
    (adaLN-Zero), so every block and the final norm start as in an unconditioned network."""


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class LogitFMBlock(GradientCheckpointingLayer, AttentionHeads):
    """Pre-norm block with bidirectional attention (RoPE) and a SwiGLU MLP; with adaLN each residual branch is
    ``x + gate · f(LN(x)·(1 + scale) + shift)``, shift/scale/gate regressed from the time embedding."""

    def __init__(self, config: LogitFMConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.setup_heads(config, config.hidden_size, config.num_attention_heads, config.num_attention_heads)
        d, mode = config.hidden_size, config.time_conditioning
        affine = mode == "time_token"
        self.attn_norm = nn.LayerNorm(d, eps=config.layer_norm_eps, elementwise_affine=affine)
        self.ff_norm = nn.LayerNorm(d, eps=config.layer_norm_eps, elementwise_affine=affine)
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.o_proj = nn.Linear(d, d)
        self.gate_proj = nn.Linear(d, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(d, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, d, bias=False)
        if mode == "adaln":
            self.modulation = AdaLNModulation(d, 6 * d)
        elif mode == "adaln_single":
            self.modulation_offset = nn.Parameter(torch.zeros(6, d))

    def forward(self, hidden_states: torch.Tensor, position_embeddings: tuple[torch.Tensor, torch.Tensor],
                attention_mask: torch.Tensor | None = None, conditioning: torch.Tensor | None = None,
                shared_modulation: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        mode = self.config.time_conditioning
        if mode == "time_token":
            h = self.attn_norm(hidden_states)
            hidden_states = hidden_states + self.o_proj(self.bidirectional_attention(
                self.q_proj(h), self.k_proj(h), self.v_proj(h), position_embeddings, attention_mask, **kwargs))
            h = self.ff_norm(hidden_states)
            return hidden_states + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))
        if mode == "adaln":
            params = self.modulation(F.silu(conditioning)).view(-1, 6, hidden_states.shape[-1])
        else:
            params = shared_modulation + self.modulation_offset
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = params.unbind(1)
        h = modulate(self.attn_norm(hidden_states), shift_a, scale_a)
        attention = self.bidirectional_attention(self.q_proj(h), self.k_proj(h), self.v_proj(h), position_embeddings,
                                                 attention_mask, **kwargs)
        hidden_states = hidden_states + gate_a.unsqueeze(1) * self.o_proj(attention)
        h = modulate(self.ff_norm(hidden_states), shift_m, scale_m)
        return hidden_states + gate_m.unsqueeze(1) * self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class LogitFMPreTrainedModel(StrictLoadingMixin, HubSharingMixin, PreTrainedModel):
    config_class = LogitFMConfig
    config: LogitFMConfig
    base_model_prefix = "logit_fm"
    supports_gradient_checkpointing = True
    _no_split_modules = ["LogitFMBlock"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        init_weights(self, module)
        if isinstance(module, AdaLNModulation):
            init.zeros_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, LogitFMBlock) and hasattr(module, "modulation_offset"):
            init.zeros_(module.modulation_offset)


class LogitFMModel(LogitFMGenerationMixin, LogitFMPreTrainedModel):
    """The Logit-FM denoiser p_θ(x_1 | x_t, t) with its output head, and ``generate()`` by the paper's samplers
    (ODE, semi-randomized, randomized, hybrid; see [`LogitFMGenerationConfig`])."""

    def __init__(self, config: LogitFMConfig) -> None:
        super().__init__(config)
        d = config.hidden_size
        self.embed_tokens = nn.Embedding(config.vocab_size, d)
        self.time_proj = Timesteps(config.time_embedding_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(config.time_embedding_dim, d)
        self.layers = nn.ModuleList(LogitFMBlock(config, i) for i in range(config.num_hidden_layers))
        affine = config.time_conditioning == "time_token"
        self.norm = nn.LayerNorm(d, eps=config.layer_norm_eps, elementwise_affine=affine)
        if config.time_conditioning == "adaln_single":
            self.shared_modulation = AdaLNModulation(d, 6 * d)
        if config.time_conditioning != "time_token":
            self.final_modulation = AdaLNModulation(d, 2 * d)
        self.lm_head = nn.Linear(d, config.vocab_size, bias=False)
        self.rotary_emb = RotaryEmbedding(config.head_dim, config.rope_theta)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def embed_simplex(self, simplex: torch.Tensor) -> torch.Tensor:
        """x_t·E: (batch, length, N) simplex points to (batch, length, d) input embeddings."""
        weight = self.embed_tokens.weight
        if simplex.shape[-1] != weight.shape[0]:
            raise ValueError(f"`simplex` has {simplex.shape[-1]} categories but the model's vocabulary has "
                             f"{weight.shape[0]}.")
        return simplex.to(weight.dtype) @ weight

    def forward(self, simplex: torch.Tensor | None = None, timesteps: torch.Tensor | float | None = None,
                input_ids: torch.LongTensor | None = None, inputs_embeds: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, position_ids: torch.LongTensor | None = None,
                labels: torch.LongTensor | None = None, output_hidden_states: bool | None = None,
                return_dict: bool | None = None, **kwargs) -> LogitFMOutput | tuple:
        """Logits of p_θ(x_1 | x_t, t).

        Args:
            simplex: x_t, shape (batch, length, vocab_size), rows on the simplex (prompt positions one-hot).
            timesteps: t ∈ [0, 1], a float or a tensor of shape (batch,).
            input_ids: instead of ``simplex``, token ids (their one-hot points).
            inputs_embeds: instead of either, precomputed x_t·E.
            attention_mask: 1 for tokens, 0 for padding (padded keys are ignored; positions restart after padding).
            labels: x_1 token ids, −100 where not scored (prompt, padding): adds the cross-entropy ``loss``.
        """
        given = [simplex is not None, input_ids is not None, inputs_embeds is not None]
        if sum(given) != 1:
            raise ValueError("Pass exactly one of `simplex`, `input_ids` and `inputs_embeds`.")
        if timesteps is None:
            raise ValueError("`timesteps` (the flow time t in [0, 1]) is required.")
        if simplex is not None:
            inputs_embeds = self.embed_simplex(simplex)
        elif input_ids is not None:
            inputs_embeds = self.embed_tokens(input_ids)
        batch = inputs_embeds.shape[0]
        t = torch.as_tensor(timesteps, dtype=torch.float32, device=inputs_embeds.device)
        t = t.expand(batch) if t.dim() == 0 else t.reshape(batch)
        conditioning = self.time_embedding(self.time_proj(1000.0 * t).to(inputs_embeds.dtype))
        mode = self.config.time_conditioning
        layer_kwargs = dict(kwargs)
        if mode == "time_token":
            inputs_embeds = torch.cat([conditioning.unsqueeze(1), inputs_embeds], dim=1)
            if attention_mask is not None:
                attention_mask = torch.cat([attention_mask.new_ones(batch, 1), attention_mask], dim=1)
            if position_ids is not None:
                position_ids = torch.cat([position_ids.new_zeros(batch, 1), position_ids + 1], dim=1)
        else:
            layer_kwargs["conditioning"] = conditioning
            if mode == "adaln_single":
                layer_kwargs["shared_modulation"] = self.shared_modulation(F.silu(conditioning)).view(batch, 6, -1)
        out = run_bidirectional_stack(self, self.embed_tokens, self.layers, self.norm, None, inputs_embeds,
                                      attention_mask, position_ids, output_hidden_states, True, **layer_kwargs)
        hidden = out.last_hidden_state
        if mode == "time_token":
            hidden = hidden[:, 1:]
        else:
            shift, scale = self.final_modulation(F.silu(conditioning)).chunk(2, dim=-1)
            hidden = modulate(hidden, shift, scale)
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                   ignore_index=-100)
        result = LogitFMOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)
        return result if return_dict is not False else result.to_tuple()


__all__ = ["LogitFMBlock", "LogitFMModel", "LogitFMOutput", "LogitFMPreTrainedModel"]
