"""Token-level divergences of Di[M]O and their gradients with respect to the student logits (Zhu et al., 2025,
"Derivations": the f-divergence gradient, the FKL and RKL closed forms).

Notation: p = p_φ(x_0^i | x̃_t) is the teacher's distribution at a masked position, q = softmax(z) the student's
(the auxiliary model ψ stands in for the generator θ), u = p / q. Every divergence is an f-divergence
D_f(p‖q) = Σ_k q_k f(u_k) with

    fkl        f(u) = u log u                       D = KL(p‖q)   (mode covering)
    rkl        f(u) = −log u                        D = KL(q‖p)   (mode seeking)
    jeffreys   f = (1 − β)·f_fkl + β·f_rkl           the official code's "Jeffreys_β" mixture (β = 0.5: half the
                                                    symmetric Jeffreys divergence)
    js         f(u) = ½[u log u − (1 + u) log((1 + u)/2)]   Jensen–Shannon
    hellinger  f(u) = (√u − 1)²                     D = Σ (√p − √q)² (twice the squared Hellinger distance)

and, for any differentiable f, the paper's general formula — ∂D/∂z_j = Σ_k ∂q_k/∂z_j [f(u_k) − u_k f'(u_k)] with
∂q_k/∂z_j = q_k(δ_jk − q_j) — reduces to g_j = q_j (h_j − Σ_k q_k h_k), h = f(u) − u f'(u).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

DIVERGENCES = ("fkl", "rkl", "jeffreys", "js", "hellinger")
LOSS_NORMALIZATIONS = ("sum", "mean")

FFunction = Callable[[torch.Tensor], torch.Tensor]


def _check_name(divergence: str) -> None:
    if divergence not in DIVERGENCES:
        raise ValueError(f"`divergence` must be one of {DIVERGENCES} (or pass a callable f), got {divergence!r}.")


def divergence_f(divergence: str, beta: float = 0.5) -> FFunction:
    """The generator function f of a named divergence (see the module docstring)."""
    _check_name(divergence)
    if divergence == "fkl":
        return lambda u: u * torch.log(u)
    if divergence == "rkl":
        return lambda u: -torch.log(u)
    if divergence == "jeffreys":
        return lambda u: (1 - beta) * u * torch.log(u) - beta * torch.log(u)
    if divergence == "js":
        return lambda u: 0.5 * (u * torch.log(u) - (1 + u) * torch.log((1 + u) / 2))
    return lambda u: (torch.sqrt(u) - 1) ** 2


def _log_probs(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(f"teacher and student logits must have the same shape, got {tuple(teacher_logits.shape)} "
                         f"and {tuple(student_logits.shape)}.")
    return F.log_softmax(teacher_logits.float(), -1), F.log_softmax(student_logits.float(), -1)


def token_divergence(teacher_logits: torch.Tensor, student_logits: torch.Tensor, divergence: str | FFunction = "fkl",
                     beta: float = 0.5) -> torch.Tensor:
    """D(p_φ ‖ softmax(student_logits)) at every position, shape ``logits.shape[:-1]``; differentiable in both.

    Named divergences use stable closed forms in log space; a callable f uses Σ_k q_k f(p_k / q_k)."""
    log_p, log_q = _log_probs(teacher_logits, student_logits)
    p, q = log_p.exp(), log_q.exp()
    if callable(divergence):
        return (q * divergence(torch.exp(log_p - log_q))).sum(-1)
    _check_name(divergence)
    fkl = lambda: (p * (log_p - log_q)).sum(-1)  # noqa: E731
    rkl = lambda: (q * (log_q - log_p)).sum(-1)  # noqa: E731
    if divergence == "fkl":
        return fkl()
    if divergence == "rkl":
        return rkl()
    if divergence == "jeffreys":
        return (1 - beta) * fkl() + beta * rkl()
    if divergence == "js":
        log_m = torch.logsumexp(torch.stack([log_p, log_q]), dim=0) - math.log(2)
        return 0.5 * ((p * (log_p - log_m)).sum(-1) + (q * (log_q - log_m)).sum(-1))
    return ((torch.exp(0.5 * log_p) - torch.exp(0.5 * log_q)) ** 2).sum(-1)


def _softmax_vjp(q: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Σ_k ∂q_k/∂z_j h_k = q_j (h_j − Σ_k q_k h_k): the softmax Jacobian applied to h."""
    return q * (h - (q * h).sum(-1, keepdim=True))


def divergence_gradient(teacher_logits: torch.Tensor, student_logits: torch.Tensor,
                        divergence: str | FFunction = "fkl", beta: float = 0.5) -> torch.Tensor:
    """g = ∇_z D(p_φ ‖ softmax(z)) at z = ``student_logits``, same shape as the logits (float32, no graph).

    Closed forms (seed, "Derivations"): FKL g = q − p; RKL g = q ⊙ (log(q/p) − KL(q‖p)); Jeffreys their
    (1 − β, β) mixture; JS h = ½ log(2/(1 + u)); Hellinger h = 1 − √u; a callable f uses h = f(u) − u f'(u) with
    f' by autograd. In every case g_j = q_j (h_j − Σ_k q_k h_k) for the respective h."""
    with torch.no_grad():
        log_p, log_q = _log_probs(teacher_logits.detach(), student_logits.detach())
        p, q = log_p.exp(), log_q.exp()
        log_u = log_p - log_q
        if callable(divergence):
            with torch.enable_grad():
                u = log_u.exp().requires_grad_(True)
                f_u = divergence(u)
                (f_prime,) = torch.autograd.grad(f_u.sum(), u)
            return _softmax_vjp(q, (f_u - u * f_prime).detach())
        _check_name(divergence)
        grad_fkl = lambda: q - p  # noqa: E731
        grad_rkl = lambda: q * (-log_u - (q * -log_u).sum(-1, keepdim=True))  # noqa: E731
        if divergence == "fkl":
            return grad_fkl()
        if divergence == "rkl":
            return grad_rkl()
        if divergence == "jeffreys":
            return (1 - beta) * grad_fkl() + beta * grad_rkl()
        if divergence == "js":
            return _softmax_vjp(q, 0.5 * (math.log(2) - F.softplus(log_u)))  # log(1 + u) = softplus(log u)
        return _softmax_vjp(q, 1 - torch.exp(0.5 * log_u))


def row_scale(masked: torch.BoolTensor, weights: torch.Tensor | None, normalization: str) -> torch.Tensor:
    """Per-row factor c_b·w(t_b): ``sum`` → 1/B (the official code's sum over tokens, averaged over samples);
    ``mean`` → 1/(B·|M_b|) (the paper's token-level average 1/L_M Σ_{i masked})."""
    if normalization not in LOSS_NORMALIZATIONS:
        raise ValueError(f"`loss_normalization` must be one of {LOSS_NORMALIZATIONS}, got {normalization!r}.")
    batch = masked.shape[0]
    scale = torch.full((batch,), 1.0 / batch, device=masked.device)
    if normalization == "mean":
        scale = scale / masked.flatten(1).sum(1).clamp_min(1)
    if weights is not None:
        scale = scale * weights.to(scale.device).view(batch)
    return scale


def surrogate_loss(generator_logits: torch.Tensor, gradient: torch.Tensor, masked: torch.BoolTensor,
                   weights: torch.Tensor | None = None, normalization: str = "sum") -> torch.Tensor:
    """The generator's surrogate objective Σ_b c_b w(t_b) Σ_{i ∈ M_b} ⟨g_bi, z_θ,bi(x_init)⟩ (seed eq. 7 with the
    consistency approximation z_θ(x̃_t) ≈ z_θ(x_init)): its gradient with respect to the generator logits is
    exactly c_b w(t_b) g at the masked positions and zero elsewhere. ``gradient`` is detached."""
    scale = row_scale(masked, weights, normalization)
    per_position = (gradient.detach().float() * generator_logits.float()).sum(-1) * masked
    return (per_position.flatten(1).sum(1) * scale).sum()


__all__ = ["DIVERGENCES", "LOSS_NORMALIZATIONS", "divergence_f", "divergence_gradient", "row_scale",
           "surrogate_loss", "token_divergence"]
