"""Di[M]O one-step distillation (Zhu et al., 2025): ``DiMOConfig`` + ``DiMOTrainer``."""

from .dimo_config import DiMOConfig
from .data import ConditionDataset, DiMOConditionCollator
from .divergences import DIVERGENCES, divergence_f, divergence_gradient, surrogate_loss, token_divergence
from .dimo_trainer import DiMOTrainer

__all__ = [
    "ConditionDataset",
    "DIVERGENCES",
    "DiMOConditionCollator",
    "DiMOConfig",
    "DiMOTrainer",
    "divergence_f",
    "divergence_gradient",
    "surrogate_loss",
    "token_divergence",
]
