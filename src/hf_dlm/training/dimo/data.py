"""Condition datasets for Di[M]O (Algorithm 1, line 4: c ~ D). Di[M]O needs no data samples, only conditions:
prompts for a text teacher, class labels or tokenized captions for an image teacher."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..._training_guards import check_int

CONDITION_KEYS = ("input_ids", "class_labels", "text_input_ids")


class ConditionDataset(torch.utils.data.Dataset):
    """A list of conditions, each a dict with one of ``input_ids`` (a prompt, possibly just BOS),
    ``class_labels`` (an int) or ``text_input_ids`` (a tokenized caption of fixed length)."""

    def __init__(self, conditions: Sequence[dict[str, Any]]) -> None:
        if len(conditions) == 0:
            raise ValueError("`conditions` is empty: Di[M]O draws c ~ D from it (Algorithm 1, line 4).")
        for index, condition in enumerate(conditions):
            if not isinstance(condition, Mapping):
                raise TypeError(f"condition {index} must be a dict, got {type(condition).__name__}.")
        keys = {key for c in conditions for key in c}
        unknown = keys - set(CONDITION_KEYS)
        if unknown or len(keys) != 1:
            raise ValueError(f"every condition must hold exactly one of {CONDITION_KEYS}; got keys {sorted(keys)}.")
        checked = []
        for index, condition in enumerate(conditions):
            if len(condition) != 1:
                raise ValueError(f"condition {index} must hold exactly one of {CONDITION_KEYS}; got keys "
                                 f"{sorted(condition)}.")
            ((key, value),) = condition.items()
            if key == "class_labels":
                try:
                    value = check_int("class_labels", value, low=0)
                except (TypeError, ValueError) as error:
                    raise type(error)(f"condition {index}: {error}") from None
            else:
                ids = torch.as_tensor(value)
                if ids.numel() == 0 and ids.dim() == 1:
                    ids = ids.long()  # an empty prompt (`torch.as_tensor([])` is float)
                if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.dim() != 1:
                    raise TypeError(f"`{key}` of condition {index} must be a 1-D sequence of integer token ids, got "
                                    f"dtype {ids.dtype}, shape {tuple(ids.shape)}.")
                if ids.numel() and int(ids.min()) < 0:
                    raise ValueError(f"`{key}` of condition {index} holds negative token id {int(ids.min())}.")
            checked.append({key: value})
        self.conditions = checked

    @classmethod
    def from_prompts(cls, prompts: Sequence[Sequence[int]] | torch.Tensor) -> ConditionDataset:
        return cls([{"input_ids": torch.as_tensor(p, dtype=torch.long)} for p in prompts])

    @classmethod
    def unconditional(cls, bos_token_id: int, size: int = 1024) -> ConditionDataset:
        """``size`` copies of the one-token prompt [BOS]: unconditional text generation."""
        return cls([{"input_ids": torch.tensor([bos_token_id])} for _ in range(size)])

    @classmethod
    def from_labels(cls, labels: Sequence[int]) -> ConditionDataset:
        return cls([{"class_labels": label} for label in labels])

    @classmethod
    def from_captions(cls, caption_ids: torch.Tensor) -> ConditionDataset:
        return cls([{"text_input_ids": ids} for ids in torch.as_tensor(caption_ids, dtype=torch.long)])

    def __len__(self) -> int:
        return len(self.conditions)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.conditions[index]


class DiMOConditionCollator:
    """Batches conditions: prompts are left-padded with ``pad_token_id`` (with an ``attention_mask``, omitted when
    every prompt has the same length), labels and captions are stacked."""

    def __init__(self, pad_token_id: int | None = None) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if "input_ids" in features[0]:
            prompts = [torch.as_tensor(f["input_ids"], dtype=torch.long) for f in features]
            longest = max(len(p) for p in prompts)
            if all(len(p) == longest for p in prompts):
                return {"input_ids": torch.stack(prompts)}
            if self.pad_token_id is None:
                raise ValueError("prompts of different lengths need a `pad_token_id` to be left-padded.")
            ids = torch.full((len(prompts), longest), self.pad_token_id, dtype=torch.long)
            mask = torch.zeros(len(prompts), longest, dtype=torch.long)
            for row, prompt in enumerate(prompts):
                if len(prompt):
                    ids[row, -len(prompt):] = prompt
                    mask[row, -len(prompt):] = 1
            return {"input_ids": ids, "attention_mask": mask}
        if "class_labels" in features[0]:
            return {"class_labels": torch.tensor([int(f["class_labels"]) for f in features], dtype=torch.long)}
        return {"text_input_ids": torch.stack([torch.as_tensor(f["text_input_ids"]) for f in features])}


__all__ = ["CONDITION_KEYS", "ConditionDataset", "DiMOConditionCollator"]
