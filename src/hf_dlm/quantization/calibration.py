"""Calibration data for Quant-dLLM: token sequences from text or ids, and Masked Calibration Simulation
(Quant-dLLM, arXiv:2510.03274, Algorithm 1)."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch

CalibrationData = str | os.PathLike | Sequence[str] | Sequence[Sequence[int]] | torch.Tensor


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_token_ids(ids: torch.Tensor, vocab_size: int | None, name: str = "calibration_data") -> None:
    """Raise `ValueError` naming ``name`` when ``ids`` holds ids outside ``[0, vocab_size)`` (or negative ids)."""
    upper = f", {vocab_size})" if vocab_size is not None else ", ∞)"
    bad = (ids < 0) if vocab_size is None else ((ids < 0) | (ids >= vocab_size))
    if bad.any():
        values = ids[bad].unique()
        raise ValueError(f"`{name}` holds token ids outside the model's vocabulary [0{upper}: "
                         f"{values[:8].tolist()}{' …' if values.numel() > 8 else ''} ({int(bad.sum())} tokens); "
                         "was it tokenized with another tokenizer?")


def calibration_sequences(data: CalibrationData, num_sequences: int, seq_len: int, tokenizer: Any = None,
                          seed: int = 0, vocab_size: int | None = None) -> torch.LongTensor:
    """Turn calibration data into a (N, ``seq_len``) tensor of token ids, 1 ≤ N ≤ ``num_sequences``.

    ``data`` may be a (N, L) tensor (rows are taken as they are, L ≥ ``seq_len`` cut to ``seq_len``), a list of
    token-id lists, a list of texts, or the path of a UTF-8 text file (one document per line); texts need
    ``tokenizer``. Lists are concatenated into one stream and cut into non-overlapping windows; when there are
    more windows than ``num_sequences``, a seeded random subset is used (as GPTQ samples its calibration set).

    Refused with a `ValueError` naming ``calibration_data``: empty data, float tensors or ids (NaN included — ids
    are integers, never rounded), and, when ``vocab_size`` is given, ids outside ``[0, vocab_size)``."""
    for name, value in (("num_calibration_sequences", num_sequences), ("calibration_seq_len", seq_len)):
        if not _is_int(value) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    if isinstance(data, torch.Tensor):
        if data.dim() != 2 or data.dtype.is_floating_point or data.dtype.is_complex or data.dtype == torch.bool:
            nan = " (it holds NaN)" if data.dtype.is_floating_point and torch.isnan(data).any() else ""
            raise ValueError(f"`calibration_data` as a tensor must be 2-D integer token ids, got shape "
                             f"{tuple(data.shape)} and dtype {data.dtype}{nan}.")
        if data.shape[0] == 0:
            raise ValueError("`calibration_data` is an empty tensor (0 sequences).")
        if data.shape[1] < seq_len:
            raise ValueError(f"`calibration_data` rows have {data.shape[1]} tokens, fewer than "
                             f"`calibration_seq_len`={seq_len}.")
        sequences = data[:num_sequences, :seq_len].long()
        check_token_ids(sequences, vocab_size)
        return sequences
    if isinstance(data, (str, os.PathLike)):
        if not os.path.isfile(data):
            raise ValueError(f"`calibration_data` path {str(data)!r} is not a file.")
        with open(data, encoding="utf-8") as handle:
            data = [line.strip() for line in handle if line.strip()]
    if not isinstance(data, Sequence) or len(data) == 0:
        empty = " (empty)" if isinstance(data, Sequence) else ""
        raise ValueError("`calibration_data` must be a non-empty list of texts or token-id lists, a 2-D tensor or "
                         f"a text file path, got {type(data).__name__}{empty}.")
    if isinstance(data[0], str):
        if not all(isinstance(text, str) for text in data):
            raise ValueError("`calibration_data` mixes texts with other items; give texts or token-id lists.")
        if tokenizer is None:
            raise ValueError("`calibration_data` holds texts: pass a `tokenizer` (or set `QuantDLLMConfig.tokenizer`).")
        if not callable(tokenizer):
            raise ValueError(f"`tokenizer` must be a tokenizer object (callable), got {type(tokenizer).__name__}.")
        data = tokenizer(list(data), add_special_tokens=False)["input_ids"]
    tokens = []
    for row, ids in enumerate(data):
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
            raise ValueError(f"`calibration_data` item {row} must be a list of token ids, got {type(ids).__name__}.")
        bad = [t for t in ids if not _is_int(t)]
        if bad:
            raise ValueError(f"`calibration_data` item {row} holds {bad[0]!r} ({type(bad[0]).__name__}): token ids "
                             "must be integers (NaN and floats are refused, not rounded).")
        tokens.extend(int(t) for t in ids)
    stream = torch.tensor(tokens, dtype=torch.long)
    windows = stream.numel() // seq_len
    if windows == 0:
        raise ValueError(f"`calibration_data` has {stream.numel()} tokens, fewer than one sequence of "
                         f"`calibration_seq_len`={seq_len}.")
    sequences = stream[: windows * seq_len].view(windows, seq_len)
    if windows > num_sequences:
        generator = torch.Generator().manual_seed(seed)
        sequences = sequences[torch.randperm(windows, generator=generator)[:num_sequences].sort().values]
    check_token_ids(sequences, vocab_size)
    return sequences


def masked_calibration_simulation(sequences: torch.LongTensor, timesteps: int, prefix_ratio: float,
                                  visibility: Callable[[int], float], mask_token_id: int,
                                  generator: torch.Generator | None = None) -> torch.LongTensor:
    """Algorithm 1 (MCS): for every sequence x of length L and t = 1 … T, keep the prefix 𝒫 = {1 … ⌊γL⌋}
    visible, keep every other token with probability α(t) (Bernoulli) and replace the rest by [MASK].

    Returns (N·T, L): the T masked copies of sequence i are rows i·T … i·T + T − 1."""
    if not isinstance(sequences, torch.Tensor) or sequences.dim() != 2 or sequences.dtype.is_floating_point \
            or sequences.dtype.is_complex or sequences.dtype == torch.bool:
        got = (f"shape {tuple(sequences.shape)} of dtype {sequences.dtype}" if isinstance(sequences, torch.Tensor)
               else type(sequences).__name__)
        raise ValueError(f"`sequences` must be (N, L) integer token ids, got {got}.")
    if sequences.numel() == 0:
        raise ValueError(f"`sequences` is empty (shape {tuple(sequences.shape)}): there is nothing to calibrate on.")
    if not _is_int(timesteps) or timesteps < 1:
        raise ValueError(f"`mcs_timesteps` (T) must be a positive integer, got {timesteps!r}.")
    if not isinstance(prefix_ratio, numbers.Real) or not 0.0 <= float(prefix_ratio) < 1.0:
        raise ValueError(f"`prefix_ratio` (γ) must be a number in [0, 1), got {prefix_ratio!r}.")
    if not _is_int(mask_token_id) or mask_token_id < 0:
        raise ValueError(f"`mask_token_id` must be an integer >= 0, got {mask_token_id!r}.")
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


__all__ = ["CalibrationData", "calibration_sequences", "check_token_ids", "masked_calibration_simulation"]
