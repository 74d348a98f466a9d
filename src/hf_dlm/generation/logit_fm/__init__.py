"""Logit-FM generation: the KL-geodesic path, its generation config, the samplers and the ``generate()`` mixin."""

from .configuration import SCHEMES, TIME_GRIDS, LogitFMGenerationConfig
from .mixin import LogitFMGenerationMixin
from .sampler import LogitFMGenerationOutput, logit_fm_generate, predict_x1_logits, sample_logit_fm

__all__ = ["LogitFMGenerationConfig", "LogitFMGenerationMixin", "LogitFMGenerationOutput", "SCHEMES", "TIME_GRIDS",
           "logit_fm_generate", "predict_x1_logits", "sample_logit_fm"]
