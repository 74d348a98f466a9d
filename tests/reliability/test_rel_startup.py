"""``import hf_dlm`` is cheap (no torch, transformers or diffusers) and still registers everything: whichever of
hf_dlm and transformers / diffusers a program imports first, the Auto classes, the quantizer registry, the
``text-to-image`` task and diffusers' loadable libraries hold our entries, and every public name imports."""

import os
import subprocess
import sys
import textwrap

import pytest

import hf_dlm
from hf_dlm import _registration


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            timeout=240, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


CHECK_REGISTRIES = """
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM
    from transformers.pipelines import PIPELINE_REGISTRY
    from transformers.quantizers.auto import AUTO_QUANTIZATION_CONFIG_MAPPING, AUTO_QUANTIZER_MAPPING
    from diffusers.pipelines.pipeline_loading_utils import LOADABLE_CLASSES
    from hf_dlm import DreamConfig, LLaDAConfig, LogitFMConfig
    for model_type in ("llada", "Dream", "logit_fm", "masked_image_pipeline"):
        assert AutoConfig.for_model(model_type).model_type == model_type, model_type
    config = LLaDAConfig(vocab_size=32, embedding_size=32, d_model=16, n_layers=1, n_heads=2, n_kv_heads=2,
                         mlp_hidden_size=32, max_sequence_length=16, mask_token_id=31, pad_token_id=30,
                         eos_token_id=29, bos_token_id=28)
    for auto in (AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM):
        assert type(auto.from_config(config)).__name__ == "LLaDAModelLM", auto
    assert AutoModelForMaskedLM._model_mapping[DreamConfig].__name__ == "DreamForMaskedLM"
    assert LogitFMConfig in AutoModelForCausalLM._model_mapping
    assert "text-to-image" in PIPELINE_REGISTRY.get_supported_tasks()
    assert "quant_dllm" in AUTO_QUANTIZER_MAPPING and "quant_dllm" in AUTO_QUANTIZATION_CONFIG_MAPPING
    assert "hf_dlm.schedulers.scheduling_maskgit" in LOADABLE_CLASSES
    print("OK")
"""


def test_import_hf_dlm_imports_no_heavy_library():
    out = _run("""
        import sys
        import hf_dlm
        print(sorted(m for m in ("torch", "transformers", "diffusers", "numpy", "huggingface_hub") if m in sys.modules))
    """)
    assert out.strip() == "[]"


@pytest.mark.parametrize("order", ["hf_dlm first", "transformers first"])
def test_registrations_hold_whatever_the_import_order(order):
    first = "import hf_dlm\n" if order == "hf_dlm first" else (
        "from transformers import AutoConfig, AutoModel\nfrom transformers.pipelines import PIPELINE_REGISTRY\n"
        "import diffusers.pipelines.pipeline_loading_utils\nimport transformers.quantizers\nimport hf_dlm\n")
    assert _run(first + textwrap.dedent(CHECK_REGISTRIES)).strip().endswith("OK")


def test_every_public_name_imports():
    for name in hf_dlm.__all__:
        assert getattr(hf_dlm, name) is not None, name
    exec(f"from hf_dlm import {', '.join(hf_dlm.__all__)}", {})
    assert set(hf_dlm.__all__) <= set(dir(hf_dlm))
    with pytest.raises(AttributeError):
        hf_dlm.no_such_name  # noqa: B018


def test_stand_ins_become_the_real_classes():
    """A registry entry imported on first use is replaced by the real class in every registry that held it."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM
    from transformers.pipelines import PIPELINE_REGISTRY
    from transformers.quantizers.auto import AUTO_QUANTIZER_MAPPING

    from hf_dlm import DreamConfig, DreamForMaskedLM, LLaDAConfig, LLaDAModelLM
    from hf_dlm.pipelines.text_to_image import MaskedImagePipelineLoader, TextToImagePipeline
    from hf_dlm.quantization.hf_quantizer import QuantDLLMHfQuantizer

    _registration.resolve_all()
    assert AutoModelForCausalLM._model_mapping[LLaDAConfig] is LLaDAModelLM
    assert AutoModelForMaskedLM._model_mapping[DreamConfig] is DreamForMaskedLM
    task = PIPELINE_REGISTRY.supported_tasks["text-to-image"]
    assert task["impl"] is TextToImagePipeline and task["pt"] == (MaskedImagePipelineLoader,)
    assert TextToImagePipeline._registered_impl["text-to-image"] is task
    assert AUTO_QUANTIZER_MAPPING["quant_dllm"] is QuantDLLMHfQuantizer


def test_registration_constants_match_the_library():
    from hf_dlm.models.masked_image.modeling_masked_image import MaskedImageTransformer
    from hf_dlm.pipelines.text_to_image import MODEL_TYPE
    from hf_dlm.quantization.configuration import QUANT_METHOD
    from hf_dlm.schedulers import MaskGITScheduler

    assert _registration.QUANT_METHOD == QUANT_METHOD
    assert _registration.IMAGE_PIPELINE_MODEL_TYPE == MODEL_TYPE
    assert set(_registration.DIFFUSERS_COMPONENT_MODULES) == {MaskedImageTransformer.__module__,
                                                               MaskGITScheduler.__module__}
