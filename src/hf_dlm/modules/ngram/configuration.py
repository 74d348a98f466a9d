"""Settings of a hashed N-gram embedding: orders, sub-tables, table sizes, widths, amplification, combination.

Serialises to a plain dict (``to_dict`` / ``from_dict``) so a model config can store it in ``config.json``. The
table sizes and the hash base are resolved once, when a model is built (``resolve``), and saved with the model, so
resizing the token embeddings later never changes which row an N-gram hashes to.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from transformers.utils import logging

logger = logging.get_logger(__name__)

AMPLIFICATIONS = ("sqrt_d", "layernorm", "none")
COMBINE_RULES = ("mean", "sum")
# products (token mod M) * (base^j mod M) stay below 2**62 when M < 2**31: int64 never overflows
MAX_TABLE_SIZE = 2**31 - 1


def _is_prime(value: int) -> bool:
    if value < 2:
        return False
    if value % 2 == 0:
        return value == 2
    divisor = 3
    while divisor * divisor <= value:
        if value % divisor == 0:
            return False
        divisor += 2
    return True


def distance_to_vocab_multiple(table_size: int, vocab_size: int) -> int:
    """Distance from ``table_size`` to the nearest positive multiple of ``vocab_size``."""
    below = max(1, table_size // vocab_size) * vocab_size
    return min(abs(table_size - below), abs(table_size - (below + vocab_size)))


def choose_table_sizes(vocab_size: int, ratio: float, count: int) -> list[int]:
    """``count`` distinct table sizes near ``ratio · vocab_size``, each the next prime that is at least a tenth of
    the vocabulary away from any multiple of it.

    Tables whose size is close to a multiple of the base vocabulary collide much more (the LongCat report): with the
    base-V polynomial hash, ``M = c·V`` keeps only ``c`` distinct values of every earlier token. A prime size also
    makes the base invertible modulo ``M``, so every position of the window moves the id.
    """
    margin = max(1, vocab_size // 10)
    candidate = max(2, round(ratio * vocab_size))
    sizes: list[int] = []
    while len(sizes) < count:
        if _is_prime(candidate) and distance_to_vocab_multiple(candidate, vocab_size) >= margin:
            sizes.append(candidate)
        candidate += 1
    return sizes


def _check_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")


@dataclass
class NgramEmbeddingConfig:
    """Settings of [`NgramEmbedding`].

    Args:
        max_n: the largest order N; orders 2 … N are embedded (the report recommends 3 to 5).
        num_tables: K, hashed sub-tables per order; each has its own size, so two N-grams that collide in one table
            rarely collide in the others (the report found N ≥ 3, K ≥ 2 settings about equal, N = 2, K = 1 worse).
        table_size_ratio: each table holds about ``table_size_ratio · vocab_size`` hashed rows (plus the reserved
            "no N-gram" row); the exact sizes come from [`choose_table_sizes`].
        table_sizes: explicit sizes, ``(max_n − 1) · num_tables`` of them ordered by order then table
            (``[n=2 k=0, n=2 k=1, …, n=N k=K−1]``); ``None`` = chosen from ``table_size_ratio`` at ``resolve``.
        hash_base: the base B of the polynomial hash ``Σ_j x_{i−n+1+j} · B^{n−1−j} mod M``; ``None`` = the
            vocabulary size at ``resolve`` (then the hash is the N-gram's exact base-V number, reduced mod M).
        embedding_dim: width of every table before its projection to the hidden size; ``None`` = hidden size.
        amplification: applied to the joined embedding before the first block, against the embedding signal being
            drowned in the residual stream: ``sqrt_d`` multiplies by √D, ``layernorm`` applies a LayerNorm, ``none``.
        combine: ``mean`` averages the token embedding and the projected embeddings of the *valid* N-grams of a
            position (an N-gram with no id is left out of the count too); ``sum`` adds them.
        ignored_token_ids: ids that, like the mask and padding ids, make every N-gram containing them "no N-gram".
    """

    max_n: int = 3
    num_tables: int = 2
    table_size_ratio: float = 1.0
    table_sizes: list[int] | None = None
    hash_base: int | None = None
    embedding_dim: int | None = None
    amplification: str = "sqrt_d"
    combine: str = "mean"
    ignored_token_ids: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_int("max_n", self.max_n, 2)
        _check_int("num_tables", self.num_tables, 1)
        if isinstance(self.table_size_ratio, bool) or not isinstance(self.table_size_ratio, (int, float)) \
                or not self.table_size_ratio > 0:
            raise ValueError(f"`table_size_ratio` must be a number > 0, got {self.table_size_ratio!r}.")
        if self.amplification not in AMPLIFICATIONS:
            raise ValueError(f"`amplification` must be one of {AMPLIFICATIONS}, got {self.amplification!r}.")
        if self.combine not in COMBINE_RULES:
            raise ValueError(f"`combine` must be one of {COMBINE_RULES}, got {self.combine!r}.")
        if self.embedding_dim is not None:
            _check_int("embedding_dim", self.embedding_dim, 1)
        if self.hash_base is not None:
            _check_int("hash_base", self.hash_base, 2)
        self.ignored_token_ids = [int(i) for i in self.ignored_token_ids]
        if self.table_sizes is not None:
            self.table_sizes = list(self.table_sizes)
            if len(self.table_sizes) != self.num_embedding_tables:
                raise ValueError(f"`table_sizes` must hold (max_n - 1) * num_tables = {self.num_embedding_tables} "
                                 f"sizes, got {len(self.table_sizes)}.")
            for size in self.table_sizes:
                if not isinstance(size, int) or isinstance(size, bool) or not 1 < size <= MAX_TABLE_SIZE:
                    raise ValueError(f"every table size must be an integer in [2, {MAX_TABLE_SIZE}], got {size!r} "
                                     "(a table of size <= 1 puts every N-gram in one row).")
            for order in self.orders:
                sizes = self.sizes_of_order(order)
                if len(set(sizes)) != len(sizes):
                    raise ValueError(f"the {self.num_tables} tables of order {order} need distinct sizes (equal sizes "
                                     f"give identical ids), got {sizes}.")

    @property
    def orders(self) -> list[int]:
        return list(range(2, self.max_n + 1))

    @property
    def num_embedding_tables(self) -> int:
        return (self.max_n - 1) * self.num_tables

    def sizes_of_order(self, order: int) -> list[int]:
        if self.table_sizes is None:
            raise ValueError("table sizes are not resolved yet: call `resolve(vocab_size, hidden_size)`.")
        start = (order - 2) * self.num_tables
        return self.table_sizes[start:start + self.num_tables]

    def resolve(self, vocab_size: int, hidden_size: int) -> NgramEmbeddingConfig:
        """A copy with ``table_sizes``, ``hash_base`` and ``embedding_dim`` filled in for this model."""
        _check_int("vocab_size", vocab_size, 2)
        resolved = replace(
            self,
            hash_base=self.hash_base if self.hash_base is not None else vocab_size,
            embedding_dim=self.embedding_dim if self.embedding_dim is not None else hidden_size,
            table_sizes=self.table_sizes if self.table_sizes is not None
            else choose_table_sizes(vocab_size, self.table_size_ratio, self.num_embedding_tables),
            ignored_token_ids=list(self.ignored_token_ids),
        )
        margin = max(1, resolved.hash_base // 10)
        close = [s for s in resolved.table_sizes if distance_to_vocab_multiple(s, resolved.hash_base) < margin]
        if close:
            logger.warning("N-gram table sizes %s lie within %d of a multiple of the hash base %d: such tables collide "
                           "much more; prefer sizes clearly off those multiples.", close, margin, resolved.hash_base)
        return resolved

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | NgramEmbeddingConfig) -> NgramEmbeddingConfig:
        if isinstance(values, cls):
            return replace(values)
        if not isinstance(values, dict):
            raise TypeError(f"`ngram_embedding` must be a dict or NgramEmbeddingConfig, got {type(values).__name__}.")
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown `ngram_embedding` settings {sorted(unknown)}; allowed: "
                             f"{sorted(cls.__dataclass_fields__)}.")
        return cls(**values)


__all__ = ["AMPLIFICATIONS", "COMBINE_RULES", "NgramEmbeddingConfig", "choose_table_sizes",
           "distance_to_vocab_multiple"]
