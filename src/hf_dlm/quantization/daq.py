"""Data-aware Any-order Quantizer (DAQ), Algorithm 2 of Quant-dLLM (arXiv:2510.03274).

Pure tensor functions. Every function works on a batch of blocks: weights have shape ``(G, n, b)`` (G column
blocks of n rows × b columns), row scales ``(G, n)``, column scales ``(G, b)``, signs ``(G, n, b)`` in {−1, +1}.
A K-order binarization of a block is ``Ŵ = Σ_k (α_r,k α_c,kᵀ) ⊙ B_k``; its error is weighted by the importance
mask Λ: ``L_Λ = ‖Λ ⊙ (W − Ŵ)‖²_F`` (the data-aware objective reformulation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

EPS = 1e-12


def sign(x: torch.Tensor) -> torch.Tensor:
    """sign(x) with sign(0) = +1, as the seed defines it."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def binary_rc_init(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``binary_rc_init`` of Algorithm 2: α_r = (1/m)|X|1_m, α_c = (1/n)|X|ᵀ diag(α_r)⁻¹ 1_n, B = sign(X).

    ``x``: (G, n, m) → α_r (G, n), α_c (G, m), B (G, n, m). A zero row gets α_r = 0 and is skipped in α_c's mean
    denominator guard (divided by ``EPS`` instead of 0)."""
    magnitude = x.abs()
    row = magnitude.mean(dim=-1)
    col = (magnitude / row.clamp_min(EPS).unsqueeze(-1)).mean(dim=-2)
    return row, col, sign(x)


def binary_row_init(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row-wise sign binarization (the round-to-nearest baseline): α_r = mean |X| per row, α_c = 1, B = sign(X)."""
    return x.abs().mean(dim=-1), torch.ones_like(x[..., 0, :]), sign(x)


def update_row_scale(x: torch.Tensor, signs: torch.Tensor, col_scale: torch.Tensor, weight2: torch.Tensor,
                     eps: float = EPS) -> torch.Tensor:
    """``update_αr``: u = (Λ² ⊙ X ⊙ B) α_c, v = Λ² (α_c ⊙ α_c) + ε, α_r = u ⊘ v.

    For fixed B and α_c this is the weighted least-squares optimum of ``Σ_j Λ²_ij (X_ij − α_r,i α_c,j B_ij)²``
    (B² = 1), up to ε."""
    u = torch.einsum("gnm,gm->gn", weight2 * x * signs, col_scale)
    v = torch.einsum("gnm,gm->gn", weight2, col_scale * col_scale) + eps
    return u / v


def update_col_scale(x: torch.Tensor, signs: torch.Tensor, row_scale: torch.Tensor, weight2: torch.Tensor,
                     eps: float = EPS) -> torch.Tensor:
    """``update_αc``: u = (Λ² ⊙ X ⊙ B)ᵀ α_r, v = (Λ²)ᵀ (α_r ⊙ α_r) + ε, α_c = u ⊘ v."""
    u = torch.einsum("gnm,gn->gm", weight2 * x * signs, row_scale)
    v = torch.einsum("gnm,gn->gm", weight2, row_scale * row_scale) + eps
    return u / v


def sign_patterns(order: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
                  ) -> torch.Tensor:
    """All 2^K sign vectors, shape (2^K, K)."""
    codes = torch.arange(2 ** order, device=device).unsqueeze(-1)
    bits = (codes >> torch.arange(order, device=device)) & 1
    return (bits * 2 - 1).to(dtype)


def update_signs(w: torch.Tensor, row_scales: torch.Tensor, col_scales: torch.Tensor,
                 max_elements: int = 1 << 25) -> torch.Tensor:
    """``update_B``: for every weight, the sign pattern b ∈ {±1}^K minimising (W_ij − Σ_k s_k b_k)² with
    s_k = α_r,k,i α_c,k,j — an exhaustive search over the 2^K patterns (Algorithm 2, ``search``).

    ``w``: (G, n, m); ``row_scales``: (G, K, n); ``col_scales``: (G, K, m) → signs (G, K, n, m). Blocks are
    processed in chunks so that at most ``max_elements`` candidate values are alive at once."""
    groups, order, rows = row_scales.shape
    patterns = sign_patterns(order, w.dtype, w.device)  # (P, K)
    per_group = (2 ** order) * rows * w.shape[-1]
    chunk = max(1, max_elements // max(per_group, 1))
    out = torch.empty(groups, order, rows, w.shape[-1], dtype=w.dtype, device=w.device)
    for start in range(0, groups, chunk):
        sl = slice(start, start + chunk)
        scale = row_scales[sl].unsqueeze(-1) * col_scales[sl].unsqueeze(-2)  # (g, K, n, m)
        values = torch.einsum("pk,gknm->gpnm", patterns, scale)
        best = (w[sl].unsqueeze(1) - values).square().argmin(dim=1)  # (g, n, m)
        out[sl] = patterns[best].permute(0, 3, 1, 2)
    return out


def reconstruct(row_scales: torch.Tensor, col_scales: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
    """Ŵ = Σ_k (α_r,k α_c,kᵀ) ⊙ B_k for (G, K, ·) factors → (G, n, m)."""
    return torch.einsum("gkn,gkm,gknm->gnm", row_scales, col_scales, signs)


def daq_objective(w: torch.Tensor, w_hat: torch.Tensor, weight2: torch.Tensor) -> torch.Tensor:
    """L_Λ = ‖Λ ⊙ (W − Ŵ)‖²_F per block (``weight2`` = Λ²)."""
    return (weight2 * (w - w_hat).square()).sum(dim=(-2, -1))


@dataclass
class DAQResult:
    """K-order factors of a batch of blocks and the objective after initialisation and after each RSR round."""

    row_scales: torch.Tensor  # (G, K, n)   α_r,k
    col_scales: torch.Tensor  # (G, K, m)   α_c,k
    signs: torch.Tensor  # (G, K, n, m) B_k in {−1, +1}
    objective: list[torch.Tensor] = field(default_factory=list)  # each (G,)

    def reconstruct(self) -> torch.Tensor:
        return reconstruct(self.row_scales, self.col_scales, self.signs)


def daq(w: torch.Tensor, order: int, iterations: int, importance_mask: torch.Tensor | None = None,
        scale_axes: str = "row_column", eps: float = EPS) -> DAQResult:
    """Algorithm 2 (DAQ) on a batch of blocks ``w`` (G, n, m) with K = ``order`` and T = ``iterations``.

    Lines 2-8: residual initialisation, ``binary_rc_init`` of R = W − Ŵ for k = 1 … K. Lines 9-19: T rounds; in
    each, for every order k the residual target R^(k) = W − Σ_{q≠k} S^(q) ⊙ B^(q) gets ``update_αr`` then
    ``update_αc`` under Λ (row-column successive re-scaling), then all signs are re-chosen by ``update_B``.
    ``importance_mask`` is Λ (None: Λ = 1). ``scale_axes="row"`` keeps α_c = 1 (row-wise baseline)."""
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"`order` must be an integer ≥ 1, got {order!r}.")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"`iterations` must be an integer ≥ 0, got {iterations!r}.")
    if scale_axes not in ("row_column", "row"):
        raise ValueError(f"`scale_axes` must be 'row_column' or 'row', got {scale_axes!r}.")
    if not isinstance(w, torch.Tensor) or w.ndim != 3 or not w.dtype.is_floating_point:
        raise ValueError(f"`w` must be a floating (G, n, m) batch of blocks, got "
                         f"{tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__}.")
    if not torch.isfinite(w).all():
        raise ValueError(f"`w` holds {int((~torch.isfinite(w)).sum())} NaN/inf weights; DAQ needs finite weights.")
    if importance_mask is not None and (importance_mask.shape != w.shape or not torch.isfinite(importance_mask).all()
                                        or (importance_mask < 0).any()):
        raise ValueError(f"`importance_mask` (Λ) must be a finite, non-negative tensor of the blocks' shape "
                         f"{tuple(w.shape)}, got shape {tuple(importance_mask.shape)}.")
    row_only = scale_axes == "row"
    init = binary_row_init if row_only else binary_rc_init
    weight2 = torch.ones_like(w) if importance_mask is None else importance_mask.to(w.dtype).square()
    rows, cols, signs = [], [], []
    w_hat = torch.zeros_like(w)
    for _ in range(order):
        r, c, b = init(w - w_hat)
        rows.append(r)
        cols.append(c)
        signs.append(b)
        w_hat = w_hat + r.unsqueeze(-1) * c.unsqueeze(-2) * b
    result = DAQResult(torch.stack(rows, 1), torch.stack(cols, 1), torch.stack(signs, 1))
    result.objective.append(daq_objective(w, w_hat, weight2))
    for _ in range(iterations):
        for k in range(order):
            terms = result.row_scales.unsqueeze(-1) * result.col_scales.unsqueeze(-2) * result.signs
            target = w - (terms.sum(1) - terms[:, k])
            b_k = result.signs[:, k]
            result.row_scales[:, k] = update_row_scale(target, b_k, result.col_scales[:, k], weight2, eps)
            if not row_only:
                result.col_scales[:, k] = update_col_scale(target, b_k, result.row_scales[:, k], weight2, eps)
        result.signs = update_signs(w, result.row_scales, result.col_scales)
        result.objective.append(daq_objective(w, result.reconstruct(), weight2))
    return result


__all__ = ["DAQResult", "binary_rc_init", "binary_row_init", "daq", "daq_objective", "reconstruct", "sign",
           "sign_patterns", "update_col_scale", "update_row_scale", "update_signs"]
