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
    from .pipelines.text_to_image import register_text_to_image

    register_text_to_image()
    from .quantization import register as register_quantizer

    register_quantizer()
    _done = True
