from .configuration_logit_fm import TIME_CONDITIONINGS, LogitFMConfig
from .modeling_logit_fm import LogitFMModel, LogitFMOutput, LogitFMPreTrainedModel

__all__ = ["LogitFMConfig", "LogitFMModel", "LogitFMOutput", "LogitFMPreTrainedModel", "TIME_CONDITIONINGS"]
