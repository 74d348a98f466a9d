"""The KL-geodesic probability path of Logit-FM and its update rules, as pure functions in log space.

Symbols follow the paper ("Integrating geodesic interpolation and flow matching for non-autoregressive text
generation in logit space"): x_t ∈ Δ^N a point of the vocabulary simplex per position, l_t = log x_t,
x_0 ~ Dirichlet(α) the noise, x_1 the data one-hot smoothed with β (eq. 3). Every function works on log
probabilities of shape (..., N) so that nothing underflows at t ≈ 0, where x_0's smallest entries are tiny.
"""

from __future__ import annotations

import math

import torch


def check_smoothing(beta: float, name: str = "smoothing_beta") -> float:
    """β of eq. 3 must lie in the open interval (0, 1): β = 0 makes log x_1 = −inf, β = 1 erases the data."""
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0.0 < float(beta) < 1.0:
        raise ValueError(f"`{name}` must lie in (0, 1), got {beta!r}.")
    return float(beta)


def smoothed_target_logits(beta: float, vocab_size: int) -> tuple[float, float]:
    """The two values of l_1 = log((1 − β) x_1 + β/N) (eq. 3): at the data token, and everywhere else."""
    check_smoothing(beta)
    return math.log(1.0 - beta + beta / vocab_size), math.log(beta / vocab_size)


def smoothed_one_hot_log(token_ids: torch.LongTensor, vocab_size: int, beta: float,
                         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """log x_1ˢ of eq. 3 for a tensor of token ids: shape (*token_ids.shape, N)."""
    on, off = smoothed_target_logits(beta, vocab_size)
    out = torch.full((*token_ids.shape, vocab_size), off, dtype=dtype, device=token_ids.device)
    return out.scatter_(-1, token_ids.unsqueeze(-1), on)


def sample_dirichlet_log(shape: tuple[int, ...], vocab_size: int, concentration: float = 1.0,
                         generator: torch.Generator | None = None, device: torch.device | str | None = None,
                         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """log x_0 for x_0 ~ Dirichlet(α·1) over N categories at every position of ``shape``.

    A Dirichlet draw is a vector of independent Gamma(α, 1) variables divided by their sum; for α = 1 they are
    Exp(1) variables, drawn from ``generator``. For other α the Gamma draws use a private RNG stream seeded from
    ``generator`` (torch's Gamma sampler takes no generator), so results stay reproducible.
    """
    if not concentration > 0:
        raise ValueError(f"`concentration` must be > 0, got {concentration!r}.")
    size = (*shape, vocab_size)
    if concentration == 1.0:
        gamma = torch.empty(size, dtype=torch.float64, device=device).exponential_(generator=generator)
    else:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            rate = torch.full(size, float(concentration), dtype=torch.float64)
            gamma = torch.distributions.Gamma(rate, torch.ones_like(rate)).sample().to(device)
    log_gamma = gamma.clamp_min(torch.finfo(torch.float64).tiny).log()
    return (log_gamma - torch.logsumexp(log_gamma, dim=-1, keepdim=True)).to(dtype)


def geodesic_log(log_x0: torch.Tensor, log_x1: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """log x_t of the KL geodesic, eq. 2: log softmax((1 − t) log x_0 + t log x_1). ``t`` broadcasts from the
    left: a float, or a tensor of shape (batch,) or (batch, length)."""
    t = _expand_time(t, log_x0)
    return torch.log_softmax((1.0 - t) * log_x0 + t * log_x1, dim=-1)


def mean_smoothed_logit(probs: torch.Tensor, beta: float) -> torch.Tensor:
    """l̄_1 = E_{x_1 ~ p_θ(x_1|x_t)} log x_1ˢ = w·log(1 − β + β/N) + (1 − w)·log(β/N) with w = p_θ(x_1|x_t)
    (Algorithm 1, line 5; the correction of eq. 17)."""
    on, off = smoothed_target_logits(beta, probs.shape[-1])
    return probs * on + (1.0 - probs) * off


ODE_COEFFICIENT_FORMS = ("h_over_one_minus_t", "delta_s")


def ode_coefficient(t: float, t_next: float, form: str = "h_over_one_minus_t") -> float:
    """The factor c of the step l ← l + c·(l_1 − l) from t to t_next. ``h_over_one_minus_t``: c = h/(1 − t), the
    Euler step of eq. 16 in t (Algorithm 1). ``delta_s``: c = Δs = log(1 − t) − log(1 − t_next), the Euler step of the
    same ODE written in s = −log(1 − t) (dl/ds = l_1 − l), which the authors' code takes: on its grid uniform in s,
    Δs = −log(1 − max_t)/K. The two agree to first order, h/(1 − t) = 1 − e^{−Δs}."""
    if not 0.0 <= t < 1.0:
        raise ValueError(f"an ODE step needs 0 <= t < 1, got t={t}.")
    if form == "h_over_one_minus_t":
        return (t_next - t) / (1.0 - t)
    if form == "delta_s":
        if not t_next < 1.0:
            raise ValueError(f"the 'delta_s' coefficient needs t_next < 1 (s = −log(1 − t) is infinite at 1), got "
                             f"{t_next}.")
        return math.log1p(-t) - math.log1p(-t_next)
    raise ValueError(f"`ode_coefficient` must be one of {ODE_COEFFICIENT_FORMS}, got {form!r}.")


def ode_step(log_xt: torch.Tensor, target_log: torch.Tensor, t: float, h: float,
             coefficient: float | None = None) -> torch.Tensor:
    """One Euler step of dl/dt = (l_1 − l_t)/(1 − t) (eqs. 16–17; Algorithm 1, line 6), renormalised:
    l_{t+h} = log softmax(l_t + c·(l_1 − l_t)) with c = h/(1 − t), or ``coefficient`` when given (see
    [`ode_coefficient`]). With ``target_log`` = l̄_1 this is the ODE scheme; with the log of one sampled smoothed
    one-hot it is the semi-randomized scheme. Normalisation does not change the point: softmax ignores a
    per-position constant, and the update maps constants to constants."""
    if not 0.0 <= t < 1.0:
        raise ValueError(f"an ODE step needs 0 <= t < 1, got t={t}.")
    c = h / (1.0 - t) if coefficient is None else float(coefficient)
    return torch.log_softmax(log_xt + c * (target_log - log_xt), dim=-1)


def randomized_step(log_x1: torch.Tensor, t_next: float, concentration: float = 1.0,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """One step of Algorithm 2 (lines 5–7): fresh noise x_0 ~ Dirichlet(α) and the geodesic point at t + h between
    it and the sampled (smoothed) x_1."""
    log_x0 = sample_dirichlet_log(tuple(log_x1.shape[:-1]), log_x1.shape[-1], concentration, generator,
                                  log_x1.device, log_x1.dtype)
    return geodesic_log(log_x0, log_x1, t_next)


def time_grid(num_steps: int, schedule: str = "uniform", t_end: float = 1.0,
              step_size: float | None = None) -> list[float]:
    """The K + 1 times t_0 = 0 < … < t_K at which a sampler evaluates the model (steps i = 0 … K−1 go from t_i to
    t_{i+1}). ``uniform``: t_i = i·h with h = ``step_size`` or t_end/K. ``log``: uniform in s = −log(1 − t) on
    [0, −log(1 − t_end)], denser towards t_end (needs t_end < 1)."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"`num_steps` must be an integer >= 1, got {num_steps!r}.")
    if schedule == "uniform":
        h = step_size if step_size is not None else t_end / num_steps
        return [min(i * h, 1.0) for i in range(num_steps + 1)]
    if schedule == "log":
        if not t_end < 1.0:
            raise ValueError(f"the 'log' time grid needs `t_end` < 1 (s = −log(1 − t) is infinite at 1), got {t_end}.")
        s_end = -math.log1p(-t_end)
        return [-math.expm1(-s_end * i / num_steps) for i in range(num_steps + 1)]
    raise ValueError(f"`time_grid` must be 'uniform' or 'log', got {schedule!r}.")


def _expand_time(t: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor | float:
    if not torch.is_tensor(t):
        return float(t)
    t = t.to(device=like.device, dtype=like.dtype)
    while t.dim() < like.dim():
        t = t.unsqueeze(-1)
    return t


__all__ = ["ODE_COEFFICIENT_FORMS", "check_smoothing", "geodesic_log", "mean_smoothed_logit", "ode_coefficient",
           "ode_step", "randomized_step",
           "sample_dirichlet_log", "smoothed_one_hot_log", "smoothed_target_logits", "time_grid"]
