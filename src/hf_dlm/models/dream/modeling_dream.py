"""Dream: a bidirectional Qwen2 transformer trained as a masked diffusion language model (shifted prediction).

Ye et al., "Dream 7B" (2025). The module tree reproduces the released checkpoints' keys (``model.embed_tokens``,
``model.layers.{i}.self_attn.{q,k,v,o}_proj``, ``mlp.{gate,up,down}_proj``, ``input_layernorm``,
``post_attention_layernorm``, ``model.norm``, ``lm_head``). Dream keeps the autoregressive head: the logits at
position *i* predict token *i + 1*. [`DreamModel`] returns them unshifted, exactly as the original;
[`DreamForMaskedLM`] and the denoiser contract (``hf_dlm.denoiser``) shift them so position *i* predicts token *i*.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput, MaskedLMOutput
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from ...denoiser import shift_logits_to_tokens
from ...generation.mixin import MaskedDiffusionGenerationMixin
from .._layers import AttentionHeads, RotaryEmbedding, init_weights, run_bidirectional_stack
from .._masked_lm import (check_logits_to_keep_without_labels, check_resize_keeps_token_ids, kept_positions,
                          masked_lm_loss, resized_rows)
from .configuration_dream import DreamConfig
from .._loading import StrictLoadingMixin
from .._sharing import HubSharingMixin


class DreamAttention(nn.Module, AttentionHeads):
    def __init__(self, config: DreamConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.setup_heads(config, config.hidden_size, config.num_attention_heads, config.num_key_value_heads)
        d, kv = config.hidden_size, config.num_key_value_heads * self.head_dim
        self.q_proj = nn.Linear(d, config.num_attention_heads * self.head_dim, bias=True)
        self.k_proj = nn.Linear(d, kv, bias=True)
        self.v_proj = nn.Linear(d, kv, bias=True)
        self.o_proj = nn.Linear(config.num_attention_heads * self.head_dim, d, bias=False)

    def forward(self, hidden_states: torch.Tensor, position_embeddings: tuple[torch.Tensor, torch.Tensor],
                attention_mask: torch.Tensor | None, **kwargs) -> torch.Tensor:
        att = self.bidirectional_attention(self.q_proj(hidden_states), self.k_proj(hidden_states),
                                           self.v_proj(hidden_states), position_embeddings, attention_mask, **kwargs)
        return self.o_proj(att)


class DreamMLP(nn.Module):
    def __init__(self, config: DreamConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.act_fn = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class DreamDecoderLayer(GradientCheckpointingLayer):
    def __init__(self, config: DreamConfig, layer_idx: int) -> None:
        super().__init__()
        self.self_attn = DreamAttention(config, layer_idx)
        self.mlp = DreamMLP(config)
        self.input_layernorm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, hidden_states: torch.Tensor, position_embeddings: tuple[torch.Tensor, torch.Tensor],
                attention_mask: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        hidden_states = hidden_states + self.self_attn(self.input_layernorm(hidden_states), position_embeddings,
                                                       attention_mask, **kwargs)
        return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))


class DreamPreTrainedModel(StrictLoadingMixin, HubSharingMixin, PreTrainedModel):
    config_class = DreamConfig
    config: DreamConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["DreamDecoderLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _keys_to_ignore_on_load_unexpected = [r"rotary_emb\.inv_freq"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        init_weights(self, module)

    def resize_token_embeddings(self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None,
                                mean_resizing: bool = True) -> nn.Embedding:
        """[`PreTrainedModel.resize_token_embeddings`] (embedding table and ``lm_head``, tied or not).

        Dream's config has one size, ``vocab_size`` = the rows of both (Dream-7B pads them beyond its tokenizer),
        which transformers sets to the new number of rows. A resize that would drop the mask token, or the
        ``pad_token_id`` the embedding is built with (``padding_idx``), is refused: the checkpoint would not load back.
        """
        if new_num_tokens is not None or pad_to_multiple_of is not None:
            rows = resized_rows(self.get_input_embeddings().weight.shape[0], new_num_tokens, pad_to_multiple_of)
            check_resize_keeps_token_ids(new_num_tokens, rows, {"mask_token_id": self.config.mask_token_id,
                                                                "pad_token_id": self.config.pad_token_id})
        return super().resize_token_embeddings(new_num_tokens, pad_to_multiple_of, mean_resizing)


class DreamBaseModel(DreamPreTrainedModel):
    """The transformer trunk; ``forward`` returns the final normed hidden states.

    Loads from a full [`DreamModel`] checkpoint too: its ``lm_head`` is not part of the trunk and is left out."""

    _keys_to_ignore_on_load_unexpected = [r"rotary_emb\.inv_freq", r"^lm_head\.weight$"]

    def __init__(self, config: DreamConfig) -> None:
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleList(DreamDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config.head_dim, config.rope_theta)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def forward(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                position_ids: torch.LongTensor | None = None, inputs_embeds: torch.Tensor | None = None,
                output_hidden_states: bool | None = None, return_dict: bool | None = None,
                **kwargs) -> BaseModelOutput | tuple:
        return run_bidirectional_stack(self, self.embed_tokens, self.layers, self.norm, input_ids, inputs_embeds, attention_mask,
                                       position_ids, output_hidden_states, return_dict, **kwargs)


class DreamModel(MaskedDiffusionGenerationMixin, DreamPreTrainedModel):
    """Dream with its head. ``forward`` returns the raw logits (position *i* predicts token *i + 1*), as the
    original; ``generate()`` and every algorithm of this library shift them through the denoiser contract.

    ``generate()`` / ``diffusion_generate()`` decode with Dream's own sampler (``sampler="dream"``: the per-step
    count ``⌊M·(1 − s/t)⌋``, Dream's order of temperature, top-p and top-k, ``alg`` ``origin`` by default)."""

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}
    predicts_next_token = True
    diffusion_sampler = "dream"

    def __init__(self, config: DreamConfig) -> None:
        super().__init__(config)
        self.model = DreamBaseModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def forward(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                position_ids: torch.LongTensor | None = None, inputs_embeds: torch.Tensor | None = None,
                labels: torch.LongTensor | None = None, output_hidden_states: bool | None = None,
                return_dict: bool | None = None, logits_to_keep: int | torch.Tensor = 0,
                **kwargs) -> MaskedLMOutput | tuple:
        """Logits of shape (batch, length, vocab_size): raw for [`DreamModel`] (position *i* predicts token *i + 1*),
        aligned for [`DreamForMaskedLM`].

        ``logits_to_keep`` (as in transformers' causal LMs: 0 = every position, *N* = the last *N*, or a 1-D tensor
        of positions) returns the logits of those positions only — the same rows as the full logits, raw or aligned
        as the class returns them — and applies the head to no other hidden state.

        ``labels`` (batch, length) gives ``loss``, as ``AutoModelForMaskedLM``, for both classes: labels are aligned
        with the tokens (``labels[:, i]`` is the target of token *i*), and the loss is the mean cross-entropy of the
        aligned logits (``hf_dlm.denoiser.shift_logits_to_tokens`` of the raw ones, the denoiser contract) over
        positions whose label is not -100. Every labelled position must hold ``config.mask_token_id`` in
        ``input_ids`` (``ValueError`` otherwise); the masked-diffusion objective itself is
        ``hf_dlm.training.MaskedDiffusionTrainer``. ``num_items_in_batch`` (passed by the ``Trainer``) turns the
        mean into a sum divided by it. As everywhere in this library, position 0 has no predecessor and is scored
        with its own logits.
        """
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)
        check_logits_to_keep_without_labels(logits_to_keep, labels)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         inputs_embeds=inputs_embeds, output_hidden_states=output_hidden_states, return_dict=True,
                         **kwargs)
        hidden = out.last_hidden_state
        logits = self._head(hidden, kept_positions(logits_to_keep, hidden.shape[1], hidden.device))
        loss = None
        if labels is not None:
            aligned = shift_logits_to_tokens(logits) if type(self).predicts_next_token else logits
            loss = masked_lm_loss(aligned, labels, input_ids, self.config.mask_token_id, num_items_in_batch)
        result = MaskedLMOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)
        return result if return_dict is not False else result.to_tuple()

    def _head(self, hidden: torch.Tensor, keep: torch.LongTensor | None) -> torch.Tensor:
        return self.lm_head(hidden if keep is None else hidden[:, keep])


class DreamForMaskedLM(DreamModel):
    """Dream whose ``forward`` logits are aligned (position *i* predicts token *i*), for ``fill-mask`` and any
    code that expects masked-LM outputs. Same weights and checkpoint layout as [`DreamModel`]."""

    predicts_next_token = False
    aligns_by_shifting = True  # aligned logits at i come from the hidden state at i - 1 (a window starts one early)

    def _head(self, hidden: torch.Tensor, keep: torch.LongTensor | None) -> torch.Tensor:
        if keep is None:
            return shift_logits_to_tokens(self.lm_head(hidden))
        return self.lm_head(hidden[:, (keep - 1).clamp(min=0)])  # aligned row i is raw row max(i - 1, 0)


__all__ = ["DreamPreTrainedModel", "DreamBaseModel", "DreamModel", "DreamForMaskedLM"]
