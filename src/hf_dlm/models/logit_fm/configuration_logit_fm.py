"""Configuration of Logit-FM models: a bidirectional transformer over points of the vocabulary simplex, conditioned
on the flow time t."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from .._loading import RequiredConfigFieldsMixin

TIME_CONDITIONINGS = ("adaln", "adaln_single", "time_token")


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")


class LogitFMConfig(RequiredConfigFieldsMixin, PretrainedConfig):
    """Configuration for [`LogitFMModel`].

    Args:
        vocab_size: N, the simplex dimension and the width of the output logits.
        hidden_size: model width d; the input at each position is x_t·E with E of shape (N, d).
        num_hidden_layers / num_attention_heads: depth and heads of the bidirectional transformer.
        intermediate_size: width of the gated (SwiGLU) MLP.
        max_position_embeddings: largest sequence length (RoPE positions).
        time_conditioning: how t enters the network (the paper's Appendix A compares these) —
            ``adaln``: DiT's adaLN-Zero, every block regresses shift/scale/gate of its two LayerNorms from the time
            embedding (zero-initialised, so every block starts as the identity); ``adaln_single``: PixArt-α's
            adaLN-single, one shared regression plus a learnt per-block offset (far fewer parameters);
            ``time_token``: the time embedding is prepended as an extra token and the norms are plain LayerNorms.
        time_embedding_dim: channels of the sinusoidal embedding of 1000·t before its MLP.
        smoothing_beta: β of eq. 3 used in training and sampling (the paper: 0.01); stored so a saved model carries
            the path it was trained on.
        dirichlet_concentration: α of the noise x_0 ~ Dirichlet(α·1) (the paper: 1, uniform on the simplex).
        rope_theta / layer_norm_eps / initializer_range: as in other transformers models.

    A ``config.json`` read by ``from_pretrained`` / ``AutoConfig`` must state every field of ``required_fields``;
    a missing one raises ``MissingConfigFieldError`` (a ``ValueError``) naming it and the file.
    """

    model_type = "logit_fm"
    required_fields = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                       "time_conditioning", "time_embedding_dim")

    def __init__(self, vocab_size: int = 50257, hidden_size: int = 768, num_hidden_layers: int = 12,
                 num_attention_heads: int = 12, intermediate_size: int = 2048, max_position_embeddings: int = 1024,
                 time_conditioning: str = "adaln", time_embedding_dim: int = 256, smoothing_beta: float = 0.01,
                 dirichlet_concentration: float = 1.0, rope_theta: float = 10000.0, layer_norm_eps: float = 1e-6,
                 initializer_range: float = 0.02, attention_dropout: float = 0.0,
                 tie_word_embeddings: bool = False, **kwargs: Any) -> None:
        for name, value in (("vocab_size", vocab_size), ("hidden_size", hidden_size),
                            ("num_hidden_layers", num_hidden_layers), ("num_attention_heads", num_attention_heads),
                            ("intermediate_size", intermediate_size),
                            ("max_position_embeddings", max_position_embeddings),
                            ("time_embedding_dim", time_embedding_dim)):
            _positive_int(name, value)
        if hidden_size % num_attention_heads:
            raise ValueError(f"`hidden_size` ({hidden_size}) must be divisible by `num_attention_heads` "
                             f"({num_attention_heads}).")
        if time_conditioning not in TIME_CONDITIONINGS:
            raise ValueError(f"`time_conditioning` must be one of {TIME_CONDITIONINGS}, got {time_conditioning!r}.")
        if time_embedding_dim % 2:
            raise ValueError(f"`time_embedding_dim` must be even, got {time_embedding_dim}.")
        if isinstance(smoothing_beta, bool) or not 0.0 < float(smoothing_beta) < 1.0:
            raise ValueError(f"`smoothing_beta` must lie in (0, 1), got {smoothing_beta!r}.")
        if not float(dirichlet_concentration) > 0:
            raise ValueError(f"`dirichlet_concentration` must be > 0, got {dirichlet_concentration!r}.")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_attention_heads
        self.head_dim = hidden_size // num_attention_heads
        self.intermediate_size = intermediate_size
        self.max_position_embeddings = max_position_embeddings
        self.time_conditioning = time_conditioning
        self.time_embedding_dim = time_embedding_dim
        self.smoothing_beta = float(smoothing_beta)
        self.dirichlet_concentration = float(dirichlet_concentration)
        self.rope_theta = rope_theta
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        self.attention_dropout = attention_dropout
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)


__all__ = ["LogitFMConfig", "TIME_CONDITIONINGS"]
