"""Registration of our architectures with transformers' Auto classes; runs once, on ``import hf_dlm``.

``AutoModel`` maps to the language-model classes (not the bare trunks) because the released LLaDA and Dream
checkpoints map it so in their ``auto_map``: code written for them (``AutoModel.from_pretrained(...).generate``)
keeps working, and it does so without ``trust_remote_code``.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM

from .models import DreamConfig, DreamForMaskedLM, DreamModel, LLaDAConfig, LLaDAModelLM, LogitFMConfig, LogitFMModel

_done = False


def register() -> None:
    global _done
    if _done:
        return
    AutoConfig.register(LLaDAConfig.model_type, LLaDAConfig, exist_ok=True)
    AutoModel.register(LLaDAConfig, LLaDAModelLM, exist_ok=True)
    AutoModelForCausalLM.register(LLaDAConfig, LLaDAModelLM, exist_ok=True)
    AutoModelForMaskedLM.register(LLaDAConfig, LLaDAModelLM, exist_ok=True)
    AutoConfig.register(DreamConfig.model_type, DreamConfig, exist_ok=True)
    AutoModel.register(DreamConfig, DreamModel, exist_ok=True)
    AutoModelForCausalLM.register(DreamConfig, DreamModel, exist_ok=True)
    AutoModelForMaskedLM.register(DreamConfig, DreamForMaskedLM, exist_ok=True)
    AutoConfig.register(LogitFMConfig.model_type, LogitFMConfig, exist_ok=True)
    AutoModel.register(LogitFMConfig, LogitFMModel, exist_ok=True)
    AutoModelForCausalLM.register(LogitFMConfig, LogitFMModel, exist_ok=True)
    _register_diffusers_library()
    from .pipelines.text_to_image import register_text_to_image

    register_text_to_image()
    from .quantization import register as register_quantizer

    register_quantizer()
    _done = True


def _register_diffusers_library() -> None:
    """Tell diffusers that our component modules are loadable libraries, like ``diffusers`` and ``transformers``.

    A saved pipeline names our components by module path in ``model_index.json`` (e.g.
    ``["hf_dlm.schedulers.scheduling_maskgit", "MaskGITScheduler"]``). Loading from disk imports that module, but
    ``DiffusionPipeline.from_pretrained("org/name")`` from the Hub refuses a module path that is not a known library
    unless the repository ships it as a custom ``.py`` file. Registering the module paths lets our pipelines be
    pulled by hub id without ``trust_remote_code``; the saved format is unchanged."""
    from diffusers.pipelines import pipeline_loading_utils

    from .models.masked_image import MaskedImageTransformer
    from .schedulers import MaskGITScheduler

    methods = ["save_pretrained", "from_pretrained"]
    for cls, base in ((MaskedImageTransformer, "ModelMixin"), (MaskGITScheduler, "SchedulerMixin")):
        pipeline_loading_utils.LOADABLE_CLASSES.setdefault(cls.__module__, {base: methods})
