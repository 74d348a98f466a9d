"""hf-dlm: masked (discrete) diffusion models in the Hugging Face stack.

``import hf_dlm`` registers our configurations and models with transformers' Auto classes.
"""

from ._registration import register as _register
from .denoiser import denoise, get_mask_token_id
from .generation import MaskedDiffusionGenerationConfig, MaskedDiffusionGenerationOutput
from .generation.logit_fm import LogitFMGenerationConfig, LogitFMGenerationOutput, logit_fm_generate
from .models import (DreamConfig, DreamForMaskedLM, DreamModel, LLaDAConfig, LLaDAModel, LLaDAModelLM, LogitFMConfig,
                     LogitFMModel, MaskedImageTransformer)
from .modules import NgramEmbedding, NgramEmbeddingConfig, NgramIdCache
from .multimodal import (ImageSpanLogitsProcessor, ImageTextCollator, ImageTokenMap, ModalitySplitTrainer,
                         ModalitySplitTrainingArguments, add_image_tokens, contrastive_alignment, forgetting_probe)
from .pipelines import AutoregressiveImagePipeline, MaskedImagePipeline
from .quantization import QuantDLLMConfig, QuantDLLMLinear, QuantDLLMQuantizer
from .training.dimo import ConditionDataset, DiMOConfig, DiMOTrainer
from .training.logit_fm import LogitFMTrainer, LogitFMTrainingArguments
from .schedulers import MaskGITScheduler  # imported here so diffusers finds it when loading saved pipelines

_register()

__version__ = "0.1.0"

__all__ = [
    "AutoregressiveImagePipeline",
    "ConditionDataset",
    "DiMOConfig",
    "DiMOTrainer",
    "DreamConfig",
    "DreamForMaskedLM",
    "DreamModel",
    "ImageSpanLogitsProcessor",
    "ImageTextCollator",
    "ImageTokenMap",
    "LLaDAConfig",
    "LLaDAModel",
    "LLaDAModelLM",
    "LogitFMConfig",
    "LogitFMGenerationConfig",
    "LogitFMGenerationOutput",
    "LogitFMModel",
    "LogitFMTrainer",
    "LogitFMTrainingArguments",
    "MaskedDiffusionGenerationConfig",
    "MaskGITScheduler",
    "MaskedImagePipeline",
    "MaskedImageTransformer",
    "ModalitySplitTrainer",
    "ModalitySplitTrainingArguments",
    "NgramEmbedding",
    "NgramEmbeddingConfig",
    "NgramIdCache",
    "QuantDLLMConfig",
    "QuantDLLMLinear",
    "QuantDLLMQuantizer",
    "MaskedDiffusionGenerationOutput",
    "add_image_tokens",
    "contrastive_alignment",
    "denoise",
    "forgetting_probe",
    "get_mask_token_id",
    "logit_fm_generate",
]
