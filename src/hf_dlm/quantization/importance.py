"""Weight importance from calibration statistics and the mixed-precision allocation it drives (seed 001).

- Data-aware objective reformulation (DOR): Z = (W D⁻¹) ⊙ (W D⁻¹) with D = diag((S_MCS + γI)⁻¹), the standardised
  Z̃ = (Z − μ) ⊘ σ and the importance mask Λ = 1 + (λ − 1)·𝟙(|Z̃| > 3) (``build_importance_mask``).
- Adaptive Blockwise Mixed Precision (ABMP, Algorithm 3): block scores s_g = Σ_{(i,j)∈g} Z_ij; the top ⌊f·|𝒢|⌋
  blocks get the highest order, the bottom ⌊f·|𝒢|⌋ the lowest, the rest the middle one.
"""

from __future__ import annotations

import math

import torch


def block_bounds(in_features: int, block_size: int) -> list[tuple[int, int]]:
    """Column ranges of the partition 𝒢: full blocks of ``block_size`` and, when the width is not a multiple, one
    shorter last block (the documented padding rule: it always gets the middle order)."""
    return [(start, min(start + block_size, in_features)) for start in range(0, in_features, block_size)]


def inverse_hessian_diagonal(statistics: torch.Tensor, damping: float) -> torch.Tensor:
    """diag((S + γI)⁻¹) with γ = ``damping`` · mean(diag S); dead inputs (S_jj = 0) get S_jj = 1 first, as GPTQ
    does, so the inverse exists. Computed in float64 through a Cholesky factorisation."""
    s = statistics.to(torch.float64).clone()
    diag = torch.diagonal(s)
    dead = diag == 0
    diag[dead] = 1.0
    gamma = damping * diag.mean()
    diag += gamma
    chol = torch.linalg.cholesky(s)
    return torch.diagonal(torch.cholesky_inverse(chol))


def importance_matrix(weight: torch.Tensor, statistics: torch.Tensor, damping: float) -> torch.Tensor:
    """Z = (W D⁻¹) ⊙ (W D⁻¹), D = diag((S_MCS + γI)⁻¹): column j of W is divided by D_jj. Shape of ``weight``."""
    d = inverse_hessian_diagonal(statistics, damping).to(weight.device)
    return (weight.to(torch.float64) / d).square().to(torch.float32)


def build_importance_mask(importance: torch.Tensor, factor: float, sigma: float = 3.0) -> torch.Tensor:
    """``build_importance_mask(Z, λ)``: Λ = 1 + (λ − 1)·𝟙(|Z − μ| > 3σ) with μ, σ the mean and standard deviation
    of Z over the whole matrix."""
    z = importance.to(torch.float64)
    outliers = (z - z.mean()).abs() > sigma * z.std(unbiased=False)
    return 1.0 + (factor - 1.0) * outliers.to(importance.dtype)


def abmp_orders(importance: torch.Tensor | None, bounds: list[tuple[int, int]], block_size: int, bits: int,
                orders: tuple[int, ...], fraction: float) -> list[int]:
    """Algorithm 3: the binary order of each block. Only full-width blocks are ranked; with k = ⌊f·|𝒢_full|⌋ the
    top-k by s_g get ``orders[-1]``, the bottom-k ``orders[0]``, everything else ``bits`` — so the mean order is
    exactly ``bits`` (orders are evenly spaced around it, see `QuantDLLMConfig`)."""
    result = [bits] * len(bounds)
    full = [g for g, (start, end) in enumerate(bounds) if end - start == block_size]
    k = math.floor(fraction * len(full))
    if importance is None or k == 0:
        return result
    scores = torch.stack([importance[:, bounds[g][0]:bounds[g][1]].to(torch.float64).sum() for g in full])
    ranked = [full[i] for i in torch.argsort(scores, descending=True, stable=True).tolist()]
    for g in ranked[:k]:
        result[g] = orders[-1]
    for g in ranked[-k:]:
        result[g] = orders[0]
    return result


__all__ = ["abmp_orders", "block_bounds", "build_importance_mask", "importance_matrix", "inverse_hessian_diagonal"]
