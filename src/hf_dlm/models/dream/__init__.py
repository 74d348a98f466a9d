from .configuration_dream import DreamConfig
from .modeling_dream import DreamBaseModel, DreamForMaskedLM, DreamModel, DreamPreTrainedModel

__all__ = ["DreamConfig", "DreamBaseModel", "DreamForMaskedLM", "DreamModel", "DreamPreTrainedModel"]
