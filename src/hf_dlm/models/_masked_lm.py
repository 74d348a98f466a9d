"""What our text denoisers share to behave as Hugging Face masked LMs: the ``labels`` loss of ``forward`` and the
checks of ``resize_token_embeddings``.

``labels`` follows ``AutoModelForMaskedLM``: the mean cross-entropy over the positions whose label is not -100, on
logits aligned so that position *i* predicts token *i*. A masked diffusion denoiser is only ever scored on positions
it cannot see (Nie et al., 2025, eq. 3: the loss sums over masked tokens only), so a batch that labels a visible
token is refused: a model trained to predict tokens it is given learns to copy its input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def check_labels_are_masked(labels: torch.LongTensor, input_ids: torch.LongTensor | None, mask_token_id: int) -> None:
    """Raise ``ValueError`` unless every labelled position (label != -100) holds ``mask_token_id`` in ``input_ids``.

    The message counts the unmasked labelled positions and names what to train with instead; it is what a plain
    ``Trainer`` run with a causal-LM collator (``DataCollatorForLanguageModeling(mlm=False)``: labels = a copy of
    ``input_ids``) stops on.
    """
    if input_ids is None:
        raise ValueError("`labels` needs `input_ids`: the loss is taken only where `input_ids` holds the mask token, "
                         "which `inputs_embeds` does not show.")
    if labels.shape != input_ids.shape:
        raise ValueError(f"`labels` must have the shape of `input_ids` {tuple(input_ids.shape)}, "
                         f"got {tuple(labels.shape)}.")
    labelled = labels != IGNORE_INDEX
    unmasked = int((labelled & (input_ids != mask_token_id)).sum())
    if unmasked:
        raise ValueError(
            f"`labels` marks {unmasked} of {int(labelled.sum())} labelled positions whose `input_ids` are not the "
            f"mask token (id {mask_token_id}). A masked diffusion denoiser is scored only on masked positions: put "
            f"the mask id at every labelled position and -100 everywhere else. Labels that copy `input_ids` (a "
            f"causal-LM collator such as `DataCollatorForLanguageModeling(mlm=False)`) would train it to copy its "
            f"input. To train with the masked-diffusion objective use `hf_dlm.training.MaskedDiffusionTrainer` "
            f"(it masks each batch itself; plain `input_ids` batches for pre-training, "
            f"`hf_dlm.training.MaskedDiffusionSFTCollator` for SFT) instead of a plain `Trainer`."
        )


def masked_lm_loss(logits: torch.Tensor, labels: torch.LongTensor, input_ids: torch.LongTensor | None,
                   mask_token_id: int, num_items_in_batch: int | torch.Tensor | None = None) -> torch.Tensor:
    """The ``AutoModelForMaskedLM`` loss of a denoiser: cross-entropy (in float32) over positions whose label is not
    -100, averaged over them, or summed and divided by ``num_items_in_batch`` when the ``Trainer`` passes it
    (gradient accumulation), as transformers' ``ForMaskedLMLoss``.

    Args:
        logits: (batch, length, vocab), aligned: position *i* predicts token *i* (shift Dream's raw logits first,
            with ``hf_dlm.denoiser.shift_logits_to_tokens``).
        labels: (batch, length) target ids, -100 where not scored.
        input_ids: the model's input; every labelled position must hold ``mask_token_id`` (see
            [`check_labels_are_masked`]).
        mask_token_id: the mask id the model denoises.
        num_items_in_batch: number of labelled positions over the accumulated batches, or ``None`` for the mean.
    """
    check_labels_are_masked(labels, input_ids, mask_token_id)
    labels = labels.to(logits.device)
    flat_logits = logits.float().reshape(-1, logits.shape[-1])
    if num_items_in_batch is None:
        return F.cross_entropy(flat_logits, labels.reshape(-1), ignore_index=IGNORE_INDEX)
    total = F.cross_entropy(flat_logits, labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum")
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def kept_positions(logits_to_keep: int | torch.Tensor, length: int, device: torch.device) -> torch.LongTensor | None:
    """The sequence positions whose logits ``forward(..., logits_to_keep=)`` returns, as transformers' causal LMs read
    the argument: ``0`` keeps every position (``None`` is returned: no selection), a positive int *N* the last *N*, a
    1-D integer tensor the positions it lists. The head is then applied to those hidden states only, so the logits
    are the corresponding rows of the full ones (up to the GEMM's rounding: the BLAS picks its kernel by the number
    of rows), at a fraction of the head's cost (a masked diffusion step
    reads the logits of one block, not of the whole canvas)."""
    if torch.is_tensor(logits_to_keep):
        if logits_to_keep.ndim != 1 or logits_to_keep.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"`logits_to_keep` as a tensor must be 1-D integer sequence positions, got shape "
                             f"{tuple(logits_to_keep.shape)} and dtype {logits_to_keep.dtype}.")
        if len(logits_to_keep) and not torch.compiler.is_compiling():  # (a host read: skipped inside a graph)
            low, high = int(logits_to_keep.min()), int(logits_to_keep.max())
            if low < 0 or high >= length:
                raise ValueError(f"`logits_to_keep` positions must lie in [0, {length}) for a sequence of length "
                                 f"{length}, got {low}…{high}.")
        return logits_to_keep.to(device=device, dtype=torch.long)
    if not isinstance(logits_to_keep, int) or isinstance(logits_to_keep, bool) or logits_to_keep < 0:
        raise ValueError(f"`logits_to_keep` must be a non-negative int (0 keeps every position, N the last N) or a "
                         f"1-D tensor of positions, got {logits_to_keep!r}.")
    if logits_to_keep == 0 or logits_to_keep >= length:
        return None
    return torch.arange(length - logits_to_keep, length, device=device)


def check_logits_to_keep_without_labels(logits_to_keep: int | torch.Tensor, labels: torch.Tensor | None) -> None:
    """``labels`` scores every labelled position, so it needs the logits of all of them: refuse a selection."""
    if labels is not None and (torch.is_tensor(logits_to_keep) or logits_to_keep != 0):
        raise ValueError("`labels` needs the logits of every position: call forward with `logits_to_keep=0` "
                         "(the default) when passing `labels`.")


def resized_rows(current_rows: int, new_num_tokens: int | None, pad_to_multiple_of: int | None) -> int:
    """The number of embedding rows ``PreTrainedModel.resize_token_embeddings(new_num_tokens, pad_to_multiple_of)``
    leaves (transformers rounds ``new_num_tokens``, or the current rows, up to a multiple of ``pad_to_multiple_of``)."""
    rows = current_rows if new_num_tokens is None else new_num_tokens
    if pad_to_multiple_of is not None:
        if not isinstance(pad_to_multiple_of, int) or isinstance(pad_to_multiple_of, bool) or pad_to_multiple_of < 1:
            raise ValueError(f"`pad_to_multiple_of` must be a positive integer, got {pad_to_multiple_of!r}.")
        rows = -(-rows // pad_to_multiple_of) * pad_to_multiple_of
    return rows


def check_resize_keeps_token_ids(new_num_tokens: int | None, rows: int, token_ids: dict[str, int | None]) -> None:
    """Refuse a resize that would leave one of ``token_ids`` (a field name → id map: the mask id, and any id the
    architecture indexes its embedding with) outside the ``rows`` of the resized table: the model could no longer use
    it, and its config would not load back. Raises ``ValueError`` naming ``new_num_tokens`` and the field."""
    if new_num_tokens is not None and (not isinstance(new_num_tokens, int) or isinstance(new_num_tokens, bool)
                                       or new_num_tokens < 1):
        raise ValueError(f"`new_num_tokens` must be a positive integer or None, got {new_num_tokens!r}.")
    for name, token_id in token_ids.items():
        if token_id is not None and token_id >= rows:
            raise ValueError(f"`new_num_tokens`={new_num_tokens} leaves {rows} embedding rows, which drops "
                             f"`{name}` ({token_id}); keep at least {token_id + 1} rows.")


__all__ = ["IGNORE_INDEX", "check_labels_are_masked", "check_logits_to_keep_without_labels",
           "check_resize_keeps_token_ids", "kept_positions", "masked_lm_loss", "resized_rows"]
