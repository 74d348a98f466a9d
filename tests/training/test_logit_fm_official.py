"""Logit-FM as its authors run it (EgorSevriugov/KL-Flow): each official behaviour computed by hand in the test from
the published formulas, against the option that reproduces it; the "kl-flow" presets field by field and through JSON.

The published formulas used below (our reading of `FM_utils.py` `Logit`, `train_fm.py` and
`configs/default_config.yaml`, restated, not copied):
- training time t = U·max_t with U ~ U[0, 1] and max_t = 0.3; loss = cross-entropy of the logits against input_ids
  averaged over every position of the batch (labels = input_ids, no ignore index);
- sampling grid s_i = i·s_end/n, s_end = −log(1 − max_t), t_i = 1 − e^{−s_i}, n = number of generated tokens;
- ODE step (t_i < t_split = 0.28): l1 = p·log(1 − β + β/N) + (1 − p)·log(β/N), l ← (1 − Δs)·l + Δs·l1, Δs = s_end/n;
- readout: one more call p(x_1 | x_{t_n}, max_t), tokens = its argmax.
"""

import json
import math

import pytest
import torch

from hf_dlm import LogitFMConfig, LogitFMGenerationConfig, LogitFMModel, LogitFMTrainer, LogitFMTrainingArguments
from hf_dlm.generation.logit_fm.path import ode_coefficient, ode_step, sample_dirichlet_log, time_grid
from hf_dlm.generation.logit_fm.sampler import step_schemes
from hf_dlm.training.logit_fm import denoising_loss, loss_positions_mask, sample_flow_times
from hf_dlm.training.mdm_loss import trainable_positions

V = 40

# The authors' published sampling settings (KL-Flow configs/default_config.yaml fm_config and FM_utils.Logit).
PUBLISHED_SAMPLING = {
    "scheme": "hybrid",              # Logit.inference_mixed
    "time_grid": "log",              # linspace in −log(1 − t)
    "t_end": 0.3,                    # max_t
    "hybrid_switch_time": 0.28,      # t_split
    "num_steps": None,               # one step per generated token
    "ode_coefficient": "delta_s",    # (1 − Δs)·l + Δs·l1
    "readout": "prediction",         # final model call, argmax of its prediction
    "top_k": 1,                      # k = 1: argmax of the prediction in the randomized steps
    "smoothing_beta": 0.01,          # beta
    "dirichlet_concentration": 1.0,  # Dirichlet(ones)
}
PUBLISHED_TRAINING = {"time_distribution": "uniform", "t_max": 0.3, "smoothing_beta": 0.01,
                      "dirichlet_concentration": 1.0, "loss_positions": "all"}


def tiny_model() -> LogitFMModel:
    model = LogitFMModel(LogitFMConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=64, max_position_embeddings=48, time_embedding_dim=16))
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def record_calls(model):
    calls = []

    def hook(module, args, kwargs, output):
        calls.append((float(kwargs["timesteps"].flatten()[0]), kwargs["simplex"].clone(),
                      output.logits.detach().clone()))

    return calls, model.register_forward_hook(hook, with_kwargs=True)


# ---------------------------------------------------------------- loss over all positions / the answer only

def test_loss_with_and_without_the_prompt_by_hand_on_fixed_logits():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, 7, generator=g)
    ids = torch.randint(0, 7, (2, 6), generator=g)
    prompt_lengths = torch.tensor([2, 3])
    attention_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]])
    # by hand: −log softmax(logits)[id], averaged over the chosen positions
    nll = [[-(logits[b, i, ids[b, i]] - math.log(sum(math.exp(float(v)) for v in logits[b, i]))) for i in range(6)]
           for b in range(2)]
    official = sum(float(v) for row in nll for v in row) / 12
    answer_positions = [(0, i) for i in range(2, 6)] + [(1, i) for i in range(3, 5)]
    answer = sum(float(nll[b][i]) for b, i in answer_positions) / len(answer_positions)
    trainable = trainable_positions(ids, attention_mask, prompt_lengths)
    assert abs(float(denoising_loss(logits, ids, loss_positions_mask(trainable, "all"))) - official) < 1e-5
    assert abs(float(denoising_loss(logits, ids, loss_positions_mask(trainable, "answer"))) - answer) < 1e-5
    assert abs(official - answer) > 1e-3
    with pytest.raises(ValueError, match="loss_positions"):
        loss_positions_mask(trainable, "prompt")


@pytest.mark.parametrize("loss_positions", ["answer", "all"])
def test_trainer_scores_the_chosen_positions(tmp_path, loss_positions):
    model = tiny_model()
    args = LogitFMTrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, save_strategy="no",
                                    loss_positions=loss_positions)
    trainer = LogitFMTrainer(model=model, args=args)
    ids = torch.randint(0, V, (2, 8), generator=torch.Generator().manual_seed(1))
    inputs = {"input_ids": ids, "prompt_lengths": torch.tensor([3, 2]),
              "attention_mask": torch.tensor([[1] * 8, [1] * 6 + [0] * 2])}
    torch.manual_seed(2)
    loss, outputs = trainer.compute_loss(model, inputs, return_outputs=True)
    nll = -torch.log_softmax(outputs["logits"].float(), -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    if loss_positions == "all":  # the authors' code: every position, prompt and padding included
        expected = nll.mean()
    else:
        keep = torch.zeros(2, 8, dtype=torch.bool)
        keep[0, 3:] = True
        keep[1, 2:6] = True
        expected = nll[keep].mean()
    torch.testing.assert_close(loss.detach(), expected.detach(), rtol=1e-5, atol=1e-6)


def test_official_training_times_are_uniform_on_0_0_3():
    t = sample_flow_times(1000, "uniform", 0.3, generator=torch.Generator().manual_seed(3))
    by_hand = torch.rand(1000, generator=torch.Generator().manual_seed(3)) * 0.3  # t = rand · max_t
    torch.testing.assert_close(t, by_hand, rtol=0, atol=0)


# ---------------------------------------------------------------- readout with one extra model call

def test_prediction_readout_makes_one_more_call_and_returns_its_argmax():
    model = tiny_model()
    prompt = torch.tensor([[3, 5], [7, 1]])
    settings = dict(max_new_tokens=5, num_steps=3, scheme="randomized", time_grid="log", t_end=0.3,
                    return_dict_in_generate=True, output_history=True)
    calls, handle = record_calls(model)
    try:
        plain = model.generate(prompt, generator=torch.Generator().manual_seed(4), readout="x_t", **settings)
        assert len(calls) == 3 and plain.nfe == 3
        calls.clear()
        out = model.generate(prompt, generator=torch.Generator().manual_seed(4), readout="prediction", **settings)
    finally:
        handle.remove()
    assert len(calls) == 4 and out.nfe == 4  # the extra call counts in NFE
    t_last, simplex_last, logits_last = calls[-1]
    assert abs(t_last - 0.3) < 1e-6  # called at t_end (the authors' max_t)
    # its input is x_{t_end}: the prompt one-hot, then the state the 3 steps reached (same as the plain run's)
    torch.testing.assert_close(simplex_last[:, :2], torch.nn.functional.one_hot(prompt, V).float())
    assert torch.equal(simplex_last[:, 2:].argmax(-1), plain.sequences[:, 2:])
    assert all(torch.equal(a, b) for a, b in zip(out.history, plain.history))
    assert torch.equal(out.sequences[:, 2:], logits_last[:, 2:].argmax(-1))
    assert torch.equal(out.sequences[:, :2], prompt)


# ---------------------------------------------------------------- the ODE coefficient forms

def test_ode_coefficient_forms_by_hand():
    K, t_end = 6, 0.3
    times = time_grid(K, "log", t_end)
    s_end = -math.log(1 - t_end)
    for i in range(K):
        t, t_next = times[i], times[i + 1]
        assert abs(ode_coefficient(t, t_next, "delta_s") - s_end / K) < 1e-12  # Δs, constant on the log grid
        assert abs(ode_coefficient(t, t_next, "h_over_one_minus_t") - (t_next - t) / (1 - t)) < 1e-15
        # the two agree to first order: h/(1 − t) = 1 − e^{−Δs}
        assert abs(ode_coefficient(t, t_next) - (1 - math.exp(-s_end / K))) < 1e-12
    g = torch.Generator().manual_seed(5)
    l = torch.log_softmax(torch.randn(2, 3, V, generator=g), -1)
    l1 = torch.log_softmax(torch.randn(2, 3, V, generator=g), -1)
    ds = s_end / K
    official = (1 - ds) * l + ds * l1  # the authors' update, unnormalised
    step = ode_step(l, l1, times[2], times[3] - times[2], ode_coefficient(times[2], times[3], "delta_s"))
    torch.testing.assert_close(step, torch.log_softmax(official, -1))
    with pytest.raises(ValueError, match="delta_s"):
        ode_coefficient(0.5, 1.0, "delta_s")
    with pytest.raises(ValueError, match="delta_s"):
        LogitFMGenerationConfig(scheme="ode", ode_coefficient="delta_s")  # uniform grid to t = 1: Δs infinite
    with pytest.raises(ValueError, match="ode_coefficient"):
        LogitFMGenerationConfig(ode_coefficient="euler")
    with pytest.raises(ValueError, match="readout"):
        LogitFMGenerationConfig(readout="logits")


def test_official_ode_sampler_by_hand():
    """The authors' loop with t_split above every grid time (all ODE steps), written out here, against the sampler
    with the preset's settings and ``scheme="ode"``: the same final prediction."""
    model = tiny_model()
    prompt = torch.tensor([[2, 9, 4]])
    n, max_t, beta = 5, 0.3, 0.01
    config = LogitFMGenerationConfig.from_preset("kl-flow", max_new_tokens=n, scheme="ode",
                                                 return_dict_in_generate=True)
    calls, handle = record_calls(model)
    try:
        out = model.generate(prompt, generation_config=config, generator=torch.Generator().manual_seed(6))
    finally:
        handle.remove()
    assert out.nfe == n + 1 and len(calls) == n + 1
    # by hand, from the same Dirichlet draw
    lt = sample_dirichlet_log((1, n), V, 1.0, torch.Generator().manual_seed(6))
    one_hot = torch.nn.functional.one_hot(prompt, V).float()
    s_end = -math.log(1 - max_t)
    ds = s_end / n
    with torch.no_grad():
        for that in torch.linspace(0, s_end, n + 1)[:-1]:
            t = 1 - torch.exp(-that)
            xt = torch.cat([one_hot, lt.softmax(-1)], dim=1)
            p = model(simplex=xt, timesteps=t[None]).logits.softmax(-1)[:, 3:]
            l1 = p * math.log(1 - beta + beta / V) + (1 - p) * math.log(beta / V)
            lt = (1 - ds) * lt + ds * l1
        xt = torch.cat([one_hot, lt.softmax(-1)], dim=1)
        final = model(simplex=xt, timesteps=torch.tensor([max_t])).logits.softmax(-1)[:, 3:]
    torch.testing.assert_close(calls[-1][2][:, 3:].softmax(-1), final, rtol=1e-4, atol=1e-5)
    assert torch.equal(out.sequences[:, 3:], final.argmax(-1))


# ---------------------------------------------------------------- presets

def test_sampling_preset_matches_the_published_settings_and_round_trips_json(tmp_path):
    config = LogitFMGenerationConfig.from_preset("kl-flow")
    for name, value in PUBLISHED_SAMPLING.items():
        assert getattr(config, name) == value, name
    config.max_new_tokens = 32
    assert config.resolved_num_steps == 32 and config.nfe == 33  # steps = generated length, + the readout call
    # the official grid and t*: uniform in −log(1 − t) on [0, −log 0.7], ODE while t < 0.28
    times = time_grid(config.resolved_num_steps, config.time_grid, config.resolved_t_end)
    s_end = -math.log(0.7)
    assert all(abs(t - (1 - math.exp(-s_end * i / 32))) < 1e-12 for i, t in enumerate(times))
    schemes = step_schemes(config.scheme, times, config.hybrid_switch_time)
    assert schemes == ["ode" if t < 0.28 else "randomized" for t in times[:-1]]
    assert "ode" in schemes and "randomized" in schemes
    # JSON, both ways
    again = LogitFMGenerationConfig.from_dict(json.loads(config.to_json_string()))
    config.save_pretrained(tmp_path)
    loaded = LogitFMGenerationConfig.from_pretrained(tmp_path)
    for other in (again, loaded):
        for name in (*PUBLISHED_SAMPLING, "max_new_tokens"):
            assert getattr(other, name) == getattr(config, name), name
    assert LogitFMGenerationConfig.from_preset("kl-flow", hybrid_switch_time=0.1).hybrid_switch_time == 0.1
    with pytest.raises(ValueError, match="preset"):
        LogitFMGenerationConfig.from_preset("paper")


def test_saved_configs_without_the_new_fields_load_unchanged(tmp_path):
    LogitFMGenerationConfig(scheme="ode", num_steps=4, max_new_tokens=6).save_pretrained(tmp_path)
    path = tmp_path / "generation_config.json"
    saved = json.loads(path.read_text())
    for name in ("readout", "ode_coefficient"):
        saved.pop(name, None)
    path.write_text(json.dumps(saved))
    loaded = LogitFMGenerationConfig.from_pretrained(tmp_path)
    assert (loaded.readout, loaded.ode_coefficient, loaded.num_steps, loaded.nfe) == ("x_t", "h_over_one_minus_t", 4,
                                                                                      4)
    defaults = LogitFMGenerationConfig()
    assert (defaults.time_grid, defaults.t_end, defaults.hybrid_switch_time, defaults.num_steps) == ("uniform", None, 0.3, 64)


def test_training_preset_matches_the_published_settings_and_round_trips_json(tmp_path):
    args = LogitFMTrainingArguments.from_preset("kl-flow", output_dir=str(tmp_path), report_to=[], use_cpu=True)
    for name, value in PUBLISHED_TRAINING.items():
        assert getattr(args, name) == value, name
    saved = json.loads(args.to_json_string())
    again = LogitFMTrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True,
                                     **{name: saved[name] for name in PUBLISHED_TRAINING})
    for name, value in PUBLISHED_TRAINING.items():
        assert saved[name] == value and getattr(again, name) == value, name
    defaults = LogitFMTrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    assert (defaults.loss_positions, defaults.t_max, defaults.time_distribution) == ("answer", 1.0, "uniform")
    with pytest.raises(ValueError, match="loss_positions"):
        LogitFMTrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, loss_positions="prompt")
