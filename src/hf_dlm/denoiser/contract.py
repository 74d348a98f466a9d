"""The denoiser contract: every masked model, seen by every algorithm, maps token ids in which some positions hold
the mask id to logits of shape (batch, length, vocabulary) where **position i predicts token i**.

Algorithms (samplers, losses, the ELBO estimator, calibration, distillation) call [`denoise`] and never look at the
model class. The one adapter here handles the two layouts models come in:

- language models over a 1-D sequence: LLaDA-style models (arXiv:2502.09992) return aligned logits; Dream-style
  models (arXiv:2508.15487), which declare ``predicts_next_token = True``, return logits whose position *i − 1*
  predicts token *i* and are shifted right by one here;
- image transformers over a token grid (MaskGIT, arXiv:2202.04200; aMUSEd's ``UVit2DModel``, arXiv:2401.01808) are
  called with a (batch, height, width) grid and return (batch, codebook, height, width); here they take flat or grid
  ids and return the contract's (batch, height·width, codebook).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from .kind import grid_shape, is_image_denoiser, predicts_next_token


def shift_logits_to_tokens(logits: torch.Tensor) -> torch.Tensor:
    """Re-align next-token logits so that position *i* holds the prediction for token *i*.

    Position 0 has no predecessor and keeps its own logits (Dream does the same); it is always a prompt or BOS
    position in practice.
    """
    return torch.cat([logits[:, :1], logits[:, :-1]], dim=1)


def _output_logits(output: object, name: str) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    value = getattr(output, name, None)
    return value if value is not None else output[0]


def _denoise_grid(model: nn.Module, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None,
                  forward: Callable[..., Any] | None = None, **model_kwargs) -> torch.Tensor:
    if attention_mask is not None and not bool(attention_mask.all()):
        raise ValueError("an image denoiser has no padding: `attention_mask` must be None or all ones.")
    batch = input_ids.shape[0]
    grid = input_ids if input_ids.ndim == 3 else input_ids.reshape(batch, *grid_shape(model, input_ids.shape[1]))
    logits = _output_logits((forward or model)(grid, **model_kwargs), "sample")  # (batch, codebook, height, width)
    return logits.flatten(2).transpose(1, 2).contiguous()


def denoise(model: nn.Module, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None, *,
            forward: Callable[..., Any] | None = None, **model_kwargs) -> torch.Tensor:
    """Run ``model`` as a denoiser: logits of shape (batch, length, vocab) where position *i* predicts token *i*.

    ``model`` may be wrapped (DDP, PEFT); ``model_kwargs`` (e.g. ``position_ids``, or an image model's
    ``class_labels`` / ``pooled_text_emb`` / ``encoder_hidden_states`` / ``mask_ratio``) are passed through. Image
    ids may be flat (batch, height·width) or a grid (batch, height, width); their ``attention_mask`` must be None or
    all ones. To call a denoiser under conditions, with guidance, use [`conditional_denoise`]. ``forward`` runs the
    model in its place (e.g. the compiled call of ``PreTrainedModel.get_compiled_call``); ``model`` still says how
    to read the output.
    """
    if is_image_denoiser(model):
        return _denoise_grid(model, input_ids, attention_mask, forward=forward, **model_kwargs)
    output = (forward or model)(input_ids=input_ids, attention_mask=attention_mask, **model_kwargs)
    logits = _output_logits(output, "logits")
    if predicts_next_token(model):
        logits = shift_logits_to_tokens(logits)
    return logits


def guided_denoise(model: nn.Module, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None,
                   prompt_index: torch.BoolTensor, cfg_scale: float, mask_token_id: int,
                   **model_kwargs) -> torch.Tensor:
    """Denoiser logits with LLaDA's unsupervised classifier-free guidance (arXiv:2502.09992, Appendix B.3):
    ``un + (cfg_scale + 1)·(cond − un)``, where ``un`` are the logits with every ``prompt_index`` position masked.
    ``cfg_scale = 0`` is a plain [`denoise`] call; otherwise one call on the doubled batch (conditional rows first).
    ``model_kwargs`` go to the model (e.g. a decoding cache). This is LLaDA's spelling, kept for its samplers; under
    [`DenoiserConditions`] the same guidance is [`conditional_denoise`] with ``guidance_scale = cfg_scale + 1``."""
    if cfg_scale <= 0:
        return denoise(model, input_ids, attention_mask, **model_kwargs)
    unconditional = input_ids.masked_fill(prompt_index, mask_token_id)
    both_mask = None if attention_mask is None else torch.cat([attention_mask, attention_mask])
    cond, uncond = denoise(model, torch.cat([input_ids, unconditional]), both_mask, **model_kwargs).chunk(2, dim=0)
    return uncond + (cfg_scale + 1.0) * (cond - uncond)


__all__ = ["denoise", "guided_denoise", "shift_logits_to_tokens"]
