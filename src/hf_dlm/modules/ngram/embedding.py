"""The hashed N-gram embedding layer: token embedding joined with projected N-gram embeddings, then amplified.

For position i (LongCat-Flash-Lite, arXiv:2601.21204)::

    e_i = A( combine( E[x_i],  P_{n,k} T_{n,k}[id_{n,k}(i)]  for every order n and table k with an id ) )

with T_{n,k} the hashed tables (width ``embedding_dim``), P_{n,k} their projections to the hidden size, ``combine``
a sum or the mean over the terms present, and A the amplification (× √D, a LayerNorm, or nothing). N-grams without
an id (touching a mask, padding or an ignored id, crossing EOS, starting before the sequence: see ``hashing.py``)
are left out of the sum *and* of the mean's count, so they contribute exactly nothing.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers.utils import logging

from .cache import NgramIdCache
from .configuration import NgramEmbeddingConfig
from .hashing import ngram_ids

logger = logging.get_logger(__name__)

NGRAM_BUDGET_LIMIT = 0.5


class NgramEmbedding(nn.Module):
    """Hashed N-gram embeddings added to a token embedding.

    Args:
        config: resolved settings (``NgramEmbeddingConfig.resolve``: table sizes, hash base and width filled in).
        hidden_size: D, the width of the token embedding and of the projections' output.
        blocked_token_ids: ids that make an N-gram "no N-gram" wherever they occur — the model's mask and pad ids;
            ``config.ignored_token_ids`` are added to them.
        eos_token_ids: ids an N-gram may end on but never cross: one id, a list, or ``None`` (a config's
            ``eos_token_id`` as it is).
        norm_eps: epsilon of the LayerNorm amplification.
    """

    def __init__(self, config: NgramEmbeddingConfig, hidden_size: int, blocked_token_ids: list[int],
                 eos_token_ids: int | list[int] | None, norm_eps: float = 1e-5) -> None:
        super().__init__()
        if config.table_sizes is None or config.hash_base is None or config.embedding_dim is None:
            raise ValueError("NgramEmbedding needs resolved settings: call `config.resolve(vocab_size, hidden_size)`.")
        self.config = config
        self.hidden_size = hidden_size
        width = config.embedding_dim
        # row 0 of every table is the reserved "no N-gram" row: padding_idx keeps it zero and gradient-free
        self.tables = nn.ModuleList(nn.Embedding(size + 1, width, padding_idx=0) for size in config.table_sizes)
        self.projections = nn.ModuleList(nn.Linear(width, hidden_size, bias=False) for _ in config.table_sizes)
        self.norm = nn.LayerNorm(hidden_size, eps=norm_eps) if config.amplification == "layernorm" else None
        # plain lists, not buffers: a (meta-device) ``from_pretrained`` never leaves them uninitialised
        self.blocked_token_ids = sorted({int(i) for i in blocked_token_ids} | set(config.ignored_token_ids))
        if eos_token_ids is None:
            eos_token_ids = []
        elif isinstance(eos_token_ids, int):
            eos_token_ids = [eos_token_ids]
        self.eos_token_ids = sorted({int(i) for i in eos_token_ids})

    @property
    def orders(self) -> list[int]:
        return self.config.orders

    def token_maps(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None
                   ) -> tuple[torch.BoolTensor, torch.BoolTensor]:
        """``(blocked, is_eos)`` maps of ``input_ids``: blocked = mask/pad/ignored id or ``attention_mask == 0``."""
        blocked = torch.isin(input_ids, torch.tensor(self.blocked_token_ids, device=input_ids.device))
        if attention_mask is not None:
            blocked = blocked | (attention_mask == 0)
        is_eos = torch.isin(input_ids, torch.tensor(self.eos_token_ids, dtype=torch.long, device=input_ids.device))
        return blocked, is_eos

    def hashed_ids(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None,
                   cache: NgramIdCache | None = None) -> torch.LongTensor:
        """Ids ``(batch, length, orders, K)`` into the tables (0 = no N-gram), through ``cache`` when given."""
        blocked, is_eos = self.token_maps(input_ids, attention_mask)
        sizes = [self.config.sizes_of_order(order) for order in self.orders]
        if cache is None:
            return ngram_ids(input_ids, blocked, is_eos, self.orders, sizes, self.config.hash_base)
        return cache.get_ids(input_ids, blocked, is_eos, self.orders, sizes, self.config.hash_base)

    def forward(self, input_ids: torch.LongTensor, token_embeds: torch.Tensor,
                attention_mask: torch.Tensor | None = None, cache: NgramIdCache | None = None) -> torch.Tensor:
        """Join ``token_embeds`` (batch, length, D) with the N-gram embeddings of ``input_ids`` and amplify."""
        ids = self.hashed_ids(input_ids, attention_mask, cache)
        total = token_embeds
        count = torch.ones(ids.shape[:2] + (1,), dtype=token_embeds.dtype, device=token_embeds.device)
        num_tables = self.config.num_tables
        for t, (table, projection) in enumerate(zip(self.tables, self.projections)):
            table_ids = ids[:, :, t // num_tables, t % num_tables]
            present = (table_ids > 0).unsqueeze(-1)
            total = total + torch.where(present, projection(table(table_ids)), 0.0)
            count = count + present.to(count.dtype)
        if self.config.combine == "mean":
            total = total / count
        if self.config.amplification == "sqrt_d":
            total = total * math.sqrt(self.hidden_size)
        elif self.norm is not None:
            total = self.norm(total)
        return total

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def ngram_parameter_budget(model: nn.Module) -> dict[str, float]:
    """Parameter counts of ``model``: ``total`` (tied weights once), ``ngram`` (in N-gram embedding layers) and their
    ratio ``fraction``. The LongCat report finds quality falls past about 50 % in N-gram embeddings."""
    unique = {id(p): p for p in model.parameters()}
    ngram = {id(p) for m in model.modules() if isinstance(m, NgramEmbedding) for p in m.parameters()}
    total = sum(p.numel() for p in unique.values())
    in_ngram = sum(unique[i].numel() for i in ngram if i in unique)
    return {"total": total, "ngram": in_ngram, "fraction": in_ngram / total if total else 0.0}


def warn_if_over_budget(model: nn.Module) -> dict[str, float]:
    """Log the parameter budget, with a warning when N-gram embeddings hold more than half of the parameters."""
    budget = ngram_parameter_budget(model)
    if budget["fraction"] > NGRAM_BUDGET_LIMIT:
        logger.warning("N-gram embeddings hold %.1f%% of the %d parameters (%d): past about 50%% quality falls "
                       "(LongCat, arXiv:2601.21204); lower `table_size_ratio`, `num_tables` or `embedding_dim`.",
                       100 * budget["fraction"], budget["total"], budget["ngram"])
    else:
        logger.info("N-gram embeddings hold %.1f%% of the %d parameters (%d).", 100 * budget["fraction"],
                    budget["total"], budget["ngram"])
    return budget


__all__ = ["NGRAM_BUDGET_LIMIT", "NgramEmbedding", "ngram_parameter_budget", "warn_if_over_budget"]
