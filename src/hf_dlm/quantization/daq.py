"""Data-aware Any-order Quantizer (DAQ), Algorithm 2 of Quant-dLLM (arXiv:2510.03274).

Pure tensor functions. Every function works on a batch of blocks: weights have shape ``(G, n, b)`` (G column
blocks of n rows × b columns), row scales ``(G, n)``, column scales ``(G, b)``, signs ``(G, n, b)`` in {−1, +1}.
A K-order binarization of a block is ``Ŵ = Σ_k (α_r,k α_c,kᵀ) ⊙ B_k``; its error is weighted by the importance
mask Λ: ``L_Λ = ‖Λ ⊙ (W − Ŵ)‖²_F`` (the data-aware objective reformulation).

Cost (issue 26): the RSR loop keeps Ŵ up to date term by term (one (G, n, m) temporary per order update instead of
K), Λ = 1 is never materialised, and ``update_B`` never forms the (G, 2^K, n, m) candidate tensor — a compiled
search on CPU float32 (`cpu_kernel`), a running-minimum torch search elsewhere; both pick the same signs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .cpu_kernel import cpu_kernel

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


def update_row_scale(x: torch.Tensor, signs: torch.Tensor, col_scale: torch.Tensor, weight2: torch.Tensor | None,
                     eps: float = EPS) -> torch.Tensor:
    """``update_αr``: u = (Λ² ⊙ X ⊙ B) α_c, v = Λ² (α_c ⊙ α_c) + ε, α_r = u ⊘ v.

    For fixed B and α_c this is the weighted least-squares optimum of ``Σ_j Λ²_ij (X_ij − α_r,i α_c,j B_ij)²``
    (B² = 1), up to ε. ``weight2=None`` means Λ = 1 (no (G, n, m) tensor of ones is read)."""
    xb = x * signs
    if weight2 is None:
        u = torch.bmm(xb, col_scale.unsqueeze(-1)).squeeze(-1)
        v = (col_scale * col_scale).sum(-1, keepdim=True).expand_as(u) + eps
        return u / v
    xb.mul_(weight2)
    u = torch.bmm(xb, col_scale.unsqueeze(-1)).squeeze(-1)
    v = torch.bmm(weight2, (col_scale * col_scale).unsqueeze(-1)).squeeze(-1) + eps
    return u / v


def update_col_scale(x: torch.Tensor, signs: torch.Tensor, row_scale: torch.Tensor, weight2: torch.Tensor | None,
                     eps: float = EPS) -> torch.Tensor:
    """``update_αc``: u = (Λ² ⊙ X ⊙ B)ᵀ α_r, v = (Λ²)ᵀ (α_r ⊙ α_r) + ε, α_c = u ⊘ v (``weight2=None``: Λ = 1)."""
    xb = x * signs
    if weight2 is not None:
        xb.mul_(weight2)
    u = torch.bmm(row_scale.unsqueeze(-2), xb).squeeze(-2)
    if weight2 is None:
        v = (row_scale * row_scale).sum(-1, keepdim=True).expand_as(u) + eps
    else:
        v = torch.bmm((row_scale * row_scale).unsqueeze(-2), weight2).squeeze(-2) + eps
    return u / v


def sign_patterns(order: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
                  ) -> torch.Tensor:
    """All 2^K sign vectors, shape (2^K, K)."""
    codes = torch.arange(2 ** order, device=device).unsqueeze(-1)
    bits = (codes >> torch.arange(order, device=device)) & 1
    return (bits * 2 - 1).to(dtype)


def update_signs(w: torch.Tensor, row_scales: torch.Tensor, col_scales: torch.Tensor,
                 max_elements: int = 1 << 22, use_kernel: bool | None = None) -> torch.Tensor:
    """``update_B``: for every weight, the sign pattern b ∈ {±1}^K minimising (W_ij − Σ_k s_k b_k)² with
    s_k = α_r,k,i α_c,k,j — an exhaustive search over the 2^K patterns (Algorithm 2, ``search``); ties go to the
    first pattern of `sign_patterns` (argmin's rule).

    ``w``: (G, n, m); ``row_scales``: (G, K, n); ``col_scales``: (G, K, m) → signs (G, K, n, m).

    float32 inputs use the compiled ``sign_search`` of `cpu_kernel` on CPU (one pass, nothing but the output
    allocated) when it is built; otherwise (other dtypes, GPU, no compiler, ``use_kernel=False``) a torch search
    keeps a running minimum over the patterns, on row chunks of at most ``max_elements`` weights, so no
    (G, 2^K, n, m) candidate tensor is ever formed. ``use_kernel=True`` refuses to fall back."""
    groups, order, rows = row_scales.shape
    if use_kernel is not False and w.device.type == "cpu" and w.dtype == torch.float32 and \
            row_scales.dtype == torch.float32 and col_scales.dtype == torch.float32 and order <= 8:
        kernel = cpu_kernel()
        if kernel is not None:
            return kernel.sign_search(w, row_scales, col_scales)
    if use_kernel:
        raise RuntimeError("`use_kernel=True` needs float32 CPU tensors, K ≤ 8 and the compiled CPU kernels.")
    patterns = sign_patterns(order, w.dtype, w.device)  # (P, K)
    out = torch.empty(groups, order, rows, w.shape[-1], dtype=w.dtype, device=w.device)
    step = max(1, max_elements // max(groups * w.shape[-1], 1))
    for start in range(0, rows, step):
        sl = slice(start, start + step)
        target = w[:, sl]
        scale = row_scales[:, :, sl].unsqueeze(-1) * col_scales.unsqueeze(-2)  # (G, K, r, m)
        best = best_index = None
        for p in range(patterns.shape[0]):
            value = scale[:, 0] * patterns[p, 0]
            for k in range(1, order):
                value.add_(scale[:, k], alpha=float(patterns[p, k]))
            error = value.sub_(target).square_()
            if best is None:
                best, best_index = error, torch.zeros_like(error, dtype=torch.uint8)
            else:
                better = error < best
                best = torch.minimum(best, error)
                best_index.masked_fill_(better, p)
        for k in range(order):
            out[:, k, sl] = ((best_index >> k) & 1).to(w.dtype) * 2 - 1
    return out


def reconstruct(row_scales: torch.Tensor, col_scales: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
    """Ŵ = Σ_k (α_r,k α_c,kᵀ) ⊙ B_k for (G, K, ·) factors → (G, n, m), one order at a time (one (G, n, m)
    temporary besides the result)."""
    out = _term(row_scales[:, 0], col_scales[:, 0], signs[:, 0])
    for k in range(1, row_scales.shape[1]):
        out.add_(_term(row_scales[:, k], col_scales[:, k], signs[:, k]))
    return out


def daq_objective(w: torch.Tensor, w_hat: torch.Tensor, weight2: torch.Tensor | None) -> torch.Tensor:
    """L_Λ = ‖Λ ⊙ (W − Ŵ)‖²_F per block (``weight2`` = Λ², None for Λ = 1)."""
    error = (w - w_hat).square_()
    if weight2 is not None:
        error.mul_(weight2)
    return error.sum(dim=(-2, -1))


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
    # Λ = 1 is never materialised: None stands for it (the objective and the updates skip the product)
    weight2 = None if importance_mask is None else importance_mask.to(w.dtype).square()
    rows, cols, signs = [], [], []
    w_hat = torch.zeros_like(w)
    for _ in range(order):
        r, c, b = init(w - w_hat)
        rows.append(r)
        cols.append(c)
        signs.append(b)
        w_hat.add_(_term(r, c, b))
    result = DAQResult(torch.stack(rows, 1), torch.stack(cols, 1), torch.stack(signs, 1))
    result.objective.append(daq_objective(w, w_hat, weight2))
    for _ in range(iterations):
        # Ŵ is kept up to date term by term: R^(k) = W − (Ŵ − S^(k) ⊙ B^(k)) reads the scales already updated in
        # this round, as Algorithm 2's loop does, with one (G, n, m) temporary instead of K.
        for k in range(order):
            b_k = result.signs[:, k]
            target = w - w_hat
            target.add_(_term(result.row_scales[:, k], result.col_scales[:, k], b_k))
            torch.sub(w, target, out=w_hat)  # Ŵ − S^(k) ⊙ B^(k) = W − R^(k), without a second product
            _rescale(target, b_k, result.row_scales[:, k], result.col_scales[:, k], weight2, eps, row_only)
            w_hat.add_(_term(result.row_scales[:, k], result.col_scales[:, k], b_k))
        result.signs = update_signs(w, result.row_scales, result.col_scales)
        w_hat = result.reconstruct()
        result.objective.append(daq_objective(w, w_hat, weight2))
    return result


def _rescale(target: torch.Tensor, signs: torch.Tensor, row: torch.Tensor, col: torch.Tensor,
             weight2: torch.Tensor | None, eps: float, row_only: bool) -> None:
    """`update_row_scale` then `update_col_scale` of one order, in place on ``row`` / ``col`` (views of the
    result), sharing Λ² ⊙ R ⊙ B between them — the same operations in the same order as the two calls."""
    xb = target.mul_(signs)  # the target is not needed afterwards: R ⊙ B in place
    if weight2 is not None:
        xb.mul_(weight2)
    col_sq = (col * col).unsqueeze(-1)
    u = torch.bmm(xb, col.unsqueeze(-1)).squeeze(-1)
    v = (col_sq.squeeze(-1).sum(-1, keepdim=True).expand_as(u) if weight2 is None
         else torch.bmm(weight2, col_sq).squeeze(-1)) + eps
    row.copy_(u / v)
    if row_only:
        return
    u = torch.bmm(row.unsqueeze(-2), xb).squeeze(-2)
    if weight2 is None:
        v = (row * row).sum(-1, keepdim=True).expand_as(u) + eps
    else:
        v = torch.bmm((row * row).unsqueeze(-2), weight2).squeeze(-2) + eps
    col.copy_(u / v)


def _term(row: torch.Tensor, col: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
    """S ⊙ B = (α_r α_cᵀ) ⊙ B for (G, n), (G, m), (G, n, m)."""
    return (signs * col.unsqueeze(-2)).mul_(row.unsqueeze(-1))  # = α_r α_c B exactly (B = ±1), one temporary


__all__ = ["DAQResult", "binary_rc_init", "binary_row_init", "daq", "daq_objective", "reconstruct", "sign",
           "sign_patterns", "update_col_scale", "update_row_scale", "update_signs"]
