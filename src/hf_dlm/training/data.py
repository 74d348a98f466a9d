"""Data plumbing for masked-diffusion training: a dataset of token-id rows and LLaDA's SFT collator, both checked
at the boundary (nothing accepted and ignored, no batch that would silently train nothing)."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from .._training_guards import check_int
from .mdm_loss import IGNORE_INDEX


class TokenIdsDataset(torch.utils.data.Dataset):
    """Rows of a (num_sequences, length) id tensor as ``{"input_ids": row}`` items, for pre-training batches.

    Refused by name: a non-tensor or a float / bool tensor (``TypeError``), a shape other than 2-D, no rows, rows of
    length 0, and negative ids (``ValueError``). Ids beyond the model's vocabulary are refused by the Trainer, which
    knows the model.
    """

    def __init__(self, input_ids: torch.LongTensor) -> None:
        if not isinstance(input_ids, torch.Tensor):
            raise TypeError(f"`input_ids` must be a tensor of shape (num_sequences, length), got "
                            f"{type(input_ids).__name__}.")
        if input_ids.dtype.is_floating_point or input_ids.dtype.is_complex or input_ids.dtype == torch.bool:
            raise TypeError(f"`input_ids` must hold integer token ids, got dtype {input_ids.dtype}.")
        if input_ids.dim() != 2:
            raise ValueError(f"`input_ids` must have shape (num_sequences, length), got {tuple(input_ids.shape)}.")
        if input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
            raise ValueError(f"`input_ids` is empty (shape {tuple(input_ids.shape)}): there is nothing to train on.")
        if bool((input_ids < 0).any()):
            raise ValueError(f"`input_ids` holds negative token id {int(input_ids.min())}.")
        self.input_ids = input_ids.long()

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids[index]}


def _id_list(name: str, value: Any, row: int, vocab_size: int | None) -> list[int]:
    """``value`` (a list / tuple of ints or a 1-D integer tensor / array) as a list of ids, checked."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise TypeError(f"feature {row}: `{name}` must be a sequence of token ids, got {type(value).__name__}.")
    if isinstance(value, torch.Tensor):
        if value.dtype.is_floating_point or value.dtype == torch.bool or value.dim() != 1:
            raise TypeError(f"feature {row}: `{name}` must be a 1-D integer tensor, got dtype {value.dtype}, "
                            f"shape {tuple(value.shape)}.")
        ids = value.tolist()
    else:
        ids = list(value)
        for item in ids:
            if isinstance(item, bool) or not isinstance(item, numbers.Integral):
                raise TypeError(f"feature {row}: `{name}` must hold integer token ids, got {item!r} "
                                f"({type(item).__name__}).")
        ids = [int(item) for item in ids]
    for item in ids:
        if item < 0 or (vocab_size is not None and item >= vocab_size):
            allowed = f"[0, {vocab_size})" if vocab_size is not None else ">= 0"
            raise ValueError(f"feature {row}: `{name}` holds token id {item}, outside the vocabulary {allowed}.")
    return ids


def _label_list(value: Any, row: int, ids: list[int], described: str) -> list[int]:
    """``labels`` of one feature: aligned with ``ids``, each −100 or the token at its position."""
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise TypeError(f"feature {row}: `labels` must be a sequence of ints, got {type(value).__name__}.")
    labels = list(value)
    if len(labels) != len(ids):
        raise ValueError(f"feature {row}: `labels` must align with {described} ({len(ids)} positions), "
                         f"got {len(labels)} labels.")
    for position, (label, token) in enumerate(zip(labels, ids)):
        if isinstance(label, bool) or not isinstance(label, numbers.Integral):
            raise TypeError(f"feature {row}: `labels` must hold ints, got {label!r} ({type(label).__name__}).")
        if label != IGNORE_INDEX and label != token:
            raise ValueError(f"feature {row}: `labels`[{position}] = {label} is neither {IGNORE_INDEX} nor the token "
                             f"{token}: a masked diffusion model's target is the clean token itself; label a "
                             f"position with {IGNORE_INDEX} to exclude it from training.")
    return [int(label) for label in labels]


@dataclass
class MaskedDiffusionSFTCollator:
    """Builds SFT batches the LLaDA way: ``prompt + answer + EOS``, every row padded to the longest with further
    EOS tokens (which are part of the answer and trained on, so the model learns to end), plus ``prompt_lengths``.

    Features are dicts with ``prompt_ids`` and ``answer_ids`` (lists of ints; the collator appends one EOS), or with
    ``input_ids`` and ``prompt_length`` (used as given). Either may carry ``labels`` aligned with the row it
    describes (``prompt_ids + answer_ids``, or ``input_ids``): each −100 or the token at its position.

    Which positions are trained (masked and scored by [`MaskedDiffusionTrainer`]): those at or after the prompt
    **and** not labelled −100 — the prompt and the −100 positions are both conditioning: never masked, never
    scored, and not counted in the answer length that normalises eq. 5. The EOS the collator appends and the EOS
    padding carry no user label and are trained (LLaDA). The batch holds ``input_ids`` (batch, length),
    ``prompt_lengths`` (batch,) and ``labels`` (batch, length): the token where trained, −100 elsewhere.

    Refused by name (``TypeError`` for a wrong type, ``ValueError`` otherwise): no features; a feature that is not a
    dict or mixes / lacks the two formats; non-integer or negative ids, or ids ≥ ``len(tokenizer)`` when a
    tokenizer is given; a negative ``prompt_length`` or one beyond its ``input_ids``; labels that do not align; a
    row left with no trained position — its prompt fills the row after ``max_length`` truncation, or every answer
    position is labelled −100 — which would train nothing (loss exactly 0).

    Args:
        tokenizer: supplies ``eos_token_id`` when it is not given, and the vocabulary size ids are checked against.
        eos_token_id: the EOS appended after the answer and used for padding.
        max_length: rows are cut to this many tokens (the prompt must still leave a trained position).
    """

    tokenizer: PreTrainedTokenizerBase | None = None
    eos_token_id: int | None = None
    max_length: int | None = None

    def __post_init__(self) -> None:
        if self.eos_token_id is None and self.tokenizer is not None:
            self.eos_token_id = self.tokenizer.eos_token_id
        if self.eos_token_id is None:
            raise ValueError("MaskedDiffusionSFTCollator needs `eos_token_id` (or a tokenizer that has one).")
        self.vocab_size = len(self.tokenizer) if self.tokenizer is not None else None
        self.eos_token_id = check_int("eos_token_id", self.eos_token_id, low=0,
                                      high=None if self.vocab_size is None else self.vocab_size - 1)
        self.max_length = check_int("max_length", self.max_length, low=1, allow_none=True)

    def _row(self, feature: Any, index: int) -> tuple[list[int], int, list[int]]:
        """(token row, prompt length, labels) of one feature, checked."""
        if not isinstance(feature, Mapping):
            raise TypeError(f"feature {index} must be a dict, got {type(feature).__name__}.")
        pair = "prompt_ids" in feature or "answer_ids" in feature
        single = "input_ids" in feature or "prompt_length" in feature
        if pair == single:
            raise ValueError(f"feature {index} must hold `prompt_ids` and `answer_ids`, or `input_ids` and "
                             f"`prompt_length` (not both); got keys {sorted(feature)}.")
        if pair:
            for key in ("prompt_ids", "answer_ids"):
                if key not in feature:
                    raise ValueError(f"feature {index} has no `{key}` (keys {sorted(feature)}).")
            prompt = _id_list("prompt_ids", feature["prompt_ids"], index, self.vocab_size)
            answer = _id_list("answer_ids", feature["answer_ids"], index, self.vocab_size)
            row, prompt_length = prompt + answer, len(prompt)
            labels = (_label_list(feature["labels"], index, row, "`prompt_ids + answer_ids`")
                      if feature.get("labels") is not None else list(row))
            row, labels = row + [self.eos_token_id], labels + [self.eos_token_id]
        else:
            for key in ("input_ids", "prompt_length"):
                if key not in feature:
                    raise ValueError(f"feature {index} has no `{key}` (keys {sorted(feature)}): the SFT collator "
                                     "needs the prompt length of every `input_ids` row.")
            row = _id_list("input_ids", feature["input_ids"], index, self.vocab_size)
            try:
                prompt_length = check_int("prompt_length", feature["prompt_length"], low=0)
            except (TypeError, ValueError) as error:
                raise type(error)(f"feature {index}: {error}") from None
            if prompt_length > len(row):
                raise ValueError(f"feature {index}: `prompt_length` = {prompt_length} exceeds its `input_ids` "
                                 f"({len(row)} tokens).")
            labels = (_label_list(feature["labels"], index, row, "`input_ids`")
                      if feature.get("labels") is not None else list(row))
        return row, prompt_length, labels

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if isinstance(features, Mapping) or not hasattr(features, "__len__"):
            raise TypeError(f"`features` must be a list of dicts, got {type(features).__name__}.")
        if len(features) == 0:
            raise ValueError("`features` is empty: a batch needs at least one feature.")
        rows, prompt_lengths, label_rows = [], [], []
        for index, feature in enumerate(features):
            row, prompt_length, labels = self._row(feature, index)
            cut = ""
            if self.max_length is not None and len(row) > self.max_length:
                row, labels = row[: self.max_length], labels[: self.max_length]
                cut = f" after `max_length`={self.max_length} truncation"
            if prompt_length >= len(row):
                raise ValueError(f"feature {index}: `prompt_length` = {prompt_length} leaves no answer token in its "
                                 f"row of {len(row)} tokens{cut}: the row would train nothing (loss exactly 0). "
                                 f"Shorten the prompt" + (" or raise `max_length`." if cut else "."))
            if all(label == IGNORE_INDEX for label in labels[prompt_length:]):
                raise ValueError(f"feature {index}: every answer position is labelled {IGNORE_INDEX} in `labels`: "
                                 f"the row would train nothing (loss exactly 0).")
            rows.append(row)
            prompt_lengths.append(prompt_length)
            label_rows.append(labels)
        length = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), length), self.eos_token_id, dtype=torch.long)
        labels = torch.full((len(rows), length), self.eos_token_id, dtype=torch.long)
        for i, (row, label_row) in enumerate(zip(rows, label_rows)):
            input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            labels[i, : len(row)] = torch.tensor(label_row, dtype=torch.long)
            labels[i, : prompt_lengths[i]] = IGNORE_INDEX
        return {"input_ids": input_ids, "prompt_lengths": torch.tensor(prompt_lengths, dtype=torch.long),
                "labels": labels}


__all__ = ["MaskedDiffusionSFTCollator", "TokenIdsDataset"]
