"""hf-dlm: masked (discrete) diffusion models in the Hugging Face stack.

``import hf_dlm`` registers our configurations and models with transformers' Auto classes, the Quant-dLLM quantizer,
the ``text-to-image`` task and our diffusers components (see ``hf_dlm._registration``: each entry is written as soon
as its registry exists in the process). The public names below are imported on first access (PEP 562), so
``import hf_dlm`` itself imports neither torch nor transformers nor diffusers: ``from hf_dlm import X`` works for every
name in ``__all__`` and imports what ``X`` needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._registration import register as _register

__version__ = "0.1.0"

# public name → module that defines it (imported on first access: start-up time). Core first: the models, their
# generation, training, evaluation and quantization; then the denoiser contract, model options, schedulers and
# pipelines. Multimodal names (image tokens in a causal LM) live under ``hf_dlm.multimodal``.
_EXPORTS: dict[str, str] = {
    # models
    "LLaDAConfig": ".models.llada.configuration_llada",
    "LLaDAModel": ".models.llada.modeling_llada",
    "LLaDAModelLM": ".models.llada.modeling_llada",
    "DreamConfig": ".models.dream.configuration_dream",
    "DreamModel": ".models.dream.modeling_dream",
    "DreamForMaskedLM": ".models.dream.modeling_dream",
    "LogitFMConfig": ".models.logit_fm.configuration_logit_fm",
    "LogitFMModel": ".models.logit_fm.modeling_logit_fm",
    "MaskedImageTransformer": ".models.masked_image",
    # generation
    "MaskedDiffusionGenerationConfig": ".generation",
    "MaskedDiffusionGenerationOutput": ".generation",
    "LogitFMGenerationConfig": ".generation.logit_fm",
    "LogitFMGenerationOutput": ".generation.logit_fm",
    "logit_fm_generate": ".generation.logit_fm",
    # training
    "MaskedDiffusionTrainer": ".training",
    "MaskedDiffusionTrainingArguments": ".training",
    "DiMOConfig": ".training.dimo",
    "DiMOTrainer": ".training.dimo",
    "ConditionDataset": ".training.dimo",
    "LogitFMTrainer": ".training.logit_fm",
    "LogitFMTrainingArguments": ".training.logit_fm",
    # evaluation
    "elbo_log_likelihood": ".evaluation",
    # quantization
    "QuantDLLMConfig": ".quantization",
    "QuantDLLMQuantizer": ".quantization",
    "QuantDLLMLinear": ".quantization",
    # the denoiser contract
    "denoise": ".denoiser",
    "guided_denoise": ".denoiser",
    "get_mask_token_id": ".denoiser",
    # model options, schedulers, pipelines
    "NgramEmbeddingConfig": ".modules",
    "NgramEmbedding": ".modules",
    "NgramIdCache": ".modules",
    "MaskGITScheduler": ".schedulers",
    "MaskedImagePipeline": ".pipelines",
    "AutoregressiveImagePipeline": ".pipelines",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    """PEP 562: import a public name's module on first access (then the name is a plain module attribute)."""
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value
        return value
    if not name.startswith("__"):
        try:  # a subpackage used as an attribute (`hf_dlm.pipelines`) without importing it first
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # the names above, for type checkers and IDEs
    from .denoiser import denoise, get_mask_token_id, guided_denoise
    from .evaluation import elbo_log_likelihood
    from .generation import MaskedDiffusionGenerationConfig, MaskedDiffusionGenerationOutput
    from .generation.logit_fm import LogitFMGenerationConfig, LogitFMGenerationOutput, logit_fm_generate
    from .models import (DreamConfig, DreamForMaskedLM, DreamModel, LLaDAConfig, LLaDAModel, LLaDAModelLM,
                         LogitFMConfig, LogitFMModel, MaskedImageTransformer)
    from .modules import NgramEmbedding, NgramEmbeddingConfig, NgramIdCache
    from .pipelines import AutoregressiveImagePipeline, MaskedImagePipeline
    from .quantization import QuantDLLMConfig, QuantDLLMLinear, QuantDLLMQuantizer
    from .schedulers import MaskGITScheduler
    from .training import MaskedDiffusionTrainer, MaskedDiffusionTrainingArguments
    from .training.dimo import ConditionDataset, DiMOConfig, DiMOTrainer
    from .training.logit_fm import LogitFMTrainer, LogitFMTrainingArguments

_register()
