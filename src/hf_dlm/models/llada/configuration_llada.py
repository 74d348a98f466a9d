"""Configuration of LLaDA-architecture masked diffusion language models.

Field names are those of the released LLaDA-8B ``config.json`` (an OLMo-style config); the standard transformers
names (``hidden_size``, ``num_hidden_layers`` ...) are aliases of them, so either spelling reads and writes the same
attribute.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from ...modules.ngram import NgramEmbeddingConfig
from .._loading import RequiredConfigFieldsMixin


def _check_positive(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")


class LLaDAConfig(RequiredConfigFieldsMixin, PretrainedConfig):
    """Configuration for [`LLaDAModelLM`].

    Args:
        vocab_size: number of real tokens of the tokenizer.
        embedding_size: rows of the embedding table and columns of the output head; LLaDA pads the table to a
            multiple of 64 above ``vocab_size``. ``None`` means ``vocab_size``. Logits have this width.
        d_model: hidden size (alias ``hidden_size``).
        n_layers: number of transformer blocks (alias ``num_hidden_layers``).
        n_heads: attention heads (alias ``num_attention_heads``).
        n_kv_heads: key/value heads for grouped-query attention (alias ``num_key_value_heads``); ``None`` = ``n_heads``.
        mlp_hidden_size: width of ``ff_proj``/``up_proj`` (alias ``intermediate_size``); ``None`` = ``mlp_ratio * d_model``.
        mlp_ratio: used when ``mlp_hidden_size`` is ``None``.
        max_sequence_length: largest number of positions (alias ``max_position_embeddings``).
        rope_theta: RoPE base.
        rms_norm_eps: epsilon of the RMS norms.
        mask_token_id: id of the ``[MASK]`` token the model denoises (LLaDA-8B: 126336).
        weight_tying: share the embedding and the output head (alias ``tie_word_embeddings``); LLaDA-8B is untied.
        include_bias: biases on all linear layers; include_qkv_bias: biases on q/k/v only.
        activation_type / layer_norm_type / block_type: only the LLaDA-8B values (``silu``, ``rms``, ``llama``) exist
            in released checkpoints and only those are implemented; others raise ``ValueError``.
        initializer_range: standard deviation of the normal initialisation (``init_std`` in LLaDA's config).
        ngram_embedding: ``None`` (the released architecture), or hashed N-gram embedding settings (a dict or
            [`NgramEmbeddingConfig`]: ``max_n``, ``num_tables``, ``table_size_ratio``, ``amplification``,
            ``ignored_token_ids`` ...). They are resolved here (table sizes, hash base) and stored resolved, so a
            saved model hashes exactly as it did in training. N-grams touching ``mask_token_id``, ``pad_token_id``
            or an ignored id have no embedding, and N-grams never cross ``eos_token_id``.

    The defaults are LLaDA-8B's sizes. A ``config.json`` read by ``from_pretrained`` / ``AutoConfig`` must state
    every field of ``required_fields`` (or its standard alias; ``null`` allowed where ``None`` is) — a missing one
    raises ``MissingConfigFieldError`` (a ``ValueError``) naming it and the file instead of building 8B sizes.
    """

    model_type = "llada"
    required_fields = ("vocab_size", "embedding_size", "d_model", "n_layers", "n_heads", "mlp_hidden_size")
    attribute_map = {
        "hidden_size": "d_model",
        "num_hidden_layers": "n_layers",
        "num_attention_heads": "n_heads",
        "num_key_value_heads": "n_kv_heads",
        "intermediate_size": "mlp_hidden_size",
        "max_position_embeddings": "max_sequence_length",
        "initializer_range": "init_std",
    }

    def __init__(
        self,
        vocab_size: int = 126464,
        embedding_size: int | None = 126464,
        d_model: int = 4096,
        n_layers: int = 32,
        n_heads: int = 32,
        n_kv_heads: int | None = None,
        mlp_hidden_size: int | None = 12288,
        mlp_ratio: int = 4,
        max_sequence_length: int = 4096,
        rope_theta: float = 500000.0,
        rms_norm_eps: float = 1e-5,
        mask_token_id: int = 126336,
        weight_tying: bool = False,
        include_bias: bool = False,
        include_qkv_bias: bool = False,
        activation_type: str = "silu",
        layer_norm_type: str = "rms",
        block_type: str = "llama",
        init_std: float = 0.02,
        attention_dropout: float = 0.0,
        pad_token_id: int | None = 126081,
        eos_token_id: int | None = 126081,
        bos_token_id: int | None = None,
        ngram_embedding: dict[str, Any] | NgramEmbeddingConfig | None = None,
        **kwargs: Any,
    ) -> None:
        # the standard name may arrive through kwargs; LLaDA's own field wins when both are given
        if "tie_word_embeddings" in kwargs:
            weight_tying = bool(kwargs.pop("tie_word_embeddings"))
        aliases = {own: kwargs.pop(std) for std, own in self.attribute_map.items() if std in kwargs}
        d_model = aliases.get("d_model", d_model)
        n_layers = aliases.get("n_layers", n_layers)
        n_heads = aliases.get("n_heads", n_heads)
        n_kv_heads = aliases.get("n_kv_heads", n_kv_heads)
        mlp_hidden_size = aliases.get("mlp_hidden_size", mlp_hidden_size)
        max_sequence_length = aliases.get("max_sequence_length", max_sequence_length)
        init_std = aliases.get("init_std", init_std)
        for name, value in (("vocab_size", vocab_size), ("d_model", d_model), ("n_layers", n_layers),
                            ("n_heads", n_heads), ("max_sequence_length", max_sequence_length)):
            _check_positive(name, value)
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        _check_positive("n_kv_heads", n_kv_heads)
        if n_heads % n_kv_heads:
            raise ValueError(f"`n_heads` ({n_heads}) must be a multiple of `n_kv_heads` ({n_kv_heads}).")
        if d_model % n_heads:
            raise ValueError(f"`d_model` ({d_model}) must be a multiple of `n_heads` ({n_heads}).")
        embedding_size = vocab_size if embedding_size is None else embedding_size
        if embedding_size < vocab_size:
            raise ValueError(f"`embedding_size` ({embedding_size}) must be >= `vocab_size` ({vocab_size}).")
        if not 0 <= mask_token_id < embedding_size:
            raise ValueError(f"`mask_token_id` must lie in [0, embedding_size={embedding_size}), got {mask_token_id}.")
        if pad_token_id is not None and pad_token_id == mask_token_id:
            raise ValueError(f"`pad_token_id` must differ from `mask_token_id` (both are {mask_token_id}).")
        if activation_type not in ("silu", "swiglu"):
            raise ValueError(f"`activation_type` must be 'silu' (LLaDA-8B), got {activation_type!r}.")
        if layer_norm_type not in ("rms", "rmsnorm"):
            raise ValueError(f"`layer_norm_type` must be 'rms', got {layer_norm_type!r}.")
        if block_type != "llama":
            raise ValueError(f"`block_type` must be 'llama', got {block_type!r}.")
        if kwargs.get("alibi"):
            raise ValueError("`alibi=True` is not supported: LLaDA checkpoints use RoPE (`rope=true`).")
        if kwargs.get("rope") is False:
            raise ValueError("`rope=False` is not supported: LLaDA checkpoints use RoPE.")

        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.d_model = d_model
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads
        self.mlp_ratio = mlp_ratio
        self.mlp_hidden_size = mlp_hidden_size if mlp_hidden_size is not None else mlp_ratio * d_model
        _check_positive("mlp_hidden_size", self.mlp_hidden_size)
        self.max_sequence_length = max_sequence_length
        self.rope_theta = float(rope_theta)
        self.rms_norm_eps = rms_norm_eps
        self.mask_token_id = mask_token_id
        self.weight_tying = weight_tying
        self.include_bias = include_bias
        self.include_qkv_bias = include_qkv_bias
        self.activation_type = activation_type
        self.layer_norm_type = layer_norm_type
        self.block_type = block_type
        self.init_std = init_std
        self.attention_dropout = attention_dropout
        self.ngram_embedding = None
        if ngram_embedding is not None:
            ngram = NgramEmbeddingConfig.from_dict(ngram_embedding).resolve(vocab_size, d_model)
            for token_id in ngram.ignored_token_ids:
                if not 0 <= token_id < embedding_size:
                    raise ValueError(f"`ngram_embedding.ignored_token_ids` must lie in [0, embedding_size="
                                     f"{embedding_size}), got {token_id}.")
            self.ngram_embedding = ngram.to_dict()
        kwargs.setdefault("use_cache", False)
        super().__init__(
            pad_token_id=pad_token_id,
            eos_token_id=eos_token_id,
            bos_token_id=bos_token_id,
            tie_word_embeddings=weight_tying,
            **kwargs,
        )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def ngram_embedding_config(self) -> NgramEmbeddingConfig | None:
        """The resolved N-gram embedding settings, or ``None`` when the option is off."""
        return None if self.ngram_embedding is None else NgramEmbeddingConfig.from_dict(self.ngram_embedding)


__all__ = ["LLaDAConfig"]
