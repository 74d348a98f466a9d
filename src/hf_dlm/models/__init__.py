"""Architectures, one folder each. Nothing here imports the algorithm folders except ``generation`` (the
``generate()`` mixin, as transformers' models import ``GenerationMixin``)."""

from .dream import DreamBaseModel, DreamConfig, DreamForMaskedLM, DreamModel
from .llada import LLaDAConfig, LLaDAModel, LLaDAModelLM
from .logit_fm import LogitFMConfig, LogitFMModel
from .masked_image import MaskedImageTransformer

__all__ = ["DreamBaseModel", "DreamConfig", "DreamForMaskedLM", "DreamModel", "LLaDAConfig", "LLaDAModel",
           "LLaDAModelLM", "LogitFMConfig", "LogitFMModel", "MaskedImageTransformer"]
