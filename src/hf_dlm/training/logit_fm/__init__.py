"""Logit-FM training: the denoising objective of eq. 15 and its Trainer."""

from .objective import (LOSS_POSITIONS, TIME_DISTRIBUTIONS, denoising_loss, loss_positions_mask, noisy_simplex,
                        sample_flow_times)
from .logit_fm_config import LogitFMTrainingArguments
from .logit_fm_trainer import LogitFMTrainer

__all__ = ["LOSS_POSITIONS", "LogitFMTrainer", "LogitFMTrainingArguments", "TIME_DISTRIBUTIONS", "denoising_loss",
           "loss_positions_mask", "noisy_simplex", "sample_flow_times"]
