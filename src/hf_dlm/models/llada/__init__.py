import importlib
from typing import TYPE_CHECKING, Any

# imported on first access (PEP 562): registering LLaDAConfig must not import the modeling code (start-up time)
_EXPORTS = {"LLaDAConfig": ".configuration_llada", "LLaDAModel": ".modeling_llada", "LLaDAModelLM": ".modeling_llada",
            "LLaDAPreTrainedModel": ".modeling_llada"}

__all__ = ["LLaDAConfig", "LLaDAModel", "LLaDAModelLM", "LLaDAPreTrainedModel"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    from .configuration_llada import LLaDAConfig
    from .modeling_llada import LLaDAModel, LLaDAModelLM, LLaDAPreTrainedModel
