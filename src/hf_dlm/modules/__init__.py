"""Building blocks that are options of several architectures (not architectures themselves).

``models/`` may import from here; nothing here imports from ``models/`` or the algorithm folders.
"""

from .ngram import NgramEmbedding, NgramEmbeddingConfig, NgramIdCache

__all__ = ["NgramEmbedding", "NgramEmbeddingConfig", "NgramIdCache"]
