"""Checks of the tensors a caller hands to ``generate()``: each bad input gets a typed error naming the argument,
the value and what is allowed (the settings themselves are checked by the generation config)."""

from __future__ import annotations

from typing import Any

import torch


def check_prompt(input_ids: Any, attention_mask: Any, vocab_rows: int | None, mask_token_id: int,
                 infill: bool) -> None:
    """``input_ids``: an integer tensor (batch ≥ 1, length ≥ 0; empty = unconditional) of ids in ``[0, vocab_rows)``, holding the mask id
    only with ``infill=True``; ``attention_mask``: 0/1 of the same shape, left padding only, ≥ 1 token per row."""
    if not isinstance(input_ids, torch.Tensor):
        raise TypeError(f"`input_ids` must be a torch.Tensor of token ids, got {type(input_ids).__name__}.")
    if input_ids.dim() != 2 or input_ids.shape[0] == 0:
        raise ValueError(f"`input_ids` must have shape (batch ≥ 1, length ≥ 0), got {tuple(input_ids.shape)}.")
    if input_ids.numel() == 0:  # unconditional generation from an empty prompt
        return
    if input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool or input_ids.is_complex():
        raise TypeError(f"`input_ids` must hold integer token ids, got dtype {input_ids.dtype}.")
    low, high = int(input_ids.min()), int(input_ids.max())
    if low < 0 or (vocab_rows is not None and high >= vocab_rows):
        raise ValueError(f"`input_ids` must lie in [0, {vocab_rows}) (the model's embedding rows), got values in "
                         f"[{low}, {high}].")
    if not infill and bool((input_ids == mask_token_id).any()):
        where = (input_ids == mask_token_id).nonzero().tolist()[:5]
        raise ValueError(f"`input_ids` holds the mask id {mask_token_id} at (row, position) {where}: a prompt must "
                         "not contain masks. Pass `infill=True` to have those positions filled in.")
    if attention_mask is None:
        return
    if not isinstance(attention_mask, torch.Tensor):
        raise TypeError(f"`attention_mask` must be a torch.Tensor, got {type(attention_mask).__name__}.")
    if tuple(attention_mask.shape) != tuple(input_ids.shape):
        raise ValueError(f"`attention_mask` must have the shape of `input_ids` {tuple(input_ids.shape)}, got "
                         f"{tuple(attention_mask.shape)}.")
    values = attention_mask.long()
    if bool(((values != 0) & (values != 1)).any()) or (attention_mask.dtype.is_floating_point
                                                        and bool((attention_mask != values).any())):
        raise ValueError("`attention_mask` must hold only 0 (padding) and 1 (token).")
    if bool((values.sum(dim=1) == 0).any()):
        raise ValueError("`attention_mask` has a row that is all padding; every prompt needs at least one token.")
    if bool((values[:, 1:] < values[:, :-1]).any()):
        raise ValueError("`attention_mask` shows right (or inner) padding; masked diffusion appends the answer after "
                         "the prompt, so batches must be left-padded (tokenizer.padding_side = 'left').")


def check_generator(generator: Any) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"`generator` must be a torch.Generator or None, got {type(generator).__name__} (one "
                        "generator drives the whole batch).")


__all__ = ["check_generator", "check_prompt"]
