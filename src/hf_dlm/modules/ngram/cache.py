"""The N-gram id cache for masked-diffusion decoding: ids keyed by (batch row, position, order), updated only where
a revealed token (or a changed padding mask) falls inside a window.

In autoregressive decoding an N-gram cache keeps the last N−1 tokens. In masked diffusion every position is
predicted at every step and tokens appear anywhere, so the cache keeps the ids of *all* windows and, at each call,
recomputes only the affected ``(position, order)`` pairs (see [`affected_pairs`]).
"""

from __future__ import annotations

import torch

from .hashing import affected_pairs, ngram_ids, ngram_ids_at


class NgramIdCache:
    """Holds the N-gram ids of the last sequence batch a model embedded; pass it as ``ngram_cache=`` to the forward
    of a model with N-gram embeddings (``generate()`` does this when ``use_cache=True``).

    Attributes:
        ids: ``(batch, length, orders, K)`` ids of the last call.
        last_recomputed: ``(batch, length, orders)`` pairs recomputed at the last call (all on a full computation).
        full_computations / incremental_updates: how many calls of each kind this cache served.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.input_ids: torch.LongTensor | None = None
        self.blocked: torch.BoolTensor | None = None
        self.is_eos: torch.BoolTensor | None = None
        self.ids: torch.LongTensor | None = None
        self.last_recomputed: torch.BoolTensor | None = None
        self.full_computations = 0
        self.incremental_updates = 0

    def get_ids(self, input_ids: torch.LongTensor, blocked: torch.BoolTensor, is_eos: torch.BoolTensor,
                orders: list[int], table_sizes: list[list[int]], base: int) -> torch.LongTensor:
        """The ids of ``input_ids``; identical to [`ngram_ids`] on the same arguments, computed incrementally when
        the batch has the shape of the previous call."""
        same_shape = self.input_ids is not None and self.input_ids.shape == input_ids.shape \
            and self.input_ids.device == input_ids.device
        if not same_shape:
            ids = ngram_ids(input_ids, blocked, is_eos, orders, table_sizes, base)
            recomputed = torch.ones(ids.shape[:-1], dtype=torch.bool, device=ids.device)
            self.full_computations += 1
        else:
            changed = (input_ids != self.input_ids) | (blocked != self.blocked) | (is_eos != self.is_eos)
            recomputed = affected_pairs(changed, orders)
            ids = self.ids.clone()
            for o, (order, sizes) in enumerate(zip(orders, table_sizes)):
                b_index, p_index = recomputed[..., o].nonzero(as_tuple=True)
                if len(b_index):
                    ids[b_index, p_index, o] = ngram_ids_at(input_ids, blocked, is_eos, order, sizes, base,
                                                            b_index, p_index)
            self.incremental_updates += 1
        self.input_ids, self.blocked, self.is_eos = input_ids.clone(), blocked.clone(), is_eos.clone()
        self.ids, self.last_recomputed = ids, recomputed
        return ids


__all__ = ["NgramIdCache"]
