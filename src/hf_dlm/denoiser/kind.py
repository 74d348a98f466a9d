"""What a denoiser is, asked once: its kind (text sequence or image grid), mask id, widths and inputs.

Algorithms never test a model's class or config keys themselves; they ask these functions. A model declares its kind
with class attributes, as transformers models declare their capabilities: ``predicts_next_token`` (Dream-style
shifted logits) and ``denoiser_kind`` (``"text"``, the default, or ``"image"`` for a transformer over a grid of VQ
tokens, as in MaskGIT, arXiv:2202.04200). Foreign image transformers that declare nothing (diffusers'
``UVit2DModel`` of aMUSEd, arXiv:2401.01808) are recognised by their config (``codebook_size`` and ``sample_size``).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from torch import nn

DenoiserKind = Literal["text", "image"]
_DECLARATIONS = ("predicts_next_token", "denoiser_kind")


def unwrap(model: nn.Module) -> nn.Module:
    """The module whose class declares the denoiser attributes: looks through DDP and PEFT wrappers."""
    while True:
        if any(hasattr(type(model), name) for name in _DECLARATIONS):
            return model
        inner = getattr(model, "module", None)  # DistributedDataParallel
        if inner is None and hasattr(model, "get_base_model"):  # peft.PeftModel
            inner = model.get_base_model()
        if inner is None:
            return model
        model = inner


def _config_value(model: nn.Module, name: str) -> Any:
    return getattr(getattr(unwrap(model), "config", None), name, None)


def predicts_next_token(model: nn.Module) -> bool:
    """Whether ``model``'s raw logits at position *i* predict token *i + 1* (Dream) rather than token *i*."""
    return bool(getattr(type(unwrap(model)), "predicts_next_token", False))


def denoiser_kind(model: nn.Module) -> DenoiserKind:
    """``"image"`` for a transformer over a token grid, ``"text"`` for a language model over a 1-D sequence."""
    declared = getattr(type(unwrap(model)), "denoiser_kind", None)
    if declared is not None:
        return declared
    is_grid = _config_value(model, "codebook_size") is not None and _config_value(model, "sample_size") is not None
    return "image" if is_grid else "text"


def is_image_denoiser(model: nn.Module) -> bool:
    """Whether ``model`` denoises a grid of image tokens (see [`denoiser_kind`])."""
    return denoiser_kind(model) == "image"


def get_mask_token_id(model: nn.Module) -> int:
    """The mask id the model denoises: a ``mask_token_id`` attribute of the model (image transformers) or of its
    config (language models); raises ``ValueError`` when it has none."""
    inner = unwrap(model)
    mask_token_id = getattr(inner, "mask_token_id", None)
    if mask_token_id is None:
        mask_token_id = getattr(getattr(inner, "config", None), "mask_token_id", None)
    if mask_token_id is None:
        raise ValueError(f"{type(model).__name__} has no `config.mask_token_id`: a masked diffusion model needs one.")
    return int(mask_token_id)


def logit_width(model: nn.Module) -> int:
    """Number of logits per position (the output layer's rows; these may exceed the real vocabulary)."""
    inner = unwrap(model)
    output = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    if output is not None and hasattr(output, "weight"):
        return int(output.weight.shape[0])
    for name in ("embedding_size", "vocab_size", "codebook_size"):
        value = _config_value(model, name)
        if value:
            return int(value)
    raise ValueError(f"{type(model).__name__} declares no output layer nor vocabulary size.")


def token_vocab_size(model: nn.Module) -> int:
    """Real token ids ``0 … n − 1`` the denoiser may write: the VQ codebook of an image model, the vocabulary of a
    language model (without the padded rows of its output layer)."""
    name = "codebook_size" if is_image_denoiser(model) else "vocab_size"
    return int(_config_value(model, name) or logit_width(model))


def fixed_length(model: nn.Module) -> int | None:
    """Tokens an image denoiser writes (its ``sample_size²`` grid); None for a language model, whose generation
    length the caller chooses."""
    return int(_config_value(model, "sample_size")) ** 2 if is_image_denoiser(model) else None


def grid_shape(model: nn.Module, length: int) -> tuple[int, int]:
    """(height, width) of ``length`` image tokens: the model's ``sample_size`` square, or another square."""
    side = _config_value(model, "sample_size")
    if side is not None and int(side) ** 2 == length:
        return int(side), int(side)
    root = math.isqrt(length)
    if root * root != length:
        raise ValueError(f"{length} image tokens do not form a square grid; pass ids of shape (batch, height, width).")
    return root, root


def uses_mask_ratio(model: nn.Module) -> bool:
    """Whether the denoiser takes the fraction of masked tokens as an input (a timestep-like ``mask_ratio``)."""
    return bool(_config_value(model, "use_mask_ratio"))


def null_class_label(model: nn.Module) -> int | None:
    """The label of the null class (classifier-free guidance) of a class-conditional denoiser, else None."""
    classes = _config_value(model, "num_classes")
    return int(classes) if classes else None


def special_token_ids(model: nn.Module, tokenizer: Any = None) -> list[int]:
    """Ids a generator must never write: the tokenizer's special tokens, or the config's pad/bos/eos ids, of a
    language model; none for an image model (every codebook entry is an image token)."""
    if is_image_denoiser(model):
        return []
    if tokenizer is not None and hasattr(tokenizer, "all_special_ids"):
        return list(tokenizer.all_special_ids)
    ids = (_config_value(model, name) for name in ("pad_token_id", "bos_token_id", "eos_token_id"))
    return [int(i) for i in ids if i is not None]


__all__ = ["DenoiserKind", "denoiser_kind", "fixed_length", "get_mask_token_id", "grid_shape", "is_image_denoiser",
           "logit_width", "null_class_label", "predicts_next_token", "special_token_ids", "token_vocab_size",
           "unwrap", "uses_mask_ratio"]
