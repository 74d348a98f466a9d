"""Pure functions of N-gram hashing: windows, validity, the polynomial hash and which ids a reveal changes.

Conventions. The N-gram of order n *at position i* is the window ``x[i−n+1 … i]`` (it ends at i). Its id in a
table of size M is ``1 + (Σ_j x_{i−n+1+j} · B^{n−1−j} mod M)``; id 0 is the reserved "no N-gram" row. The window
has no id (id 0) when

* it starts before the sequence (``i < n − 1``),
* any of its tokens is *blocked*: the mask token, padding (the pad id or ``attention_mask == 0``) or an ignored id,
* an EOS sits anywhere but its last position — an N-gram may end on EOS but never crosses it into the next
  document or into the EOS padding of an answer.

For a masked diffusion model this is what keeps the layer a function of the revealed tokens only: an N-gram is
either fully known or absent, and it appears exactly when its last hidden token is revealed.
"""

from __future__ import annotations

import torch


def polynomial_powers(base: int, order: int, table_size: int) -> list[int]:
    """``[B^{n−1} mod M, …, B^1 mod M, 1]``: the coefficient of each window position, reduced modulo the table
    size first, so that every product in [`hash_ngrams`] is below ``M²`` and int64 never overflows."""
    return [pow(base, order - 1 - j, table_size) for j in range(order)]


def hash_ngrams(windows: torch.LongTensor, base: int, table_size: int) -> torch.LongTensor:
    """Polynomial hash of token windows ``(..., n)`` into ``[0, table_size)``: ``Σ_j w_j · B^{n−1−j} mod M``,
    reduced after every term."""
    powers = polynomial_powers(base, windows.shape[-1], table_size)
    value = torch.zeros(windows.shape[:-1], dtype=torch.long, device=windows.device)
    for j, power in enumerate(powers):
        value = (value + (windows[..., j] % table_size) * power) % table_size
    return value


def gather_windows(values: torch.Tensor, batch_index: torch.LongTensor, position_index: torch.LongTensor,
                   order: int, fill) -> torch.Tensor:
    """``values[b, i−n+1 … i]`` for every pair ``(b, i)``, shape ``(pairs, n)``; positions before 0 read ``fill``."""
    offsets = torch.arange(1 - order, 1, device=values.device)
    positions = position_index.unsqueeze(-1) + offsets
    inside = positions >= 0
    gathered = values[batch_index.unsqueeze(-1), positions.clamp(min=0)]
    return torch.where(inside, gathered, torch.as_tensor(fill, dtype=values.dtype, device=values.device))


def ngram_validity(blocked_windows: torch.BoolTensor, eos_windows: torch.BoolTensor) -> torch.BoolTensor:
    """Whether windows have an id: no blocked token anywhere (out-of-sequence positions count as blocked) and no
    EOS before the last position. Inputs ``(..., n)``, output ``(...)``."""
    return ~blocked_windows.any(-1) & ~eos_windows[..., :-1].any(-1)


def ngram_ids_at(input_ids: torch.LongTensor, blocked: torch.BoolTensor, is_eos: torch.BoolTensor, order: int,
                 table_sizes: list[int], base: int, batch_index: torch.LongTensor,
                 position_index: torch.LongTensor) -> torch.LongTensor:
    """Ids of the order-``order`` N-grams at the given ``(batch, position)`` pairs in each of the tables, shape
    ``(pairs, len(table_sizes))``; 0 where the window has no id, ``1 + hash`` otherwise."""
    windows = gather_windows(input_ids, batch_index, position_index, order, 0)
    valid = ngram_validity(gather_windows(blocked, batch_index, position_index, order, True),
                           gather_windows(is_eos, batch_index, position_index, order, False))
    ids = torch.stack([hash_ngrams(windows, base, size) + 1 for size in table_sizes], dim=-1)
    return ids * valid.unsqueeze(-1)


def ngram_ids(input_ids: torch.LongTensor, blocked: torch.BoolTensor, is_eos: torch.BoolTensor, orders: list[int],
              table_sizes: list[list[int]], base: int) -> torch.LongTensor:
    """Ids of every N-gram of a batch: shape ``(batch, length, len(orders), K)``, 0 = no N-gram.

    ``blocked`` and ``is_eos`` are boolean maps of ``input_ids``' shape; ``table_sizes[o]`` lists the K sizes of
    order ``orders[o]``."""
    batch, length = input_ids.shape
    b_index, p_index = torch.meshgrid(torch.arange(batch, device=input_ids.device),
                                      torch.arange(length, device=input_ids.device), indexing="ij")
    b_index, p_index = b_index.reshape(-1), p_index.reshape(-1)
    per_order = [ngram_ids_at(input_ids, blocked, is_eos, order, sizes, base, b_index, p_index)
                 for order, sizes in zip(orders, table_sizes)]
    return torch.stack(per_order, dim=1).view(batch, length, len(orders), -1)


def affected_pairs(changed: torch.BoolTensor, orders: list[int]) -> torch.BoolTensor:
    """Which ``(position, order)`` ids can change when the tokens marked in ``changed`` (batch, length) change:
    the order-n N-gram at i is affected iff a changed position lies in ``[i−n+1, i]``. Revealing one token at p
    thus touches the n pairs ``(p … p+n−1, n)`` per order: ``N(N+1)/2 − 1`` pairs for orders 2 … N, of which
    ``N(N−1)/2`` are at positions other than p. Output ``(batch, length, len(orders))``."""
    counts = torch.nn.functional.pad(changed.long().cumsum(-1), (1, 0))  # counts[:, i] = changed before i
    length = changed.shape[-1]
    positions = torch.arange(length, device=changed.device)
    columns = []
    for order in orders:
        start = (positions - order + 1).clamp(min=0)
        columns.append((counts[:, positions + 1] - counts[:, start]) > 0)
    return torch.stack(columns, dim=-1)


__all__ = ["affected_pairs", "gather_windows", "hash_ngrams", "ngram_ids", "ngram_ids_at", "ngram_validity",
           "polynomial_powers"]
