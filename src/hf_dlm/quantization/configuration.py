"""`QuantDLLMConfig`: the knobs of Quant-dLLM (arXiv:2510.03274) as a transformers quantization config.

Registered as ``quant_method="quant_dllm"`` (see ``quantization/__init__.py``), so a quantized checkpoint's
``config.json`` round-trips through ``from_pretrained`` and a full-precision model can be quantized at load time by
passing this config with a calibration ``dataset``.
"""

from __future__ import annotations

import copy
import math
import numbers
import os
from typing import Any

import torch
from transformers.utils.quantization_config import QuantizationConfigMixin

QUANT_METHOD = "quant_dllm"
VISIBILITY_SCHEDULES = ("linear", "cosine")
SCALE_AXES = ("row_column", "row")
KERNELS = ("auto", "torch", "triton", "cpu")
MAX_ORDER = 8


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _is_int(value: Any) -> bool:
    """A Python or NumPy integer that is not a bool (``True`` is not a bit width)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_finite_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


class QuantDLLMConfig(QuantizationConfigMixin):
    """Configuration of Quant-dLLM post-training quantization.

    Weights become ``Ŵ = Σ_k (α_r,k α_c,kᵀ) ⊙ B_k`` per column block (the paper's K-order row-column binarization);
    a block of order ``K`` stores ``K`` sign bits per weight plus fp16 scales.

    Args:
        bits (`int`, defaults to 2): the average number of sign planes (binary orders) per weight — the
            "2-bit" of the paper. It must be the middle of ``orders`` when ABMP is on.
        orders (`tuple[int, ...]`, defaults to ``(1, 2, 3)``): the binary orders ABMP may assign (Algorithm 3).
            With ``abmp_fraction > 0`` they must be three evenly spaced orders ``(bits-d, bits, bits+d)`` so that
            equal top/bottom counts average exactly ``bits``.
        abmp_fraction (`float`, defaults to 0.05): ABMP's share of column blocks per layer promoted to the highest
            order (top ``⌊f·|G|⌋`` by ``s_g = Σ_{(i,j)∈g} Z_ij``) and demoted to the lowest (bottom ``⌊f·|G|⌋``).
            0 disables ABMP (every block gets ``bits``).
        block_size (`int`, defaults to 128): columns per block of the partition 𝒢. A layer whose width is not a
            multiple keeps a shorter last block, which always gets the middle order and takes no part in the ABMP
            ranking — so the average stays exactly ``bits``.
        importance_factor (`float`, defaults to 2.0): λ > 1 of the importance mask Λ = 1 + (λ−1)·𝟙(|Z̃| > σ_out).
            The seed does not publish its value.
        outlier_sigma (`float`, defaults to 3.0): the "3σ" threshold of ``build_importance_mask``.
        damping (`float`, defaults to 0.01): γ of D = diag((S_MCS + γI)⁻¹), relative to the mean diagonal of
            S_MCS (as GPTQ's ``percdamp``), so it is scale-free.
        rsr_iterations (`int`, defaults to 15): T, rounds of row-column successive re-scaling + ``update_B``
            (Algorithm 2, lines 9-19). 0 keeps the residual initialisation only (the "baseline" of Table 2c).
        use_dor (`bool`, defaults to `True`): data-aware objective reformulation — weight the error by Λ built
            from Z. `False` uses Λ = 1 (the "RSR w/o DOR" ablation).
        scale_axes (`str`, defaults to ``"row_column"``): ``"row_column"`` for α_r α_cᵀ (the paper);
            ``"row"`` fixes α_c = 1 (per-row scales: the round-to-nearest sign binarization baseline).
        use_mcs (`bool`, defaults to `True`): calibrate on Masked Calibration Simulation inputs (Algorithm 1);
            `False` calibrates on the plain sequences (the "MCS ✗" ablation).
        num_calibration_sequences (`int`, defaults to 128): sequences drawn from the calibration data.
        calibration_seq_len (`int`, defaults to 512): tokens per calibration sequence.
        mcs_timesteps (`int`, defaults to 4): T of Algorithm 1 — masked copies per sequence, t = 1 … T.
        prefix_ratio (`float`, defaults to 0.25): γ of Algorithm 1; the first ⌊γ·L⌋ tokens stay visible.
        visibility_schedule (`str`, defaults to ``"linear"``): α(t), the visible fraction at step t:
            ``"linear"`` α(t) = 1 − t/T, ``"cosine"`` α(t) = cos(π/2 · t/T).
        calibration_batch_size (`int`, defaults to 8): sequences per forward pass during calibration.
        mask_token_id (`int`, *optional*): the [MASK] id; read from the model when omitted.
        dataset (`list[str] | list[list[int]] | str`, *optional*): calibration data for quantizing at load time
            (``from_pretrained(..., quantization_config=QuantDLLMConfig(dataset=..., tokenizer=...))``): texts,
            token-id lists, or the path of a UTF-8 text file.
        tokenizer (`str`, *optional*): name or path of the tokenizer that encodes a text ``dataset``.
        modules_to_not_convert (`list[str]`, *optional*): full module names (or dotted suffixes) kept in full
            precision. Default: the input embeddings and the output head, found by identity — which matters for
            LLaDA, whose head and MLP down-projections are all called ``ff_out``: give ``model.transformer.ff_out``,
            not ``ff_out``, to skip only the head. The resolved list is written back at quantization time.
        kernel (`str`, defaults to ``"auto"``): ``"triton"`` uses the GPU kernel, ``"cpu"`` the compiled CPU
            kernels (lookup table / tiled GEMM over the packed bits, built on first use), ``"torch"`` the reference
            path, ``"auto"`` the Triton kernel on CUDA when Triton imports and the compiled kernels on CPU when they
            build (else the torch path, logged). See `QuantDLLMLinear`.
        seed (`int`, defaults to 0): seeds calibration sampling and MCS masks.
    """

    def __init__(self, bits: int = 2, orders: tuple[int, ...] | list[int] = (1, 2, 3), abmp_fraction: float = 0.05,
                 block_size: int = 128, importance_factor: float = 2.0, outlier_sigma: float = 3.0,
                 damping: float = 0.01, rsr_iterations: int = 15, use_dor: bool = True,
                 scale_axes: str = "row_column", use_mcs: bool = True, num_calibration_sequences: int = 128,
                 calibration_seq_len: int = 512, mcs_timesteps: int = 4, prefix_ratio: float = 0.25,
                 visibility_schedule: str = "linear", calibration_batch_size: int = 8,
                 mask_token_id: int | None = None, dataset: list | str | None = None, tokenizer: Any = None,
                 modules_to_not_convert: list[str] | None = None, kernel: str = "auto", seed: int = 0,
                 **kwargs: Any) -> None:
        quant_method = kwargs.pop("quant_method", QUANT_METHOD)
        _check(quant_method == QUANT_METHOD, f"`quant_method` must be {QUANT_METHOD!r}, got {quant_method!r}.")
        if kwargs:
            raise TypeError(f"QuantDLLMConfig got unexpected arguments {sorted(kwargs)}.")
        self.quant_method = QUANT_METHOD
        self.bits = bits
        self.orders = tuple(orders) if isinstance(orders, (list, tuple)) else orders
        self.abmp_fraction = abmp_fraction
        self.block_size = block_size
        self.importance_factor = importance_factor
        self.outlier_sigma = outlier_sigma
        self.damping = damping
        self.rsr_iterations = rsr_iterations
        self.use_dor = use_dor
        self.scale_axes = scale_axes
        self.use_mcs = use_mcs
        self.num_calibration_sequences = num_calibration_sequences
        self.calibration_seq_len = calibration_seq_len
        self.mcs_timesteps = mcs_timesteps
        self.prefix_ratio = prefix_ratio
        self.visibility_schedule = visibility_schedule
        self.calibration_batch_size = calibration_batch_size
        self.mask_token_id = mask_token_id
        self.dataset = dataset
        self.tokenizer = tokenizer
        # a bare string is refused by `post_init`, not split into characters
        self.modules_to_not_convert = (list(modules_to_not_convert) if isinstance(modules_to_not_convert, (list, tuple))
                                       else modules_to_not_convert)
        self.kernel = kernel
        self.seed = seed
        self.post_init()

    def post_init(self) -> None:
        """Validate every field (clear `ValueError` naming the field, the value and what is allowed).

        Called by ``__init__`` and again by `QuantDLLMQuantizer.quantize_model`, so a field edited after
        construction is checked too. Booleans are not accepted where integers are (``bits=True`` is refused), nor
        floats where integers are (``orders=(1.5, 2, 3)`` is refused, not truncated), nor NaN or infinite values."""
        _check(_is_int(self.bits) and 1 <= self.bits <= MAX_ORDER,
               f"`bits` must be an integer in [1, {MAX_ORDER}], got {self.bits!r}.")
        orders = self.orders
        _check(isinstance(orders, tuple) and len(orders) >= 1 and all(_is_int(o) for o in orders)
               and all(1 <= o <= MAX_ORDER for o in orders) and list(orders) == sorted(set(orders)),
               f"`orders` must be distinct increasing integers in [1, {MAX_ORDER}], got {orders!r}.")
        self.orders = orders = tuple(int(o) for o in orders)
        _check(_is_finite_real(self.abmp_fraction) and 0.0 <= self.abmp_fraction < 0.5,
               f"`abmp_fraction` must be a number in [0, 0.5), got {self.abmp_fraction!r}.")
        if self.abmp_fraction > 0:
            _check(len(orders) == 3 and orders[1] == self.bits and orders[2] - orders[1] == orders[1] - orders[0],
                   f"`orders` {orders!r} cannot average `bits`={self.bits} under ABMP: it needs three evenly spaced "
                   f"orders with `bits` in the middle, e.g. ({self.bits - 1}, {self.bits}, {self.bits + 1}), "
                   "or `abmp_fraction=0`.")
        else:
            _check(self.bits in orders, f"`bits`={self.bits} must be one of `orders` {orders!r} when ABMP is off.")
        _check(_is_int(self.block_size) and self.block_size >= 1,
               f"`block_size` must be a positive integer, got {self.block_size!r}.")
        _check(_is_finite_real(self.importance_factor) and self.importance_factor >= 1.0,
               f"`importance_factor` (λ) must be a finite number ≥ 1, got {self.importance_factor!r}.")
        _check(_is_finite_real(self.outlier_sigma) and self.outlier_sigma > 0,
               f"`outlier_sigma` must be a finite number > 0, got {self.outlier_sigma!r}.")
        _check(_is_finite_real(self.damping) and self.damping > 0,
               f"`damping` (γ) must be a finite number > 0, got {self.damping!r}.")
        _check(_is_int(self.rsr_iterations) and self.rsr_iterations >= 0,
               f"`rsr_iterations` must be a non-negative integer, got {self.rsr_iterations!r}.")
        for name in ("use_dor", "use_mcs"):
            value = getattr(self, name)
            _check(isinstance(value, bool), f"`{name}` must be True or False, got {value!r}.")
        _check(self.scale_axes in SCALE_AXES, f"`scale_axes` must be one of {SCALE_AXES}, got {self.scale_axes!r}.")
        for name in ("num_calibration_sequences", "calibration_seq_len", "mcs_timesteps", "calibration_batch_size"):
            value = getattr(self, name)
            _check(_is_int(value) and value >= 1, f"`{name}` must be a positive integer, got {value!r}.")
        _check(_is_finite_real(self.prefix_ratio) and 0.0 <= self.prefix_ratio < 1.0,
               f"`prefix_ratio` (γ) must be a number in [0, 1), got {self.prefix_ratio!r}.")
        _check(self.visibility_schedule in VISIBILITY_SCHEDULES,
               f"`visibility_schedule` must be one of {VISIBILITY_SCHEDULES}, got {self.visibility_schedule!r}.")
        _check(self.mask_token_id is None or (_is_int(self.mask_token_id) and self.mask_token_id >= 0),
               f"`mask_token_id` must be None or an integer >= 0, got {self.mask_token_id!r}.")
        dataset = self.dataset
        _check(dataset is None or isinstance(dataset, (str, os.PathLike, list, tuple))
               or isinstance(dataset, torch.Tensor),
               f"`dataset` must be None, a list of texts or token-id lists, a 2-D id tensor or a text-file path, "
               f"got {type(dataset).__name__}.")
        _check(not isinstance(dataset, (list, tuple)) or len(dataset) > 0,
               "`dataset` must not be empty: give calibration texts or token-id lists, or None.")
        skip = self.modules_to_not_convert
        _check(skip is None or (isinstance(skip, list) and all(isinstance(n, str) and n for n in skip)),
               f"`modules_to_not_convert` must be None or a list of module names, got {skip!r}.")
        _check(self.kernel in KERNELS, f"`kernel` must be one of {KERNELS}, got {self.kernel!r}.")
        _check(_is_int(self.seed), f"`seed` must be an integer, got {self.seed!r}.")

    @property
    def max_order(self) -> int:
        return max(self.orders) if self.abmp_fraction > 0 else self.bits

    @property
    def needs_statistics(self) -> bool:
        """Whether quantization reads S_MCS (through Z): the importance mask or ABMP is on."""
        return self.use_dor or self.abmp_fraction > 0

    def visibility(self, t: int) -> float:
        """α(t) of Algorithm 1 for t = 1 … T."""
        fraction = t / self.mcs_timesteps
        if self.visibility_schedule == "linear":
            return 1.0 - fraction
        return math.cos(0.5 * math.pi * fraction)

    def storage_layout(self) -> dict[str, Any]:
        """The fields that fix tensor shapes in a checkpoint (compared on reload)."""
        return {"bits": self.bits, "block_size": self.block_size, "orders": list(self.orders)}

    def to_dict(self) -> dict[str, Any]:
        out = copy.deepcopy({k: v for k, v in self.__dict__.items() if k != "tokenizer"})
        out["orders"] = list(self.orders)
        # a tokenizer object cannot live in config.json; its name or path can.
        out["tokenizer"] = self.tokenizer if isinstance(self.tokenizer, str) else None
        return out

    def to_diff_dict(self) -> dict[str, Any]:
        default = QuantDLLMConfig().to_dict()
        return {k: v for k, v in self.to_dict().items() if k == "quant_method" or default.get(k) != v}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, QuantDLLMConfig) and self.to_dict() == other.to_dict()

    __hash__ = None  # mutable


__all__ = ["QuantDLLMConfig", "QUANT_METHOD"]
