"""Logit-FM training: the denoising objective of eq. 15 and its Trainer."""

from .objective import TIME_DISTRIBUTIONS, denoising_loss, noisy_simplex, sample_flow_times
from .trainer import LogitFMTrainer, LogitFMTrainingArguments

__all__ = ["LogitFMTrainer", "LogitFMTrainingArguments", "TIME_DISTRIBUTIONS", "denoising_loss", "noisy_simplex",
           "sample_flow_times"]
