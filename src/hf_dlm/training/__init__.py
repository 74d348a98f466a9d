"""Trainers: masked-diffusion pre-training and SFT."""

from .mdm_loss import forward_process, pretraining_loss, sft_loss
from .mdm_trainer import MaskedDiffusionSFTCollator, MaskedDiffusionTrainer, MaskedDiffusionTrainingArguments

__all__ = [
    "MaskedDiffusionSFTCollator",
    "MaskedDiffusionTrainer",
    "MaskedDiffusionTrainingArguments",
    "forward_process",
    "pretraining_loss",
    "sft_loss",
]
