"""Data plumbing for masked-diffusion training: a dataset of token-id rows and LLaDA's SFT collator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase


class TokenIdsDataset(torch.utils.data.Dataset):
    """Rows of a (num_sequences, length) id tensor as ``{"input_ids": row}`` items, for pre-training batches."""

    def __init__(self, input_ids: torch.LongTensor) -> None:
        if input_ids.dim() != 2:
            raise ValueError(f"`input_ids` must have shape (num_sequences, length), got {tuple(input_ids.shape)}.")
        self.input_ids = input_ids

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids[index]}


@dataclass
class MaskedDiffusionSFTCollator:
    """Builds SFT batches the LLaDA way: ``prompt + answer + EOS``, every row padded to the longest with further
    EOS tokens (which are part of the answer and trained on, so the model learns to end), plus ``prompt_lengths``.

    Features are dicts with ``prompt_ids`` and ``answer_ids`` (lists of ints), or with ``input_ids`` and
    ``prompt_length``.
    """

    tokenizer: PreTrainedTokenizerBase | None = None
    eos_token_id: int | None = None
    max_length: int | None = None

    def __post_init__(self) -> None:
        if self.eos_token_id is None and self.tokenizer is not None:
            self.eos_token_id = self.tokenizer.eos_token_id
        if self.eos_token_id is None:
            raise ValueError("MaskedDiffusionSFTCollator needs `eos_token_id` (or a tokenizer that has one).")

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows, prompt_lengths = [], []
        for feature in features:
            if "prompt_ids" in feature:
                prompt = list(feature["prompt_ids"])
                row = prompt + list(feature["answer_ids"]) + [self.eos_token_id]
                prompt_lengths.append(len(prompt))
            else:
                row = list(feature["input_ids"])
                prompt_lengths.append(int(feature["prompt_length"]))
            rows.append(row)
        length = max(len(r) for r in rows)
        if self.max_length is not None:
            length = min(length, self.max_length)
        input_ids = torch.full((len(rows), length), self.eos_token_id, dtype=torch.long)
        for i, row in enumerate(rows):
            row = row[:length]
            input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return {"input_ids": input_ids, "prompt_lengths": torch.tensor(prompt_lengths, dtype=torch.long)}


__all__ = ["MaskedDiffusionSFTCollator", "TokenIdsDataset"]
