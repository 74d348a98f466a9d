"""Architectures, one folder each. Nothing here imports the algorithm folders except ``generation`` (the
``generate()`` mixin, as transformers' models import ``GenerationMixin``)."""

import importlib
from typing import TYPE_CHECKING, Any

# imported on first access (PEP 562): registering the configurations must not import the modeling code (start-up)
_EXPORTS = {"DreamBaseModel": ".dream", "DreamConfig": ".dream", "DreamForMaskedLM": ".dream", "DreamModel": ".dream",
            "LLaDAConfig": ".llada", "LLaDAModel": ".llada", "LLaDAModelLM": ".llada", "LogitFMConfig": ".logit_fm",
            "LogitFMModel": ".logit_fm", "MaskedImageTransformer": ".masked_image"}

__all__ = ["DreamBaseModel", "DreamConfig", "DreamForMaskedLM", "DreamModel", "LLaDAConfig", "LLaDAModel",
           "LLaDAModelLM", "LogitFMConfig", "LogitFMModel", "MaskedImageTransformer"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    from .dream import DreamBaseModel, DreamConfig, DreamForMaskedLM, DreamModel
    from .llada import LLaDAConfig, LLaDAModel, LLaDAModelLM
    from .logit_fm import LogitFMConfig, LogitFMModel
    from .masked_image import MaskedImageTransformer
