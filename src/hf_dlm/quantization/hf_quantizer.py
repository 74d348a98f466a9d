"""transformers integration: the ``quant_dllm`` `HfQuantizer`.

- Reloading a saved quantized model (``pre_quantized=True``): the convertible ``nn.Linear`` modules are swapped
  for empty `QuantDLLMLinear` layers of the config's layout before the packed tensors are loaded; the checkpoint is
  checked against the config first: every packed tensor of every layer must be present
  ([`MissingPackedTensorsError`], naming the keys and what they hold — an empty layer would compute zeros and the
  model would generate one token id forever) and have the shape the config implies (a mismatch names the module and
  both layouts); a checkpoint file that cannot be read raises ``OSError`` naming it.
- ``from_pretrained(full_precision_id, quantization_config=QuantDLLMConfig(dataset=..., tokenizer=...))``
  quantizes after loading, with the calibration data the config names.
- ``model.dequantize()`` puts dense ``nn.Linear`` layers back.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from safetensors import safe_open
from torch import nn
from transformers.quantizers import HfQuantizer, register_quantization_config, register_quantizer
from transformers.quantizers.auto import AUTO_QUANTIZATION_CONFIG_MAPPING, AUTO_QUANTIZER_MAPPING

from .configuration import QUANT_METHOD, QuantDLLMConfig
from .packed_linear import QuantDLLMLinear
from .quantizer import QuantDLLMQuantizer, replace_with_quant_dllm_linear, set_submodule

METADATA_KEY = "quant_dllm"


# what each stored tensor of a QuantDLLMLinear holds (packed_linear.py), for error messages
PACKED_TENSORS = {
    "weight": "the packed sign planes B_k (`signs`)",
    "row_scale": "the row scales α_r",
    "col_scale": "the column scales α_c",
    "block_orders": "the block orders K_g",
    "bias": "the bias",
}


class MissingPackedTensorsError(ValueError):
    """A Quant-dLLM checkpoint lacks packed tensors its quantization config implies. ``missing_keys`` lists them,
    ``files`` names the checkpoint files."""

    def __init__(self, message: str, missing_keys: list[str], files: list[str]) -> None:
        super().__init__(message)
        self.missing_keys = missing_keys
        self.files = files


def _checkpoint_shapes(files: list[str]) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    shapes, metadata = {}, {}
    for path in files:
        if not str(path).endswith(".safetensors"):
            continue
        try:
            with safe_open(path, framework="pt") as handle:
                metadata.update(handle.metadata() or {})
                for key in handle.keys():
                    shapes[key] = tuple(handle.get_slice(key).get_shape())
        except Exception as error:  # safetensors' SafetensorError subclasses Exception only
            raise OSError(f"Cannot read the Quant-dLLM checkpoint file {str(path)!r}: {error}. The file is truncated "
                          "or is not a safetensors file; download or save it again.") from error
    return shapes, metadata


def _checkpoint_key(model: nn.Module, key: str, shapes: dict[str, tuple[int, ...]]) -> str | None:
    """The checkpoint's name of the model's ``key``: as is, or with the base-model prefix added or removed (a head
    model loaded from a trunk checkpoint, or the reverse, as transformers does); ``None`` when absent."""
    if key in shapes:
        return key
    prefix = getattr(model, "base_model_prefix", "") or ""
    if prefix:
        if f"{prefix}.{key}" in shapes:
            return f"{prefix}.{key}"
        if key.startswith(prefix + ".") and key[len(prefix) + 1:] in shapes:
            return key[len(prefix) + 1:]
    return None


def check_packed_tensors_present(model: nn.Module, files: list[str],
                                 shapes: dict[str, tuple[int, ...]] | None = None) -> None:
    """Raise [`MissingPackedTensorsError`] when a `QuantDLLMLinear` of ``model`` has a stored tensor (signs, row or
    column scales, block orders, bias) that the checkpoint ``files`` lack. Only safetensors checkpoints are checked
    (their headers list the keys without reading tensors); other formats are left to the loader's own report."""
    files = [str(path) for path in files]
    if not files or not all(path.endswith(".safetensors") for path in files):
        return
    if shapes is None:
        shapes = _checkpoint_shapes(files)[0]
    missing = []
    for name, module in model.named_modules():
        if not isinstance(module, QuantDLLMLinear):
            continue
        for tensor_name in PACKED_TENSORS:
            if tensor_name == "bias" and module.bias is None:
                continue
            if _checkpoint_key(model, f"{name}.{tensor_name}", shapes) is None:
                missing.append(f"{name}.{tensor_name}")
    if not missing:
        return
    kinds = sorted({key.rpartition(".")[2] for key in missing}, key=list(PACKED_TENSORS).index)
    shown = ", ".join(missing[:20]) + (f", … and {len(missing) - 20} more" if len(missing) > 20 else "")
    where = files[0] if len(files) == 1 else f"{len(files)} files in {os.path.dirname(files[0])}"
    raise MissingPackedTensorsError(
        f"The Quant-dLLM checkpoint {where!r} lacks {len(missing)} packed tensor(s) that its quantization config "
        f"implies — {'; '.join(f'`{kind}`: {PACKED_TENSORS[kind]}' for kind in kinds)}: {shown}. Loading it would "
        "leave those layers empty (the model would generate the same token id everywhere); the checkpoint is "
        "incomplete: save it again from the quantized model.", missing, files)


def check_checkpoint_layout(model: nn.Module, config: QuantDLLMConfig, files: list[str]) -> None:
    """Raise when a checkpoint does not hold what its quantization config implies: a packed tensor missing
    ([`MissingPackedTensorsError`], a `ValueError`), or packed tensors whose shapes differ (e.g. a config edited to
    another ``bits`` or ``block_size``; `ValueError`). An unreadable checkpoint file raises ``OSError`` naming it."""
    shapes, metadata = _checkpoint_shapes(files)
    if METADATA_KEY in metadata:
        saved = json.loads(metadata[METADATA_KEY])
        if saved != config.storage_layout():
            raise ValueError(f"This checkpoint was quantized with {saved} but its quantization config says "
                             f"{config.storage_layout()}; the config does not match the weights.")
    for name, module in model.named_modules():
        if not isinstance(module, QuantDLLMLinear):
            continue
        for key in ("weight", "row_scale", "col_scale", "block_orders"):
            full = _checkpoint_key(model, f"{name}.{key}", shapes)
            expected = tuple(getattr(module, key).shape)
            if full is not None and shapes[full] != expected:
                raise ValueError(f"Checkpoint tensor {full!r} has shape {shapes[full]}, but "
                                 f"QuantDLLMConfig(bits={config.bits}, block_size={config.block_size}) implies "
                                 f"{expected} for a {module.in_features}→{module.out_features} layer: the config "
                                 "does not match the weights.")
    check_packed_tensors_present(model, files, shapes)


class QuantDLLMHfQuantizer(HfQuantizer):
    """Quant-dLLM (2-bit K-order row-column binarization for diffusion LLMs) inside ``from_pretrained``."""

    requires_calibration = False
    quantization_config: QuantDLLMConfig

    def __init__(self, quantization_config: QuantDLLMConfig, **kwargs: Any) -> None:
        if isinstance(quantization_config, dict):
            quantization_config = QuantDLLMConfig.from_dict(quantization_config)
        super().__init__(quantization_config, **kwargs)

    def validate_environment(self, *args: Any, **kwargs: Any) -> None:
        if not self.pre_quantized and self.quantization_config.needs_statistics \
                and self.quantization_config.dataset is None:
            raise ValueError("Quantizing at load time needs calibration data: set `QuantDLLMConfig(dataset=..., "
                             "tokenizer=...)` (or use `use_dor=False, abmp_fraction=0` for data-free binarization).")

    def _process_model_before_weight_loading(self, model: nn.Module, checkpoint_files: list[str] | None = None,
                                             **kwargs: Any) -> None:
        if not self.pre_quantized:
            return
        replace_with_quant_dllm_linear(model, self.quantization_config)
        if checkpoint_files:
            check_checkpoint_layout(model, self.quantization_config, list(checkpoint_files))

    def _process_model_after_weight_loading(self, model: nn.Module, **kwargs: Any) -> nn.Module:
        if not self.pre_quantized:
            QuantDLLMQuantizer(self.quantization_config).quantize_model(model)
            return model
        for module in model.modules():
            if isinstance(module, QuantDLLMLinear):
                module.layout()  # block orders consistent with the config
                module.row_scale.data = module.row_scale.data.half()
                module.col_scale.data = module.col_scale.data.half()
        return model

    def get_state_dict_and_metadata(self, model: nn.Module) -> tuple[None, dict[str, str]]:
        return None, {METADATA_KEY: json.dumps(self.quantization_config.storage_layout())}

    def _dequantize(self, model: nn.Module, dtype: torch.dtype | None = None) -> nn.Module:
        for name, module in list(model.named_modules()):
            if not isinstance(module, QuantDLLMLinear):
                continue
            weight = module.dequantize(torch.float32)
            target = dtype if isinstance(dtype, torch.dtype) else (
                module.bias.dtype if module.bias is not None else torch.float32)
            dense = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None,
                              device=weight.device, dtype=target)
            dense.weight.data.copy_(weight.to(target))
            if module.bias is not None:
                dense.bias.data.copy_(module.bias.to(target))
            set_submodule(model, name, dense)
        return model

    def is_serializable(self, **kwargs: Any) -> bool:
        return True

    @property
    def is_trainable(self) -> bool:
        return False


_registered = False


def register() -> None:
    """Register the config and the quantizer with transformers (once; the registries reject a second call)."""
    global _registered
    if _registered:
        return
    if QUANT_METHOD not in AUTO_QUANTIZATION_CONFIG_MAPPING:
        register_quantization_config(QUANT_METHOD)(QuantDLLMConfig)
    if QUANT_METHOD not in AUTO_QUANTIZER_MAPPING:
        register_quantizer(QUANT_METHOD)(QuantDLLMHfQuantizer)
    _registered = True


__all__ = ["MissingPackedTensorsError", "PACKED_TENSORS", "QuantDLLMHfQuantizer", "check_checkpoint_layout",
           "check_packed_tensors_present", "register"]
