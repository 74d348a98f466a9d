import importlib
from typing import TYPE_CHECKING, Any

# imported on first access (PEP 562): registering DreamConfig must not import the modeling code (start-up time)
_EXPORTS = {"DreamConfig": ".configuration_dream", "DreamBaseModel": ".modeling_dream",
            "DreamForMaskedLM": ".modeling_dream", "DreamModel": ".modeling_dream",
            "DreamPreTrainedModel": ".modeling_dream"}

__all__ = ["DreamConfig", "DreamBaseModel", "DreamForMaskedLM", "DreamModel", "DreamPreTrainedModel"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    from .configuration_dream import DreamConfig
    from .modeling_dream import DreamBaseModel, DreamForMaskedLM, DreamModel, DreamPreTrainedModel
