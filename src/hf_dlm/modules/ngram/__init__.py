"""Hashed N-gram embeddings (LongCat-Flash-Lite, arXiv:2601.21204) made correct for masked diffusion models:
N-grams that touch a mask, padding or an ignored id contribute nothing, N-grams never cross EOS, and an id cache
keyed by position recomputes only the windows a revealed token changes."""

from .cache import NgramIdCache
from .configuration import NgramEmbeddingConfig
from .embedding import NgramEmbedding, ngram_parameter_budget
from .hashing import affected_pairs, hash_ngrams, ngram_ids, ngram_validity, polynomial_powers

__all__ = [
    "NgramEmbedding",
    "NgramEmbeddingConfig",
    "NgramIdCache",
    "affected_pairs",
    "hash_ngrams",
    "ngram_ids",
    "ngram_parameter_budget",
    "ngram_validity",
    "polynomial_powers",
]
