"""Masked-diffusion decoding: generation config, sampling maths and the ``generate()`` mixin."""

from .configuration import REMASKING_STRATEGIES, MaskedDiffusionGenerationConfig
from .mixin import MaskedDiffusionGenerationMixin, MaskedDiffusionGenerationOutput

__all__ = [
    "MaskedDiffusionGenerationConfig",
    "MaskedDiffusionGenerationMixin",
    "MaskedDiffusionGenerationOutput",
    "REMASKING_STRATEGIES",
]
