"""Masked-diffusion decoding: generation config, sampling maths and the ``generate()`` mixin."""

from .configuration import REMASKING_STRATEGIES, MaskedDiffusionGenerationConfig
from .initial_state import DiMOInitialState
from .mixin import MaskedDiffusionGenerationMixin, MaskedDiffusionGenerationOutput

__all__ = [
    "DiMOInitialState",
    "MaskedDiffusionGenerationConfig",
    "MaskedDiffusionGenerationMixin",
    "MaskedDiffusionGenerationOutput",
    "REMASKING_STRATEGIES",
]
