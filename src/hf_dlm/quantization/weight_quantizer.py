"""One weight matrix through Quant-dLLM: importance (DOR) → block orders (ABMP) → DAQ per block → packed layer."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .configuration import QuantDLLMConfig
from .daq import daq
from .importance import abmp_orders, block_bounds, build_importance_mask, check_statistics, importance_matrix
from .packed_linear import QuantDLLMLinear


#: Weights per DAQ batch: 2²² (16 MiB of float32 per (G, n, m) tensor; DAQ holds about ten of them, K of them signs).
DAQ_BATCH_ELEMENTS = 1 << 22


@dataclass
class WeightQuantization:
    """A quantized layer and what it took: per-block orders, the weight-space objective L_Λ before/after RSR and
    the data-aware error Tr(R S Rᵀ) (when statistics were given)."""

    layer: QuantDLLMLinear
    block_orders: list[int]
    objective_init: float
    objective_final: float
    output_error: float | None
    outlier_fraction: float


def output_error_of(residual: torch.Tensor, statistics: torch.Tensor, rows_per_chunk: int = 1024) -> float:
    """Tr(R S Rᵀ) = Σ_b ‖R x_b‖² for the residual R = W − Ŵ: float32 products on chunks of rows, summed in
    float64 (a float64 triple product costs ~10× more at 4096 × 4096 and changes the value by ~1e-6 relative)."""
    s = statistics.to(device=residual.device, dtype=torch.float32)
    total = 0.0
    for start in range(0, residual.shape[0], rows_per_chunk):
        part = residual[start:start + rows_per_chunk].to(torch.float32)
        total += float((part @ s).mul_(part).sum(dtype=torch.float64))
    return total


def _non_finite(tensor: torch.Tensor) -> int:
    return int((~torch.isfinite(tensor)).sum())


def quantize_weight(weight: torch.Tensor, config: QuantDLLMConfig, statistics: torch.Tensor | None = None,
                    bias: torch.Tensor | None = None, name: str = "weight") -> WeightQuantization:
    """Quantize ``weight`` (out, in) with ``config``; ``statistics`` is S_MCS = Σ XᵀX (in, in), needed when
    ``config.use_dor`` or ABMP is on. Computation in float32 on ``weight``'s device.

    Refuses up front, with a `ValueError` naming ``name`` (the layer, in messages): a weight that is not a 2-D
    floating matrix or holds NaN/inf, statistics of the wrong shape or with NaN/inf, a bias that does not match
    the output features or is not finite; a `TypeError` for a ``config`` that is not a `QuantDLLMConfig`."""
    if not isinstance(config, QuantDLLMConfig):
        raise TypeError(f"`config` must be a QuantDLLMConfig, got {type(config).__name__}.")
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2 or not weight.dtype.is_floating_point:
        raise ValueError(f"`{name}` must be a 2-D floating-point (out, in) matrix, got "
                         f"{tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__}"
                         f"{' of dtype ' + str(weight.dtype) if isinstance(weight, torch.Tensor) else ''}.")
    out_features, in_features = weight.shape
    if out_features == 0 or in_features == 0:
        raise ValueError(f"`{name}` is empty (shape {tuple(weight.shape)}): nothing to quantize.")
    if _non_finite(weight):
        raise ValueError(f"`{name}` holds {_non_finite(weight)} NaN/inf values of {weight.numel()}: Quant-dLLM needs "
                         "finite weights.")
    if bias is not None and (not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (out_features,)
                             or _non_finite(bias)):
        raise ValueError(f"the bias of `{name}` must be a finite vector of {out_features} values, got "
                         f"{tuple(bias.shape) if isinstance(bias, torch.Tensor) else type(bias).__name__}"
                         f"{' with NaN/inf' if isinstance(bias, torch.Tensor) and _non_finite(bias) else ''}.")
    if config.needs_statistics and statistics is None:
        raise ValueError("`statistics` (S_MCS) is required when `use_dor` is on or `abmp_fraction` > 0.")
    if statistics is not None:
        check_statistics(statistics, in_features, name=f"statistics of {name}")
    w = weight.detach().to(torch.float32)
    importance = importance_matrix(w, statistics, config.damping) if statistics is not None else None
    mask = (build_importance_mask(importance, config.importance_factor, config.outlier_sigma)
            if config.use_dor else None)
    bounds = block_bounds(in_features, config.block_size)
    orders = abmp_orders(importance, bounds, config.block_size, config.bits, config.orders, config.abmp_fraction)
    del importance  # only the mask and the orders are needed from here on
    factors: list = [None] * len(bounds)
    init_total, final_total = 0.0, 0.0
    # blocks of equal width and order run as one batch, at most DAQ_BATCH_ELEMENTS weights at a time (the blocks are
    # independent, so the batch size changes the memory, not the result)
    for key in sorted({(end - start, orders[g]) for g, (start, end) in enumerate(bounds)}):
        members = [g for g, (start, end) in enumerate(bounds) if (end - start, orders[g]) == key]
        per_batch = max(1, DAQ_BATCH_ELEMENTS // (out_features * key[0]))
        for first in range(0, len(members), per_batch):
            batch = members[first:first + per_batch]
            blocks = torch.stack([w[:, bounds[g][0]:bounds[g][1]] for g in batch])
            lam = (torch.stack([mask[:, bounds[g][0]:bounds[g][1]] for g in batch]) if mask is not None else None)
            result = daq(blocks, order=key[1], iterations=config.rsr_iterations, importance_mask=lam,
                         scale_axes=config.scale_axes)
            init_total += float(result.objective[0].sum())
            final_total += float(result.objective[-1].sum())
            for i, g in enumerate(batch):
                # signs kept as bool (1 byte, not 4) until packing; the batch's float tensors are freed
                factors[g] = (result.row_scales[i].clone(), result.col_scales[i].clone(), result.signs[i] > 0)
            del blocks, lam, result
    layer = QuantDLLMLinear.from_factors(
        orders, [f[0] for f in factors], [f[1] for f in factors], [f[2] for f in factors],
        in_features=in_features, out_features=out_features, bits=config.bits, block_size=config.block_size,
        bias=bias.detach() if bias is not None else None, kernel=config.kernel)
    output_error = None
    if statistics is not None:
        output_error = output_error_of(w - layer.dequantize(torch.float32), statistics)
    outliers = float((mask > 1).float().mean()) if mask is not None else 0.0
    return WeightQuantization(layer, orders, init_total, final_total, output_error, outliers)


__all__ = ["WeightQuantization", "output_error_of", "quantize_weight"]
