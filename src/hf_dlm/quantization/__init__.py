"""Quant-dLLM (arXiv:2510.03274): 2-bit post-training quantization for diffusion LLMs.

Public surface: `QuantDLLMConfig` (registered as ``quant_method="quant_dllm"``), `QuantDLLMQuantizer`
(``quantize_model``), `QuantDLLMLinear` (packed storage + forward), `quantization_report`, and the calibration
helper `masked_calibration_simulation` (Algorithm 1). The maths lives in ``daq.py`` (Algorithm 2) and
``importance.py`` (DOR importance, Algorithm 3).
"""

from .calibration import calibration_sequences, masked_calibration_simulation
from .configuration import QuantDLLMConfig
from .hf_quantizer import QuantDLLMHfQuantizer, register
from .packed_linear import QuantDLLMLinear, quantization_report
from .quantizer import QuantDLLMQuantizer
from .weight_quantizer import quantize_weight

__all__ = ["QuantDLLMConfig", "QuantDLLMHfQuantizer", "QuantDLLMLinear", "QuantDLLMQuantizer",
           "calibration_sequences", "masked_calibration_simulation", "quantization_report", "quantize_weight",
           "register"]
