"""Trainers: masked-diffusion pre-training and SFT."""

from .masked_image import MaskedImageTrainer, MaskedImageTrainingArguments, TextToImageModules
from .mdm_loss import forward_process, pretraining_loss, sft_loss
from .data import MaskedDiffusionSFTCollator, TokenIdsDataset
from .mdm_trainer import MaskedDiffusionTrainer, MaskedDiffusionTrainingArguments

__all__ = [
    "MaskedDiffusionSFTCollator",
    "MaskedImageTrainer",
    "MaskedImageTrainingArguments",
    "TextToImageModules",
    "MaskedDiffusionTrainer",
    "MaskedDiffusionTrainingArguments",
    "TokenIdsDataset",
    "forward_process",
    "pretraining_loss",
    "sft_loss",
]
