"""LLaDA: a bidirectional Llama-style transformer trained as a masked diffusion language model.

Nie et al., "Large Language Diffusion Models" (2025). The module tree reproduces the released LLaDA-8B
checkpoints' state-dict keys (``model.transformer.wte``, ``model.transformer.blocks.{i}.q_proj`` ...,
``model.transformer.ln_f``, ``model.transformer.ff_out``), so those checkpoints load without remote code.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput, MaskedLMOutput
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from ...generation.mixin import MaskedDiffusionGenerationMixin
from ...modules.ngram import NgramEmbedding, NgramIdCache
from ...modules.ngram.embedding import warn_if_over_budget
from .._layers import AttentionHeads, RotaryEmbedding, init_weights, run_bidirectional_stack
from .._masked_lm import (check_logits_to_keep_without_labels, check_resize_keeps_token_ids, kept_positions,
                          masked_lm_loss, resized_rows)
from .configuration_llada import LLaDAConfig
from .._loading import StrictLoadingMixin
from .._sharing import HubSharingMixin


class LLaDABlock(GradientCheckpointingLayer, AttentionHeads):
    """Pre-norm block: ``x + attn_out(attn(attn_norm(x)))`` then ``x + ff_out(silu(ff_proj(h)) * up_proj(h))``."""

    def __init__(self, config: LLaDAConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.setup_heads(config, config.d_model, config.n_heads, config.n_kv_heads)
        d, kv = config.d_model, config.n_kv_heads * self.head_dim
        qkv_bias = config.include_bias or config.include_qkv_bias
        self.q_proj = nn.Linear(d, d, bias=qkv_bias)
        self.k_proj = nn.Linear(d, kv, bias=qkv_bias)
        self.v_proj = nn.Linear(d, kv, bias=qkv_bias)
        self.attn_out = nn.Linear(d, d, bias=config.include_bias)
        self.attn_norm = LlamaRMSNorm(d, eps=config.rms_norm_eps)
        self.ff_norm = LlamaRMSNorm(d, eps=config.rms_norm_eps)
        self.ff_proj = nn.Linear(d, config.mlp_hidden_size, bias=config.include_bias)
        self.up_proj = nn.Linear(d, config.mlp_hidden_size, bias=config.include_bias)
        self.ff_out = nn.Linear(config.mlp_hidden_size, d, bias=config.include_bias)
        self.act = nn.SiLU()

    def forward(self, hidden_states: torch.Tensor, position_embeddings: tuple[torch.Tensor, torch.Tensor],
                attention_mask: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        h = self.attn_norm(hidden_states)
        att = self.bidirectional_attention(self.q_proj(h), self.k_proj(h), self.v_proj(h), position_embeddings,
                                           attention_mask, **kwargs)
        hidden_states = hidden_states + self.attn_out(att)
        h = self.ff_norm(hidden_states)
        return hidden_states + self.ff_out(self.act(self.ff_proj(h)) * self.up_proj(h))


class LLaDAPreTrainedModel(StrictLoadingMixin, HubSharingMixin, PreTrainedModel):
    config_class = LLaDAConfig
    config: LLaDAConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["LLaDABlock"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    # LLaDA keeps both the output head (`ff_out`) and the MLP down-projections (`blocks.*.ff_out`) under that name.
    _keys_to_ignore_on_load_unexpected = [r"rotary_emb\.inv_freq"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        init_weights(self, module)

    def resize_token_embeddings(self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None,
                                mean_resizing: bool = True) -> nn.Embedding:
        """[`PreTrainedModel.resize_token_embeddings`] (embedding table and output head ``ff_out``, tied or not),
        keeping LLaDA's two sizes consistent so the saved checkpoint loads back.

        transformers only sets ``config.vocab_size`` (to the new number of rows); LLaDA also records the rows in
        ``config.embedding_size``, which a reload checks against ``vocab_size`` and the weights. Afterwards
        ``embedding_size`` is the new number of rows (``new_num_tokens`` rounded up to ``pad_to_multiple_of``) and
        ``vocab_size`` the number of real tokens: ``new_num_tokens``, or the previous ``vocab_size`` when only
        ``pad_to_multiple_of`` is given. Rows from ``vocab_size`` to ``embedding_size`` are padding, never proposed by
        the sampler. A resize that would drop the mask token (or an id the N-gram embedding ignores) is refused.
        """
        if new_num_tokens is None and pad_to_multiple_of is None:
            return super().resize_token_embeddings(new_num_tokens, pad_to_multiple_of, mean_resizing)
        config = self.config
        rows = resized_rows(self.get_input_embeddings().weight.shape[0], new_num_tokens, pad_to_multiple_of)
        protected = {"mask_token_id": config.mask_token_id}
        ngram = config.ngram_embedding_config
        if ngram is not None and ngram.ignored_token_ids:
            protected["ngram_embedding.ignored_token_ids"] = max(ngram.ignored_token_ids)
        check_resize_keeps_token_ids(new_num_tokens, rows, protected)
        real_tokens = new_num_tokens if new_num_tokens is not None else config.vocab_size
        embeddings = super().resize_token_embeddings(new_num_tokens, pad_to_multiple_of, mean_resizing)
        config.embedding_size = embeddings.weight.shape[0]
        config.vocab_size = min(real_tokens, config.embedding_size)
        return embeddings


class LLaDAModel(LLaDAPreTrainedModel):
    """The transformer trunk; ``forward`` returns the final normed hidden states.

    ``transformer.ff_out`` (the output head) lives here too because the released checkpoints store it under
    ``model.transformer.ff_out``; [`LLaDAModelLM`] applies it. With ``config.ngram_embedding`` set, the input
    embedding is ``transformer.ngram_embed(input_ids, wte(input_ids))`` (hashed N-gram embeddings); without it the
    module tree is exactly the released one.
    """

    def __init__(self, config: LLaDAConfig) -> None:
        super().__init__(config)
        modules = {
            "wte": nn.Embedding(config.embedding_size, config.d_model),
            "blocks": nn.ModuleList(LLaDABlock(config, i) for i in range(config.n_layers)),
            "ln_f": LlamaRMSNorm(config.d_model, eps=config.rms_norm_eps),
            "ff_out": nn.Linear(config.d_model, config.embedding_size, bias=config.include_bias),
        }
        ngram = config.ngram_embedding_config
        if ngram is not None:
            blocked = [config.mask_token_id] + ([config.pad_token_id] if config.pad_token_id is not None else [])
            modules["ngram_embed"] = NgramEmbedding(ngram, config.d_model, blocked, config.eos_token_id,
                                                     norm_eps=config.rms_norm_eps)
        self.transformer = nn.ModuleDict(modules)
        self.rotary_emb = RotaryEmbedding(config.head_dim, config.rope_theta)
        self.gradient_checkpointing = False
        self.post_init()
        if ngram is not None:
            warn_if_over_budget(self)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer.wte

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.transformer.wte = value

    def get_output_embeddings(self) -> nn.Linear:
        """The output head ``transformer.ff_out``, stored in the trunk as in the released checkpoints (so that
        ``resize_token_embeddings`` on the trunk alone resizes it with the embedding table)."""
        return self.transformer.ff_out

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.transformer.ff_out = value

    def forward(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                position_ids: torch.LongTensor | None = None, inputs_embeds: torch.Tensor | None = None,
                output_hidden_states: bool | None = None, return_dict: bool | None = None,
                ngram_cache: NgramIdCache | None = None, **kwargs) -> BaseModelOutput | tuple:
        """Trunk forward. ``inputs_embeds`` replaces the whole embedding (token and N-gram); ``ngram_cache`` (an
        [`NgramIdCache`]) makes N-gram ids incremental across calls on one decoding canvas."""
        if "ngram_embed" in self.transformer and kwargs.get("cache_position") is not None:
            raise ValueError("N-gram embeddings read the tokens before each position, which a cached window "
                             "(`cache_position`) does not carry: decode this model without a key/value cache "
                             "(`cache_implementation=None`).")
        if "ngram_embed" in self.transformer and input_ids is not None and inputs_embeds is None:
            inputs_embeds = self.transformer.ngram_embed(input_ids, self.transformer.wte(input_ids), attention_mask,
                                                         ngram_cache)
            input_ids = None
        return run_bidirectional_stack(self, self.transformer.wte, self.transformer.blocks, self.transformer.ln_f,
                                       input_ids, inputs_embeds, attention_mask, position_ids, output_hidden_states,
                                       return_dict, **kwargs)


class LLaDAModelLM(MaskedDiffusionGenerationMixin, LLaDAPreTrainedModel):
    """LLaDA with its output head: logits at position *i* predict token *i* (no shift).

    ``generate()`` runs masked-diffusion decoding (see [`MaskedDiffusionGenerationConfig`]).
    """

    _tied_weights_keys = {"model.transformer.ff_out.weight": "model.transformer.wte.weight"}
    predicts_next_token = False

    def __init__(self, config: LLaDAConfig) -> None:
        super().__init__(config)
        self.model = LLaDAModel(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.transformer.wte

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.transformer.wte = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.model.transformer.ff_out

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.model.transformer.ff_out = value

    def _decoding_model_kwargs(self, generation_config) -> dict:
        """An [`NgramIdCache`] for one ``generate()`` call when the model has N-gram embeddings and ``use_cache``.
        A key/value cache is refused for N-gram models: a cached window lacks the tokens before it."""
        if self.config.ngram_embedding is not None and generation_config.cache_implementation is not None:
            raise ValueError(f"`cache_implementation={generation_config.cache_implementation!r}` cannot be used with "
                             "N-gram embeddings (a cached window does not carry the tokens its N-grams read); "
                             "decode with cache_implementation=None.")
        if self.config.ngram_embedding is not None and generation_config.use_cache:
            return {"ngram_cache": NgramIdCache()}
        return {}

    def forward(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                position_ids: torch.LongTensor | None = None, inputs_embeds: torch.Tensor | None = None,
                labels: torch.LongTensor | None = None, output_hidden_states: bool | None = None,
                return_dict: bool | None = None, logits_to_keep: int | torch.Tensor = 0,
                **kwargs) -> MaskedLMOutput | tuple:
        """Denoiser forward: returns logits of shape (batch, length, embedding_size).

        ``logits_to_keep`` (as in transformers' causal LMs: 0 = every position, *N* = the last *N*, or a 1-D tensor
        of positions) applies the head to those positions only; ``generate()`` keeps the current block's.

        A 2-D ``attention_mask`` (1 = token, 0 = padding) removes padded keys from attention; when ``position_ids``
        is omitted, positions restart at 0 on the first real token of every row.

        ``labels`` (batch, length) gives ``loss``, as ``AutoModelForMaskedLM``: the mean cross-entropy over positions
        whose label is not -100. Every labelled position must hold ``config.mask_token_id`` in ``input_ids``
        (``ValueError`` otherwise: a denoiser scored on tokens it sees learns to copy); the masked-diffusion
        objective itself is ``hf_dlm.training.MaskedDiffusionTrainer``. ``num_items_in_batch`` (passed by the
        ``Trainer``) turns the mean into a sum divided by it.
        """
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)
        check_logits_to_keep_without_labels(logits_to_keep, labels)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         inputs_embeds=inputs_embeds, output_hidden_states=output_hidden_states, return_dict=True,
                         **kwargs)
        hidden = out.last_hidden_state
        keep = kept_positions(logits_to_keep, hidden.shape[1], hidden.device)
        logits = self.model.transformer.ff_out(hidden if keep is None else hidden[:, keep])
        loss = None
        if labels is not None:
            loss = masked_lm_loss(logits, labels, input_ids, self.config.mask_token_id, num_items_in_batch)
        result = MaskedLMOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)
        return result if return_dict is not False else result.to_tuple()


__all__ = ["LLaDAPreTrainedModel", "LLaDAModel", "LLaDAModelLM"]
