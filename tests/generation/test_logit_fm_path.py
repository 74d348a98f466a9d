"""Logit-FM path and sampler maths against hand-derived values (eqs. 2, 3, 16, 17; Algorithms 1–2; hybrid)."""

import math

import pytest
import torch

from hf_dlm.generation.logit_fm import LogitFMGenerationConfig, sample_logit_fm
from hf_dlm.generation.logit_fm import path as P
from hf_dlm.generation.logit_fm import sampler as S
from hf_dlm.training.logit_fm import noisy_simplex, sample_flow_times

V = 7


class ConstantModel(torch.nn.Module):
    """p(x_1 | x_t) with fixed logits; records every simplex it is shown."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.fixed = logits
        self.seen: list[tuple[torch.Tensor, float]] = []

    def forward(self, simplex, timesteps, attention_mask=None):
        self.seen.append((simplex.clone(), float(timesteps[0])))
        batch, length, _ = simplex.shape
        return (self.fixed.expand(batch, length, -1).clone(),)


def test_smoothed_one_hot_is_eq3():
    beta = 0.01
    log_x1 = P.smoothed_one_hot_log(torch.tensor([2, 0]), V, beta)
    expected = torch.full((2, V), beta / V)
    expected[0, 2] += 1 - beta
    expected[1, 0] += 1 - beta
    torch.testing.assert_close(log_x1.exp(), expected)
    torch.testing.assert_close(log_x1.exp().sum(-1), torch.ones(2))


def test_geodesic_endpoints_and_log_linearity():
    g = torch.Generator().manual_seed(0)
    log_x0 = P.sample_dirichlet_log((3, 4), V, 1.0, g)
    log_x1 = P.smoothed_one_hot_log(torch.randint(0, V, (3, 4), generator=g), V, 0.01)
    torch.testing.assert_close(P.geodesic_log(log_x0, log_x1, 0.0).exp(), log_x0.exp())
    torch.testing.assert_close(P.geodesic_log(log_x0, log_x1, 1.0).exp(), log_x1.exp())
    for t in (0.1, 0.37, 0.8):
        gap = P.geodesic_log(log_x0, log_x1, t) - ((1 - t) * log_x0 + t * log_x1)
        # log x_t differs from the linear interpolation of the logits only by a per-position constant
        assert float((gap - gap[..., :1]).abs().max()) < 1e-5
    # per-row times broadcast from the left
    t = torch.tensor([0.0, 0.5, 1.0])
    out = P.geodesic_log(log_x0, log_x1, t)
    torch.testing.assert_close(out[0].exp(), log_x0[0].exp())
    torch.testing.assert_close(out[2].exp(), log_x1[2].exp())


def test_dirichlet_samples_are_on_the_simplex_reproducible_and_uniform_on_average():
    a = P.sample_dirichlet_log((2000,), V, 1.0, torch.Generator().manual_seed(1))
    b = P.sample_dirichlet_log((2000,), V, 1.0, torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a.exp().sum(-1), torch.ones(2000))
    # Dirichlet(1): each coordinate has mean 1/N and variance (N-1)/(N^2 (N+1))
    x = a.exp().double()
    assert torch.allclose(x.mean(0), torch.full((V,), 1 / V, dtype=torch.float64), atol=0.01)
    assert abs(float(x[:, 0].var()) - (V - 1) / (V**2 * (V + 1))) < 0.003
    c = P.sample_dirichlet_log((4000,), V, 5.0, torch.Generator().manual_seed(2)).exp().double()
    assert abs(float(c[:, 0].var()) - (V - 1) / (V**2 * (5 * V + 1))) < 0.001  # Var = (N-1)/(N^2 (Nα+1))


def test_mean_smoothed_logit_by_hand():
    beta, n = 0.01, 3
    w = torch.tensor([0.5, 0.25, 0.25])
    on, off = math.log(1 - beta + beta / n), math.log(beta / n)
    expected = torch.tensor([0.5 * on + 0.5 * off, 0.25 * on + 0.75 * off, 0.25 * on + 0.75 * off])
    torch.testing.assert_close(P.mean_smoothed_logit(w, beta), expected)


def test_ode_step_is_eq17():
    beta, t, h = 0.01, 0.25, 0.125
    g = torch.Generator().manual_seed(3)
    log_xt = P.sample_dirichlet_log((2, 3), V, 1.0, g)
    w = torch.softmax(torch.randn(2, 3, V, generator=g), -1)
    on, off = math.log(1 - beta + beta / V), math.log(beta / V)
    velocity = w / (1 - t) * on + (1 - w) / (1 - t) * off - log_xt / (1 - t)  # eq. 17
    expected = torch.log_softmax(log_xt + h * velocity, -1)
    torch.testing.assert_close(P.ode_step(log_xt, P.mean_smoothed_logit(w, beta), t, h), expected)
    # a step that reaches t = 1 lands on the target point
    target = P.mean_smoothed_logit(w, beta)
    torch.testing.assert_close(P.ode_step(log_xt, target, 0.6, 0.4).exp(), torch.softmax(target, -1))
    with pytest.raises(ValueError, match="t=1"):
        P.ode_step(log_xt, target, 1.0, 0.1)


def test_sampler_ode_steps_follow_algorithm_1():
    logits = torch.randn(V, generator=torch.Generator().manual_seed(4))
    model = ConstantModel(logits)
    config = LogitFMGenerationConfig(scheme="ode", num_steps=2, max_new_tokens=3, smoothing_beta=0.01,
                                     dirichlet_concentration=1.0)
    out = sample_logit_fm(model, torch.empty(2, 0, dtype=torch.long), config, V,
                          generator=torch.Generator().manual_seed(5))
    log_x0 = P.sample_dirichlet_log((2, 3), V, 1.0, torch.Generator().manual_seed(5))
    target = P.mean_smoothed_logit(logits.softmax(-1), 0.01)
    torch.testing.assert_close(model.seen[0][0], log_x0.exp())
    torch.testing.assert_close(model.seen[1][0], P.ode_step(log_x0, target, 0.0, 0.5).exp())
    assert [t for _, t in model.seen] == [0.0, 0.5]
    assert out.nfe == 2 and out.schemes == ("ode", "ode")
    assert bool((out.sequences == logits.argmax()).all())


def test_semi_randomized_uses_a_one_sample_target():
    logits = torch.tensor([0.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    model = ConstantModel(logits)
    config = LogitFMGenerationConfig(scheme="semi_randomized", num_steps=2, max_new_tokens=2, top_k=1,
                                     smoothing_beta=0.01, dirichlet_concentration=1.0)
    sample_logit_fm(model, torch.empty(1, 0, dtype=torch.long), config, V, generator=torch.Generator().manual_seed(6))
    log_x0 = P.sample_dirichlet_log((1, 2), V, 1.0, torch.Generator().manual_seed(6))
    target = P.smoothed_one_hot_log(torch.ones(1, 2, dtype=torch.long), V, 0.01)  # top-1 sample = token 1
    torch.testing.assert_close(model.seen[1][0], P.ode_step(log_x0, target, 0.0, 0.5).exp())


def test_randomized_step_draws_fresh_noise_every_step(monkeypatch):
    calls = []
    original = P.sample_dirichlet_log

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        calls.append(out)
        return out

    monkeypatch.setattr(P, "sample_dirichlet_log", spy)
    monkeypatch.setattr(S, "sample_dirichlet_log", spy)
    model = ConstantModel(torch.tensor([0.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0]))
    config = LogitFMGenerationConfig(scheme="randomized", num_steps=4, max_new_tokens=3, top_k=1)
    sample_logit_fm(model, torch.empty(2, 0, dtype=torch.long), config, V, generator=torch.Generator().manual_seed(7))
    assert len(calls) == 1 + 4  # the initial x_0, then one fresh x_0 per step
    for a, b in zip(calls, calls[1:]):
        assert not torch.allclose(a, b)
    # Algorithm 2, line 6: each model input is the geodesic point at t_i between that step's noise and x_1ˢ
    log_x1 = P.smoothed_one_hot_log(torch.ones(2, 3, dtype=torch.long), V, 0.01)
    for i in range(1, 4):
        torch.testing.assert_close(model.seen[i][0], P.geodesic_log(calls[i], log_x1, i / 4).exp())
    calls.clear()
    sample_logit_fm(model, torch.empty(2, 0, dtype=torch.long), LogitFMGenerationConfig(scheme="ode", num_steps=4,
                    max_new_tokens=3), V, generator=torch.Generator().manual_seed(7))
    assert len(calls) == 1  # the ODE draws noise only once


def test_hybrid_switches_exactly_at_t_star():
    times = [0.0, 0.25, 0.5, 0.75, 1.0]
    assert S.step_schemes("hybrid", times, 0.5) == ["ode", "ode", "randomized", "randomized"]
    assert S.step_schemes("hybrid", times, 0.51) == ["ode", "ode", "ode", "randomized"]
    assert S.step_schemes("hybrid", times, 0.0) == ["randomized"] * 4
    assert S.step_schemes("hybrid", times, 1.0) == ["ode"] * 4
    model = ConstantModel(torch.zeros(V))
    out = sample_logit_fm(model, torch.empty(1, 0, dtype=torch.long),
                          LogitFMGenerationConfig(scheme="hybrid", num_steps=8, max_new_tokens=2,
                                                  hybrid_switch_time=0.3), V)
    assert out.schemes == ("ode",) * 3 + ("randomized",) * 5  # t = 0, .125, .25 < 0.3 <= .375


def test_prompt_positions_never_change():
    model = ConstantModel(torch.randn(V, generator=torch.Generator().manual_seed(8)))
    prompt = torch.tensor([[3, 1, 4], [1, 5, 2]])
    for scheme in ("ode", "semi_randomized", "randomized", "hybrid"):
        model.seen.clear()
        out = sample_logit_fm(model, prompt, LogitFMGenerationConfig(scheme=scheme, num_steps=5, max_new_tokens=4), V,
                              generator=torch.Generator().manual_seed(9))
        assert torch.equal(out.sequences[:, :3], prompt)
        for simplex, _ in model.seen:
            assert torch.equal(simplex[:, :3], torch.nn.functional.one_hot(prompt, V).float())


def test_time_grids():
    assert P.time_grid(4) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert P.time_grid(4, step_size=0.1) == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    grid = P.time_grid(5, "log", t_end=0.99)
    s = [-math.log(1 - t) for t in grid]
    assert grid[0] == 0 and grid[-1] == pytest.approx(0.99)
    assert all(b - a == pytest.approx(s[1] - s[0]) for a, b in zip(s, s[1:]))
    with pytest.raises(ValueError, match="t_end"):
        P.time_grid(4, "log", t_end=1.0)


def test_training_path_and_times():
    ids = torch.randint(0, V, (4, 6), generator=torch.Generator().manual_seed(10))
    fixed = torch.zeros(4, 6, dtype=torch.bool)
    fixed[:, :2] = True
    x = noisy_simplex(ids, torch.ones(4), V, 0.01, fixed=fixed)
    torch.testing.assert_close(x[:, :2], torch.nn.functional.one_hot(ids[:, :2], V).float())
    torch.testing.assert_close(x[:, 2:], P.smoothed_one_hot_log(ids[:, 2:], V, 0.01).exp())
    t = sample_flow_times(20000, "uniform", 0.5, generator=torch.Generator().manual_seed(11))
    assert float(t.max()) <= 0.5 and abs(float(t.mean()) - 0.25) < 0.01
    t = sample_flow_times(20000, "log_uniform", 0.3, generator=torch.Generator().manual_seed(12))
    s = -torch.log1p(-t)
    assert float(t.max()) <= 0.3 and abs(float(s.mean()) - (-math.log(0.7)) / 2) < 0.005  # uniform in s


@pytest.mark.parametrize("kwargs, match", [
    ({"smoothing_beta": 0.0}, "smoothing_beta"), ({"smoothing_beta": 1.0}, "smoothing_beta"),
    ({"hybrid_switch_time": 1.5}, "hybrid_switch_time"), ({"hybrid_switch_time": -0.1}, "hybrid_switch_time"),
    ({"num_steps": 0}, "num_steps"), ({"top_k": 0}, "top_k"), ({"scheme": "euler"}, "scheme"),
    ({"time_grid": "cosine"}, "time_grid"), ({"step_size": 0.5, "num_steps": 4}, "step_size"),
])
def test_generation_config_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LogitFMGenerationConfig(**kwargs)


def test_check_smoothing_names_the_argument():
    with pytest.raises(ValueError, match=r"`smoothing_beta` must lie in \(0, 1\), got 1.5"):
        P.check_smoothing(1.5)
