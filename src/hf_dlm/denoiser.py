"""The denoiser contract (``design.md``): every masked model, seen by every algorithm, maps token ids in which
some positions hold the mask id to logits where **position i predicts token i**.

Algorithms (samplers, losses, the ELBO estimator, calibration) call [`denoise`] and never look at the model class.
A model declares how its raw logits are aligned with one class attribute, ``predicts_next_token``: ``True`` for
Dream-style models whose hidden state *i − 1* predicts token *i* (their logits are shifted right by one here),
``False`` (the default) for LLaDA-style models.
"""

from __future__ import annotations

import torch
from torch import nn


def shift_logits_to_tokens(logits: torch.Tensor) -> torch.Tensor:
    """Re-align next-token logits so that position *i* holds the prediction for token *i*.

    Position 0 has no predecessor and keeps its own logits (Dream does the same); it is always a prompt or BOS
    position in practice.
    """
    return torch.cat([logits[:, :1], logits[:, :-1]], dim=1)


def _unwrap(model: nn.Module) -> nn.Module:
    """The module whose class carries ``predicts_next_token``: looks through DDP and PEFT wrappers."""
    while True:
        if hasattr(type(model), "predicts_next_token"):
            return model
        inner = getattr(model, "module", None)  # DistributedDataParallel
        if inner is None and hasattr(model, "get_base_model"):  # peft.PeftModel
            inner = model.get_base_model()
        if inner is None:
            return model
        model = inner


def predicts_next_token(model: nn.Module) -> bool:
    """Whether ``model``'s raw logits at position *i* predict token *i + 1* (Dream) rather than token *i*."""
    return bool(getattr(type(_unwrap(model)), "predicts_next_token", False))


def get_mask_token_id(model: nn.Module) -> int:
    """The mask id the model denoises: a ``mask_token_id`` attribute of the model (image transformers) or of its
    config (language models); raises ``ValueError`` when it has none."""
    inner = _unwrap(model)
    mask_token_id = getattr(inner, "mask_token_id", None)
    if mask_token_id is None:
        mask_token_id = getattr(getattr(inner, "config", None), "mask_token_id", None)
    if mask_token_id is None:
        raise ValueError(f"{type(model).__name__} has no `config.mask_token_id`: a masked diffusion model needs one.")
    return int(mask_token_id)


def denoise(model: nn.Module, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None,
            **model_kwargs) -> torch.Tensor:
    """Run ``model`` as a denoiser: logits of shape (batch, length, vocab) where position *i* predicts token *i*.

    ``model`` may be wrapped (DDP, PEFT); ``model_kwargs`` (e.g. ``position_ids``) are passed through.
    """
    output = model(input_ids=input_ids, attention_mask=attention_mask, **model_kwargs)
    logits = output.logits if hasattr(output, "logits") else output[0]
    if predicts_next_token(model):
        logits = shift_logits_to_tokens(logits)
    return logits


def guided_denoise(model: nn.Module, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None,
                   prompt_index: torch.BoolTensor, cfg_scale: float, mask_token_id: int,
                   **model_kwargs) -> torch.Tensor:
    """Denoiser logits with LLaDA's unsupervised classifier-free guidance (Nie et al., 2025, Appendix B.3):
    ``un + (cfg_scale + 1)·(cond − un)``, where ``un`` are the logits with every ``prompt_index`` position masked.
    ``cfg_scale = 0`` is a plain [`denoise`] call; otherwise one call on the doubled batch. ``model_kwargs`` go
    to the model (e.g. a decoding cache)."""
    if cfg_scale <= 0:
        return denoise(model, input_ids, attention_mask, **model_kwargs)
    unconditional = input_ids.masked_fill(prompt_index, mask_token_id)
    both_mask = None if attention_mask is None else torch.cat([attention_mask, attention_mask])
    cond, uncond = denoise(model, torch.cat([input_ids, unconditional]), both_mask, **model_kwargs).chunk(2, dim=0)
    return uncond + (cfg_scale + 1.0) * (cond - uncond)


__all__ = ["denoise", "guided_denoise", "get_mask_token_id", "predicts_next_token", "shift_logits_to_tokens"]
