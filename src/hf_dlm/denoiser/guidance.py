"""Calling a denoiser under conditions, with optional classifier-free guidance (Ho & Salimans, arXiv:2207.12598):
the one answer to "how do I call this denoiser under these conditions", for language and image models alike."""

from __future__ import annotations

import torch
from torch import nn

from .conditions import DenoiserConditions, mask_ratio_input
from .contract import denoise
from .kind import get_mask_token_id


def _call(model: nn.Module, input_ids: torch.LongTensor, conditions: DenoiserConditions,
          attention_mask: torch.Tensor | None) -> torch.Tensor:
    kwargs = conditions.model_kwargs()
    kwargs.update(mask_ratio_input(model, input_ids, conditions))
    return denoise(model, input_ids, attention_mask, **kwargs)


def unconditional_inputs(model: nn.Module, input_ids: torch.LongTensor,
                         conditions: DenoiserConditions) -> tuple[torch.LongTensor, DenoiserConditions]:
    """The input of the unconditional pass: the null condition of an image model on the same ids, or for a
    language model the same conditions on ids whose prompt is masked (LLaDA's unsupervised CFG,
    arXiv:2502.09992, Appendix B.3)."""
    if conditions.null is not None:
        return input_ids, conditions.null
    if conditions.prompt_length == 0:
        raise ValueError("classifier-free guidance needs a null condition (image models) or a prompt to mask "
                         "(language models); these conditions have neither.")
    prompt = torch.zeros_like(input_ids, dtype=torch.bool)
    prompt[:, : conditions.prompt_length] = True
    return input_ids.masked_fill(prompt, get_mask_token_id(model)), conditions


def conditional_denoise(model: nn.Module, input_ids: torch.LongTensor, conditions: DenoiserConditions,
                        guidance_scale: float = 1.0, batched: bool = True) -> torch.Tensor:
    """Logits (batch, length, vocab) of ``model`` on ``input_ids`` under ``conditions`` (position *i* predicts token
    *i*), with classifier-free guidance ``uncond + guidance_scale·(cond − uncond)`` when ``guidance_scale ≠ 1``
    (arXiv:2207.12598, eq. 6 with w = guidance_scale − 1).

    The unconditional pass is that of [`unconditional_inputs`]; for a language model this is LLaDA's guidance
    ``un + (cfg_scale + 1)·(cond − un)`` with ``cfg_scale = guidance_scale − 1``. ``batched=True`` runs both passes
    as one call on the doubled batch, unconditional rows first (diffusers' order); ``batched=False`` runs two calls,
    conditional first, which holds half the activations. Image ids may be flat or a grid (see [`denoise`]); the
    mask-ratio input of models that read it comes from ``conditions`` or the ids (see [`mask_ratio_input`]).
    """
    attention_mask = conditions.attention_mask
    if guidance_scale == 1.0:
        return _call(model, input_ids, conditions, attention_mask)
    null_ids, null = unconditional_inputs(model, input_ids, conditions)
    if batched:
        both = DenoiserConditions(2 * conditions.batch_size, conditions.generated_length)
        for name, value in conditions.model_kwargs().items():
            null_value = null.model_kwargs().get(name, value)
            setattr(both, name, torch.cat([null_value, value]))
        both_mask = None if attention_mask is None else torch.cat([attention_mask, attention_mask])
        uncond, cond = _call(model, torch.cat([null_ids, input_ids]), both, both_mask).chunk(2, dim=0)
    else:
        cond = _call(model, input_ids, conditions, attention_mask)
        uncond = _call(model, null_ids, null, attention_mask)
    return uncond + guidance_scale * (cond - uncond)


__all__ = ["conditional_denoise", "unconditional_inputs"]
