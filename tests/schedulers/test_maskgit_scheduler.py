"""MaskGIT scheduler maths: schedule counts by hand, confidence ordering, and token-for-token agreement with
diffusers' AmusedScheduler."""

import math

import pytest
import torch
from diffusers import AmusedScheduler

from hf_dlm.schedulers import MASK_SCHEDULES, MaskGITScheduler, mask_ratio_schedule

MASK, CODEBOOK = 64, 64


def _decode(scheduler, steps, logits_fn, batch=2, length=36, seed=0, two_dim=False, temperature=(2, 0)):
    scheduler.set_timesteps(steps, temperature=temperature)
    sample = torch.full((batch, length), MASK)
    if two_dim:
        sample = sample.view(batch, 6, 6)
    generator = torch.Generator().manual_seed(seed)
    trace = []
    for i, t in enumerate(scheduler.timesteps):
        logits = logits_fn(i)
        if two_dim:
            logits = logits.permute(0, 2, 1).reshape(batch, CODEBOOK, 6, 6)
        out = scheduler.step(logits, t, sample, generator=generator)
        sample = out.prev_sample
        trace.append((out.prev_sample.clone(), out.pred_original_sample.clone()))
    return trace


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
@pytest.mark.parametrize("steps", [1, 4, 12])
@pytest.mark.parametrize("two_dim", [False, True])
def test_reproduces_amused_scheduler(schedule, steps, two_dim):
    gen = torch.Generator().manual_seed(123)
    logits = [torch.randn(2, 36, CODEBOOK, generator=gen) * 3 for _ in range(steps)]
    ours = _decode(MaskGITScheduler(MASK, schedule), steps, lambda i: logits[i], two_dim=two_dim)
    theirs = _decode(AmusedScheduler(MASK, schedule), steps, lambda i: logits[i], two_dim=two_dim)
    for (a_prev, a_pred), (b_prev, b_pred) in zip(ours, theirs):
        assert torch.equal(a_prev, b_prev) and torch.equal(a_pred, b_pred)
    assert not (ours[-1][0] == MASK).any()  # everything revealed at the end


def _expected_masked_counts(length, steps, schedule):
    """By hand: after step i (of n) keep max(1, min(masked − 1, floor(L·γ((i+1)/n)))) masked; 0 after the last."""
    masked, counts = length, []
    for i in range(steps):
        if i == steps - 1:
            masked = 0
        else:
            r = (i + 1) / steps
            gamma = {"cosine": math.cos(r * math.pi / 2), "linear": 1 - r,
                     "arccos": math.acos(r) / (math.pi / 2), "sqrt": 1 - math.sqrt(r)}[schedule]
            masked = max(1, min(masked - 1, math.floor(length * gamma + 1e-6)))
        counts.append(masked)
    return counts


@pytest.mark.parametrize("schedule", MASK_SCHEDULES)
@pytest.mark.parametrize("steps", [1, 2, 4, 8, 16])
def test_revealed_counts_follow_the_schedule(schedule, steps):
    gen = torch.Generator().manual_seed(steps)
    trace = _decode(MaskGITScheduler(MASK, schedule), steps,
                    lambda i: torch.randn(2, 36, CODEBOOK, generator=gen), temperature=0.0)
    got = [int((prev == MASK).sum(dim=1)[0]) for prev, _ in trace]
    assert got == _expected_masked_counts(36, steps, schedule)
    assert all(int((prev == MASK).sum(dim=1)[1]) == g for (prev, _), g in zip(trace, got))


def test_zero_choice_temperature_keeps_the_most_confident():
    scheduler = MaskGITScheduler(MASK, "linear")
    scheduler.set_timesteps(2, temperature=(0.0, 0.0))
    sample = torch.full((3, 20), MASK)
    sample[:, :5] = 7  # given tokens are never re-masked
    logits = torch.randn(3, 20, CODEBOOK, generator=torch.Generator().manual_seed(0)) * 4
    out = scheduler.step(logits, scheduler.timesteps[0], sample, generator=torch.Generator().manual_seed(1))
    assert (out.prev_sample[:, :5] == 7).all()
    probs = logits.softmax(-1).gather(-1, out.pred_original_sample[..., None])[..., 0]
    for row in range(3):
        revealed = (out.prev_sample[row, 5:] != MASK).nonzero().flatten() + 5
        expected = probs[row, 5:].topk(len(revealed)).indices + 5
        assert sorted(revealed.tolist()) == sorted(expected.tolist())
        # 15 unknown; gamma(1/2) = 0.5 of all 20 positions stays masked -> 10 masked, 5 revealed
        assert len(revealed) == 15 - max(1, min(15 - 1, math.floor(20 * 0.5))) == 5


def test_schedule_endpoints_and_add_noise():
    r = torch.tensor([0.0, 1.0])
    for schedule in MASK_SCHEDULES:
        assert torch.allclose(mask_ratio_schedule(r, schedule), torch.tensor([1.0, 0.0]), atol=1e-6)
    scheduler = MaskGITScheduler(MASK, "cosine")
    scheduler.set_timesteps(4)
    tokens = torch.zeros(8, 1000, dtype=torch.long)
    noisy = scheduler.add_noise(tokens, scheduler.timesteps[1], generator=torch.Generator().manual_seed(0))
    assert (noisy == MASK).float().mean().item() == pytest.approx(math.cos(0.5 * math.pi / 2), abs=0.02)


def test_config_round_trip_and_errors(tmp_path):
    scheduler = MaskGITScheduler(MASK, "arccos", choice_temperature=4.5)
    scheduler.save_pretrained(tmp_path)
    loaded = MaskGITScheduler.from_pretrained(tmp_path)
    assert loaded.config.masking_schedule == "arccos" and loaded.config.choice_temperature == 4.5
    with pytest.raises(ValueError, match="masking_schedule"):
        MaskGITScheduler(MASK, "exponential")
    with pytest.raises(ValueError, match="num_inference_steps"):
        scheduler.set_timesteps(0)
    with pytest.raises(ValueError, match="set_timesteps"):
        MaskGITScheduler(MASK).step(torch.zeros(1, 4, CODEBOOK), 3, torch.full((1, 4), MASK))
