"""The compiled CPU kernels of `QuantDLLMLinear` (Quant-dLLM, arXiv:2510.03274), built on first use.

``csrc/packed_linear_cpu.cpp`` (shipped in the wheel) holds the kernels that read the packed sign planes directly:
T-MAC-style lookup-table GEMV/GEMMs (arXiv:2407.00088) for few tokens, AMX tile products with exact bf16 pieces
of the scales and inputs (CPUs with AMX-BF16; Linux grants the tile state on request) and a tile-dequantize + BLAS
GEMM for many tokens (see the file's header), and DAQ's sign search for the quantizer. `cpu_kernel()` compiles it once with
``torch.utils.cpp_extension.load`` (g++, OpenMP, ``-O3 -march=native -ffp-contract=off``: no fused multiply-adds the
source does not ask for, so the sign search rounds exactly like its torch fallback) into a cache folder keyed by the
torch version and the CPU's instruction set, so a second process loads the built library in milliseconds. Where it cannot be built (no compiler, no ninja, a failed
build) it logs one warning and returns ``None``; `QuantDLLMLinear` then uses its pure-torch path, which gives the
same results. ``HF_DLM_CPU_KERNEL=0`` turns the compiled kernels off; ``HF_DLM_EXTENSIONS_DIR`` moves the cache.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import time
from pathlib import Path
from types import ModuleType

import torch
from transformers.utils import logging

logger = logging.get_logger(__name__)

SOURCE = Path(__file__).parent / "csrc" / "packed_linear_cpu.cpp"
EXTENSION_NAME = "hf_dlm_packed_linear_cpu"
ENV_SWITCH = "HF_DLM_CPU_KERNEL"
ENV_DIR = "HF_DLM_EXTENSIONS_DIR"


def _cpu_signature() -> str:
    """Machine, torch version and CPU flags: ``-march=native`` code must never be loaded on another CPU."""
    flags = ""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next((line for line in handle if line.startswith(("flags", "Features"))), "")
    except OSError:
        flags = platform.processor()
    text = f"{platform.machine()}|{torch.__version__}|{flags}"
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def build_directory() -> Path:
    """Where the extension is built and cached (``$HF_DLM_EXTENSIONS_DIR`` or ``~/.cache/hf_dlm/torch_extensions``),
    one sub-folder per torch version and CPU instruction set."""
    root = os.environ.get(ENV_DIR)
    if not root:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(cache, "hf_dlm", "torch_extensions")
    return Path(root) / f"{EXTENSION_NAME}-{_cpu_signature()}"


def cpu_kernel_enabled() -> bool:
    """False when ``HF_DLM_CPU_KERNEL`` is ``0``/``false``/``no``/``off``; other values are refused by name."""
    value = os.environ.get(ENV_SWITCH, "1").strip().lower()
    if value in ("0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on", ""):
        return True
    raise ValueError(f"`{ENV_SWITCH}` must be one of 1/true/yes/on or 0/false/no/off, got {value!r}.")


@functools.cache
def cpu_kernel() -> ModuleType | None:
    """The compiled kernels (``lut_matmul``, ``lut16_matmul``, ``amx_matmul``, ``tile_matmul``, ``sign_search``),
    or ``None`` (logged) when they cannot be built."""
    if not cpu_kernel_enabled():
        logger.info("%s=0: QuantDLLMLinear uses its pure-torch CPU path.", ENV_SWITCH)
        return None
    try:
        from torch.utils.cpp_extension import load  # start-up time: only the first packed CPU forward needs it

        folder = build_directory()
        folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        module = load(name=EXTENSION_NAME, sources=[str(SOURCE)], build_directory=str(folder),
                      extra_cflags=["-O3", "-march=native", "-ffp-contract=off", "-fopenmp"],
                      extra_ldflags=["-fopenmp"], verbose=False)
        logger.info("QuantDLLMLinear CPU kernels ready in %.1fs (%s).", time.perf_counter() - start, folder)
        return module
    except Exception as error:  # noqa: BLE001 - any build failure (no compiler, no ninja, a compile error) falls back
        logger.warning("QuantDLLMLinear could not build its compiled CPU kernels (%s: %s); it falls back to the "
                       "pure-torch path (same results, slower and with a transient dense weight per call). Set "
                       "%s=0 to skip the attempt.", type(error).__name__, str(error).strip()[-500:], ENV_SWITCH)
        return None


__all__ = ["build_directory", "cpu_kernel", "cpu_kernel_enabled"]
