import importlib
from typing import TYPE_CHECKING, Any

# imported on first access (PEP 562): registering LogitFMConfig must not import the modeling code (start-up time)
_EXPORTS = {"LogitFMConfig": ".configuration_logit_fm", "TIME_CONDITIONINGS": ".configuration_logit_fm",
            "LogitFMModel": ".modeling_logit_fm", "LogitFMOutput": ".modeling_logit_fm",
            "LogitFMPreTrainedModel": ".modeling_logit_fm"}

__all__ = ["LogitFMConfig", "LogitFMModel", "LogitFMOutput", "LogitFMPreTrainedModel", "TIME_CONDITIONINGS"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    from .configuration_logit_fm import TIME_CONDITIONINGS, LogitFMConfig
    from .modeling_logit_fm import LogitFMModel, LogitFMOutput, LogitFMPreTrainedModel
