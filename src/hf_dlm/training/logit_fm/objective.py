"""The Logit-FM denoising objective (eq. 15) as pure functions: flow times, noisy simplex points, the loss."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...generation.logit_fm.path import geodesic_log, sample_dirichlet_log, smoothed_one_hot_log

TIME_DISTRIBUTIONS = ("uniform", "log_uniform")
LOSS_POSITIONS = ("answer", "all")


def sample_flow_times(batch: int, distribution: str = "uniform", t_max: float = 1.0,
                      device: torch.device | str | None = None, generator: torch.Generator | None = None
                      ) -> torch.Tensor:
    """t per sequence: ``uniform`` t ~ U[0, t_max] (the paper, t_max = 1; the authors' public code draws t uniformly
    on [0, 0.3]), or ``log_uniform`` — s ~ U[0, −log(1 − t_max)] and t = 1 − e^{−s}, uniform in −log(1 − t) (an option
    of this library, denser near t_max; not the authors' code)."""
    u = torch.rand(batch, device=device, generator=generator)
    if distribution == "uniform":
        return u * t_max
    if distribution == "log_uniform":
        if not t_max < 1.0:
            raise ValueError(f"`t_max` must be < 1 for the 'log_uniform' time distribution, got {t_max}.")
        return -torch.expm1(u * math.log1p(-t_max))
    raise ValueError(f"`time_distribution` must be one of {TIME_DISTRIBUTIONS}, got {distribution!r}.")


def noisy_simplex(input_ids: torch.LongTensor, t: torch.Tensor, vocab_size: int, beta: float,
                  concentration: float = 1.0, fixed: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """x_t = softmax((1 − t) log x_0 + t log x_1ˢ) (eq. 2) with x_0 ~ Dirichlet(α) and x_1ˢ the β-smoothed one-hot of
    ``input_ids`` (eq. 3); positions where ``fixed`` is true (the prompt) are exact one-hot points instead."""
    log_x0 = sample_dirichlet_log(tuple(input_ids.shape), vocab_size, concentration, generator, input_ids.device)
    simplex = geodesic_log(log_x0, smoothed_one_hot_log(input_ids, vocab_size, beta), t).exp()
    if fixed is not None and bool(fixed.any()):
        one_hot = F.one_hot(input_ids, vocab_size).to(simplex.dtype)
        simplex = torch.where(fixed.unsqueeze(-1), one_hot, simplex)
    return simplex


def loss_positions_mask(trainable: torch.Tensor, loss_positions: str = "answer") -> torch.Tensor:
    """The positions the loss scores: ``answer`` — the trainable ones (not the prompt, not padding, not −100 labels);
    ``all`` — every position of the batch, prompt and padding included, as the authors' code scores them."""
    if loss_positions == "answer":
        return trainable
    if loss_positions == "all":
        return torch.ones_like(trainable, dtype=torch.bool)
    raise ValueError(f"`loss_positions` must be one of {LOSS_POSITIONS}, got {loss_positions!r}.")


def denoising_loss(logits: torch.Tensor, input_ids: torch.LongTensor, scored: torch.Tensor) -> torch.Tensor:
    """Eq. 15 with one x_1 per x_t: the mean of −log p_θ(x_1^(k) | x_t) over the scored positions (by default the
    answer — not the prompt, not padding; see [`loss_positions_mask`])."""
    if not bool(scored.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[scored].float(), input_ids[scored])


__all__ = ["LOSS_POSITIONS", "TIME_DISTRIBUTIONS", "denoising_loss", "loss_positions_mask",
           "noisy_simplex", "sample_flow_times"]
