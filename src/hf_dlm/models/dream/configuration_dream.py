"""Configuration of Dream-architecture masked diffusion language models.

Ye et al., "Dream 7B" (2025): a Qwen2.5 transformer made bidirectional and trained to denoise masked tokens,
predicting token *i* from the hidden state at *i − 1* (the autoregressive head is kept, shifted). Field names
follow the released ``Dream-org/Dream-v0-*-7B`` ``config.json``; ``model_type`` is ``"Dream"`` as there.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from .._loading import RequiredConfigFieldsMixin


class DreamConfig(RequiredConfigFieldsMixin, PretrainedConfig):
    """Configuration for [`DreamModel`].

    Args:
        vocab_size: rows of the embedding table and of ``lm_head``.
        hidden_size, intermediate_size, num_hidden_layers, num_attention_heads: Qwen2 shapes.
        num_key_value_heads: key/value heads for grouped-query attention; ``None`` = ``num_attention_heads``.
        max_position_embeddings: largest number of positions.
        rope_theta: RoPE base. ``rope_scaling`` must be ``None`` (Dream-7B ships without scaling).
        rms_norm_eps: epsilon of the RMS norms.
        hidden_act: only ``"silu"`` (Qwen2's SwiGLU MLP).
        mask_token_id: id of the ``[MASK]`` token (151666 in Dream's tokenizer).
        tie_word_embeddings: share embedding and ``lm_head`` (Dream-7B: untied).
        initializer_range: standard deviation of the normal initialisation.

    The defaults are Dream-7B's sizes. A ``config.json`` read by ``from_pretrained`` / ``AutoConfig`` must state
    every field of ``required_fields`` — a missing one raises ``MissingConfigFieldError`` (a ``ValueError``) naming
    it and the file instead of building 7B sizes.
    """

    model_type = "Dream"
    required_fields = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                       "num_key_value_heads")

    def __init__(
        self,
        vocab_size: int = 152064,
        hidden_size: int = 3584,
        intermediate_size: int = 18944,
        num_hidden_layers: int = 28,
        num_attention_heads: int = 28,
        num_key_value_heads: int | None = 4,
        hidden_act: str = "silu",
        max_position_embeddings: int = 131072,
        initializer_range: float = 0.02,
        rms_norm_eps: float = 1e-6,
        rope_theta: float = 1000000.0,
        rope_scaling: dict | None = None,
        attention_dropout: float = 0.0,
        mask_token_id: int = 151666,
        tie_word_embeddings: bool = False,
        pad_token_id: int | None = 151643,
        bos_token_id: int | None = 151643,
        eos_token_id: int | None = 151643,
        **kwargs: Any,
    ) -> None:
        for name, value in (("vocab_size", vocab_size), ("hidden_size", hidden_size),
                            ("intermediate_size", intermediate_size), ("num_hidden_layers", num_hidden_layers),
                            ("num_attention_heads", num_attention_heads),
                            ("max_position_embeddings", max_position_embeddings)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        num_key_value_heads = num_attention_heads if num_key_value_heads is None else num_key_value_heads
        if num_attention_heads % num_key_value_heads:
            raise ValueError(f"`num_attention_heads` ({num_attention_heads}) must be a multiple of "
                             f"`num_key_value_heads` ({num_key_value_heads}).")
        if hidden_size % num_attention_heads:
            raise ValueError(f"`hidden_size` ({hidden_size}) must be a multiple of `num_attention_heads` "
                             f"({num_attention_heads}).")
        if hidden_act != "silu":
            raise ValueError(f"`hidden_act` must be 'silu', got {hidden_act!r}.")
        if rope_scaling is not None:
            raise ValueError(f"`rope_scaling` must be None (Dream uses plain RoPE), got {rope_scaling!r}.")
        if not 0 <= mask_token_id < vocab_size:
            raise ValueError(f"`mask_token_id` must lie in [0, vocab_size={vocab_size}), got {mask_token_id}.")
        if pad_token_id is not None and pad_token_id == mask_token_id:
            raise ValueError(f"`pad_token_id` must differ from `mask_token_id` (both are {mask_token_id}).")
        if kwargs.get("use_sliding_window"):
            raise ValueError("`use_sliding_window=True` is not supported: Dream attends to the full sequence.")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.initializer_range = initializer_range
        self.rms_norm_eps = rms_norm_eps
        self.rope_theta = float(rope_theta)
        self.attention_dropout = attention_dropout
        self.mask_token_id = mask_token_id
        kwargs.setdefault("use_cache", False)
        super().__init__(pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id,
                         tie_word_embeddings=tie_word_embeddings, **kwargs)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


__all__ = ["DreamConfig"]
