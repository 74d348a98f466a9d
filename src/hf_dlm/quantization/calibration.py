"""Calibration data for Quant-dLLM: token sequences from text or ids, and Masked Calibration Simulation
(Algorithm 1 of seed 001)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch

CalibrationData = str | os.PathLike | Sequence[str] | Sequence[Sequence[int]] | torch.Tensor


def calibration_sequences(data: CalibrationData, num_sequences: int, seq_len: int, tokenizer: Any = None,
                          seed: int = 0) -> torch.LongTensor:
    """Turn calibration data into a (N, ``seq_len``) tensor of token ids, N ≤ ``num_sequences``.

    ``data`` may be a (N, L) tensor (rows are taken as they are, L ≥ ``seq_len`` cut to ``seq_len``), a list of
    token-id lists, a list of texts, or the path of a UTF-8 text file (one document per line); texts need
    ``tokenizer``. Lists are concatenated into one stream and cut into non-overlapping windows; when there are
    more windows than ``num_sequences``, a seeded random subset is used (as GPTQ samples its calibration set)."""
    if isinstance(data, torch.Tensor):
        if data.dim() != 2 or data.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"`calibration_data` as a tensor must be 2-D token ids, got shape {tuple(data.shape)} "
                             f"and dtype {data.dtype}.")
        if data.shape[1] < seq_len:
            raise ValueError(f"`calibration_data` rows have {data.shape[1]} tokens, fewer than "
                             f"`calibration_seq_len`={seq_len}.")
        return data[:num_sequences, :seq_len].long()
    if isinstance(data, (str, os.PathLike)):
        if not os.path.isfile(data):
            raise ValueError(f"`calibration_data` path {str(data)!r} is not a file.")
        with open(data, encoding="utf-8") as handle:
            data = [line.strip() for line in handle if line.strip()]
    if not isinstance(data, Sequence) or len(data) == 0:
        raise ValueError("`calibration_data` must be a non-empty list of texts or token-id lists, a 2-D tensor or "
                         f"a text file path, got {type(data).__name__}.")
    if isinstance(data[0], str):
        if tokenizer is None:
            raise ValueError("`calibration_data` holds texts: pass a `tokenizer` (or set `QuantDLLMConfig.tokenizer`).")
        data = tokenizer(list(data), add_special_tokens=False)["input_ids"]
    stream = torch.tensor([int(t) for ids in data for t in ids], dtype=torch.long)
    windows = stream.numel() // seq_len
    if windows == 0:
        raise ValueError(f"`calibration_data` has {stream.numel()} tokens, fewer than one sequence of "
                         f"`calibration_seq_len`={seq_len}.")
    sequences = stream[: windows * seq_len].view(windows, seq_len)
    if windows > num_sequences:
        generator = torch.Generator().manual_seed(seed)
        sequences = sequences[torch.randperm(windows, generator=generator)[:num_sequences].sort().values]
    return sequences


def masked_calibration_simulation(sequences: torch.LongTensor, timesteps: int, prefix_ratio: float,
                                  visibility: Callable[[int], float], mask_token_id: int,
                                  generator: torch.Generator | None = None) -> torch.LongTensor:
    """Algorithm 1 (MCS): for every sequence x of length L and t = 1 … T, keep the prefix 𝒫 = {1 … ⌊γL⌋}
    visible, keep every other token with probability α(t) (Bernoulli) and replace the rest by [MASK].

    Returns (N·T, L): the T masked copies of sequence i are rows i·T … i·T + T − 1."""
    if sequences.dim() != 2:
        raise ValueError(f"`sequences` must be (N, L) token ids, got shape {tuple(sequences.shape)}.")
    count, length = sequences.shape
    prefix = math.floor(prefix_ratio * length)
    if prefix >= length:
        raise ValueError(f"calibration sequences of {length} tokens are not longer than the visible prefix "
                         f"⌊γ·L⌋ = {prefix} (prefix_ratio={prefix_ratio}); nothing would be masked.")
    copies = []
    for t in range(1, timesteps + 1):
        alpha = float(visibility(t))
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"visibility schedule α({t}) = {alpha} is outside [0, 1].")
        keep = torch.rand(count, length, generator=generator) < alpha
        keep[:, :prefix] = True
        copies.append(torch.where(keep, sequences, torch.full_like(sequences, mask_token_id)))
    return torch.stack(copies, dim=1).reshape(count * timesteps, length)


__all__ = ["CalibrationData", "calibration_sequences", "masked_calibration_simulation"]
