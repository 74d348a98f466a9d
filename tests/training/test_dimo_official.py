"""Di[M]O as its authors run it (yuanzhi-zhu/DiMO, arXiv:2503.15457): every official behaviour is computed by hand
here from the published code's formulas and the option that selects it must reproduce it; the presets must equal
the published configurations field by field and round-trip through JSON."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from tests.utils.models import tiny_llada_config

from hf_dlm import LLaDAModelLM, MaskedImageTransformer
from hf_dlm.generation.initial_state import DiMOInitialState, embedding_noise
from hf_dlm.training.dimo import ConditionDataset, DiMOConfig, DiMOTrainer

GEN_LENGTH = 12
MASK = 95  # the tiny LLaDA's mask id


def _teacher() -> LLaDAModelLM:
    torch.manual_seed(0)
    return LLaDAModelLM(tiny_llada_config(n_layers=1, d_model=32, n_heads=2, n_kv_heads=2)).eval()


def _image_teacher() -> MaskedImageTransformer:
    torch.manual_seed(0)
    return MaskedImageTransformer(codebook_size=9, sample_size=4, hidden_size=32, num_layers=1,
                                  num_attention_heads=2, num_classes=10).eval()


def _args(tmp_path, **overrides) -> DiMOConfig:
    kwargs = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=1, learning_rate=1e-3,
                  generation_length=GEN_LENGTH, report_to=[], use_cpu=True, save_strategy="no", logging_steps=1,
                  disable_tqdm=True, seed=0)
    kwargs.update(overrides)
    return DiMOConfig(**kwargs)


def _prompts(n: int = 8) -> ConditionDataset:
    return ConditionDataset.from_prompts(torch.full((n, 2), 92))


# ---------------------------------------------------------------- embedding noise
class _Embed(torch.nn.Module):
    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding.from_pretrained(table)

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.embed

    def forward(self, ids):
        return self.embed(ids)


@pytest.mark.parametrize("sigma", [0.1, 0.3])
def test_variance_preserving_embedding_noise_is_the_authors_formula(sigma):
    torch.manual_seed(0)
    table = torch.randn(50, 64)
    model = _Embed(table)
    ids = torch.randint(50, (4, 10))
    positions = torch.zeros(4, 10, dtype=torch.bool)
    positions[:, 3:] = True
    e = table[ids]
    for mode in ("variance_preserving", "additive"):
        with embedding_noise(model, sigma, positions, torch.Generator().manual_seed(1), mode=mode):
            out = model(ids)
        n = torch.randn(e.shape, generator=torch.Generator().manual_seed(1))  # the same fixed noise
        # authors' transformer.py: σ·n + √(1 − σ²)·e; the original option: e + σ·n; prompt positions untouched
        expected = sigma * n + math.sqrt(1 - sigma ** 2) * e if mode == "variance_preserving" else e + sigma * n
        torch.testing.assert_close(out[positions], expected[positions], rtol=0, atol=1e-6)
        assert torch.equal(out[~positions], e[~positions])

    # variance: with unit-variance embeddings the official mix keeps variance 1, the additive one gives 1 + σ²
    big = torch.randn(1, 200_000)
    unit = _Embed(big.T.contiguous())  # 200 000 embeddings of width 1, variance 1
    ids = torch.arange(200_000).view(1, -1)
    everywhere = torch.ones_like(ids, dtype=torch.bool)
    with embedding_noise(unit, sigma, everywhere, torch.Generator().manual_seed(2), mode="variance_preserving"):
        vp = unit(ids)
    with embedding_noise(unit, sigma, everywhere, torch.Generator().manual_seed(2), mode="additive"):
        add = unit(ids)
    base_var = float(big.var())
    assert abs(float(vp.var()) - base_var) < 0.01
    assert abs(float(add.var()) - base_var * 1 - sigma ** 2) < 0.01


def test_vp_noise_config_reaches_the_trainer_the_saved_state_and_validation(tmp_path):
    args = _args(tmp_path, embedding_noise_std=0.3, embedding_noise_mode="variance_preserving")
    state = args.initial_state(vocab_size=95)
    assert state.embedding_noise_mode == "variance_preserving"
    assert DiMOInitialState.from_dict(state.to_dict()) == state
    # a state saved before the new fields existed loads with the original behaviour
    old = {k: v for k, v in state.to_dict().items() if k not in ("embedding_noise_mode", "clamp_min_one_mask")}
    loaded = DiMOInitialState.from_dict(old)
    assert loaded.embedding_noise_mode == "additive" and loaded.clamp_min_one_mask is False
    with pytest.raises(ValueError, match="embedding_noise_std"):
        _args(tmp_path, embedding_noise_std=1.5, embedding_noise_mode="variance_preserving")
    with pytest.raises(ValueError, match="embedding_noise_mode"):
        _args(tmp_path, embedding_noise_mode="vp")

    # the trainer's generator forward applies the official mix at the generated positions only: the hook runs last
    trainer = DiMOTrainer(_teacher(), args, train_dataset=_prompts())
    embed = trainer.model.get_input_embeddings()
    seen = []

    def register(hook):  # put a recorder after embedding_noise's hook, whenever that is registered
        handle = torch.nn.Embedding.register_forward_hook(embed, hook)
        torch.nn.Embedding.register_forward_hook(embed, lambda m, a, out: seen.append((a[0], out)))
        return handle

    embed.register_forward_hook = register
    cond = trainer._conditions(trainer.data_collator([_prompts()[i] for i in range(4)]))
    trainer.generator_forward(trainer.model, cond)
    assert seen
    ids, hooked = seen[-1]
    clean = embed.weight[ids]
    # recover n from the output: standard normal noise mixed as σ·n + √(1 − σ²)·e; the prompt is untouched
    n = (hooked[:, 2:] - math.sqrt(1 - 0.09) * clean[:, 2:]) / 0.3
    assert abs(float(n.mean())) < 0.1 and abs(float(n.std()) - 1) < 0.1
    assert torch.equal(hooked[:, :2], clean[:, :2])


# ---------------------------------------------------------------- exact re-masking and the clamp
@pytest.mark.parametrize("schedule", ["arccos", "cosine"])
def test_exact_remask_masks_round_length_times_ratio_in_every_row(tmp_path, schedule):
    args = _args(tmp_path, remask_mode="exact", remask_schedule=schedule, generation_length=256)
    trainer = DiMOTrainer(_teacher(), args, train_dataset=_prompts())
    x0 = torch.randint(90, (1000, 2 + 256))
    generated = torch.zeros_like(x0, dtype=torch.bool)
    generated[:, 2:] = True
    torch.manual_seed(0)
    noisy, masked, ratio = trainer.remask(x0, generated)
    # authors' get_mask_code: num = round(L·r).clamp(min=1), exactly that many positions, never in the prompt
    expected = (256 * ratio).round().clamp(min=1).long()
    assert torch.equal(masked.sum(1), expected)
    assert torch.all(masked.sum(1) >= 1)
    assert not masked[:, :2].any()
    assert torch.equal(noisy, torch.where(masked, torch.full_like(x0, MASK), x0))
    # the ratio follows the schedule: γ(u), u ~ U(0, 1) → E[r] = 2/π for arccos(u)/(π/2) and for cos(πu/2)
    assert abs(float(ratio.mean()) - 2 / math.pi) < 0.03
    # the original mode does not give exact counts
    independent = DiMOTrainer(_teacher(), _args(tmp_path, remask_schedule=schedule, generation_length=256),
                              train_dataset=_prompts())
    torch.manual_seed(0)
    _, masked_i, ratio_i = independent.remask(x0, generated)
    assert not torch.equal(masked_i.sum(1), (256 * ratio_i).round().clamp(min=1).long())


def test_exact_remask_clamps_to_one_for_tiny_ratios(tmp_path, monkeypatch):
    trainer = DiMOTrainer(_teacher(), _args(tmp_path, remask_mode="exact"), train_dataset=_prompts())
    monkeypatch.setattr(type(trainer.noise_scheduler.schedule), "draw",
                        lambda self, batch, device="cpu", generator=None: torch.full((batch, 1), 0.01))
    x0 = torch.randint(90, (50, 2 + GEN_LENGTH))
    generated = torch.zeros_like(x0, dtype=torch.bool)
    generated[:, 2:] = True
    _, masked, _ = trainer.remask(x0, generated)
    assert torch.all(masked.sum(1) == 1)  # round(12 · 0.01) = 0 → clamped to 1


def test_initial_state_clamp_min_one_mask():
    for clamp in (False, True):
        state = DiMOInitialState(r_init=0.02, vocab_size=12, clamp_min_one_mask=clamp)
        x = state.sample(1000, 16, mask_token_id=12, generator=torch.Generator().manual_seed(0))
        # authors' generate_one_step: round(L·r_init).clamp(min=1); round(16 · 0.02) = 0
        expected = max(round(16 * 0.02), 1) if clamp else round(16 * 0.02)
        assert torch.all((x == 12).sum(1) == expected)
    # where round(L·r) ≥ 1 the clamp changes nothing, draw for draw
    a = DiMOInitialState(r_init=0.6, vocab_size=12).sample(8, 16, 12, generator=torch.Generator().manual_seed(4))
    b = DiMOInitialState(r_init=0.6, vocab_size=12, clamp_min_one_mask=True).sample(
        8, 16, 12, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)


# ---------------------------------------------------------------- the auxiliary's sample
@pytest.mark.parametrize("mode", ["reuse", "fresh"])
def test_auxiliary_step_reuses_or_redraws_the_generator_sample(tmp_path, mode):
    trainer = DiMOTrainer(_teacher(), _args(tmp_path, auxiliary_sample=mode, auxiliary_updates_per_step=2),
                          train_dataset=_prompts())
    trainer.create_optimizer()
    generator_samples, auxiliary_inputs = [], []
    original_loss, original_step = trainer.compute_loss, trainer.auxiliary_step

    def compute_loss(*args, **kwargs):
        loss = original_loss(*args, **kwargs)
        generator_samples.append(trainer._pending[0].clone())
        return loss

    def auxiliary_step(x_theta, generated, cond, logits=None):
        auxiliary_inputs.append(x_theta.clone())
        return original_step(x_theta, generated, cond, logits)

    trainer.compute_loss, trainer.auxiliary_step = compute_loss, auxiliary_step
    inputs = trainer.data_collator([_prompts()[i] for i in range(4)])
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by the Trainer's loop, which this test bypasses
    trainer.training_step(trainer.model, inputs)
    assert len(generator_samples) == 1 and len(auxiliary_inputs) == 2
    if mode == "reuse":  # Algorithm 1: the auxiliary fits the step's own x_θ
        assert all(torch.equal(x, generator_samples[0]) for x in auxiliary_inputs)
    else:  # authors' code: a new x_init and generator sample for every auxiliary update
        assert all(not torch.equal(x, generator_samples[0]) for x in auxiliary_inputs)
        assert not torch.equal(auxiliary_inputs[0], auxiliary_inputs[1])
        assert all(torch.equal(x[:, :2], generator_samples[0][:, :2]) for x in auxiliary_inputs)  # same prompts


# ---------------------------------------------------------------- mask-token sampling
def test_generator_sample_draws_the_mask_token_only_when_allowed(tmp_path):
    for allowed in (False, True):
        trainer = DiMOTrainer(_image_teacher(), _args(tmp_path, generation_length=None, sample_mask_tokens=allowed),
                              train_dataset=ConditionDataset.from_labels(list(range(10))))
        # logits that put almost all mass on the mask token (id 9 of a 9-code book + mask)
        logits = torch.zeros(200, 16, 10)
        logits[..., 9] = 3.0
        x_init = torch.zeros(200, 16, dtype=torch.long)
        generated = torch.ones_like(x_init, dtype=torch.bool)
        torch.manual_seed(0)
        x = trainer.sample_tokens(logits, x_init, generated, 1.0, trainer.args.sample_mask_tokens)
        # official: Categorical(softmax(z)) over all codebook + 1 logits → P(mask) = e³ / (e³ + 9)
        p_mask = math.exp(3) / (math.exp(3) + 9)
        if allowed:
            assert abs(float((x == 9).float().mean()) - p_mask) < 0.02
        else:
            assert not torch.any(x == 9)
    # evaluation samples never hold the mask token, whatever the training switch
    assert not torch.any(trainer.sample_tokens(logits, x_init, generated, 1.0) == 9)


def test_compute_loss_uses_the_mask_token_switch(tmp_path):
    trainer = DiMOTrainer(_image_teacher(), _args(tmp_path, generation_length=None, sample_mask_tokens=True),
                          train_dataset=ConditionDataset.from_labels(list(range(10))))
    calls = []
    original = trainer.sample_tokens

    def sample_tokens(logits, x_init, generated, temperature, allow_mask=False):
        calls.append(allow_mask)
        return original(logits, x_init, generated, temperature, allow_mask)

    trainer.sample_tokens = sample_tokens
    inputs = trainer.data_collator([ConditionDataset.from_labels(list(range(10)))[i] for i in range(4)])
    trainer.compute_loss(trainer.model, inputs)
    assert calls == [True]


# ---------------------------------------------------------------- the soft auxiliary loss
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_soft_auxiliary_loss_is_the_authors_formula(tmp_path, alpha):
    trainer = DiMOTrainer(_teacher(), _args(tmp_path, alpha_fake=alpha, auxiliary_soft_temperature=2.0),
                          train_dataset=_prompts())
    torch.manual_seed(0)
    aux_logits, gen_logits = torch.randn(3, 14, 100), torch.randn(3, 14, 100)
    x_theta = torch.randint(90, (3, 14))
    masked = torch.rand(3, 14) < 0.5
    masked[:, 0] = True
    loss = trainer.auxiliary_loss(aux_logits, x_theta, masked, gen_logits if alpha > 0 else None)
    # by hand: hard = CE with label smoothing 0.1 over the masked tokens (mean); soft = Σ_masked
    # [T² · (1/V) Σ_v p_v (log p_v − log q_v)] / #masked, p = softmax(z_gen/T), q = softmax(z_aux/T)
    T, V = 2.0, 100
    eps = 0.1
    log_q1 = aux_logits[masked].log_softmax(-1)
    target = x_theta[masked]
    hard = (-(1 - eps) * log_q1.gather(1, target[:, None]).squeeze(1) - eps / V * log_q1.sum(-1)).mean()
    p = (gen_logits[masked] / T).softmax(-1)
    log_q = (aux_logits[masked] / T).log_softmax(-1)
    soft = (T ** 2 * (p * (p.log() - log_q)).sum(-1) / V).sum() / masked.sum()
    torch.testing.assert_close(loss, alpha * soft + (1 - alpha) * hard, rtol=1e-5, atol=1e-6)
    if alpha == 0.0:  # today's hard loss, unchanged
        torch.testing.assert_close(loss, F.cross_entropy(aux_logits[masked], target, label_smoothing=0.1))


@pytest.mark.parametrize("sample", ["reuse", "fresh"])
def test_soft_loss_trains_in_both_sampling_modes(tmp_path, sample):
    trainer = DiMOTrainer(_teacher(), _args(tmp_path, alpha_fake=0.5, auxiliary_sample=sample, max_steps=2),
                          train_dataset=_prompts())
    trainer.train()
    assert trainer.state.global_step == 2


def test_all_official_switches_train_end_to_end_on_an_image_teacher(tmp_path):
    args = DiMOConfig.from_preset("maskgit-imagenet", output_dir=str(tmp_path / "out"), per_device_train_batch_size=4,
                                  max_steps=2, learning_rate=1e-3, auxiliary_learning_rate=1e-3, report_to=[],
                                  use_cpu=True, bf16=False, save_strategy="no", disable_tqdm=True, alpha_fake=0.5)
    trainer = DiMOTrainer(_image_teacher(), args, train_dataset=ConditionDataset.from_labels(list(range(10))))
    trainer.train()
    assert trainer.state.global_step == 2


# ---------------------------------------------------------------- presets
PUBLISHED = {  # written from yuanzhi-zhu/DiMO configs/DIMO_*.yaml and scripts/launch_DIMO_*.sh
    "maskgit-imagenet": dict(
        learning_rate=1e-5, auxiliary_learning_rate=1e-5, per_device_train_batch_size=64,
        gradient_accumulation_steps=1, max_steps=50001, r_init=0.6, r_init_max=None, embedding_noise_std=0.1,
        remask_schedule="arccos", teacher_cfg_scale=2.0, seed=3407, ema_decay=0.9999, divergence="fkl",
        jeffreys_beta=0.0, loss_normalization="sum", loss_weighting="constant", generator_temperature=1.0,
        auxiliary_label_smoothing=0.1, auxiliary_updates_per_step=1, alpha_fake=0.0, auxiliary_soft_temperature=1.0,
        freeze_input_embeddings=True, freeze_output_embeddings=False, max_grad_norm=1.0, warmup_steps=100,
        adam_beta1=0.9, adam_beta2=0.999, weight_decay=0.0, bf16=True),
    "meissonic": dict(
        learning_rate=1e-6, auxiliary_learning_rate=1e-6, per_device_train_batch_size=2,
        gradient_accumulation_steps=8, max_steps=20000, r_init=0.5, r_init_max=None, embedding_noise_std=0.3,
        remask_schedule="cosine", teacher_cfg_scale=4.0, seed=42, ema_decay=0.9999, divergence="fkl",
        jeffreys_beta=0.0, loss_normalization="sum", loss_weighting="constant", generator_temperature=1.0,
        auxiliary_label_smoothing=0.1, auxiliary_updates_per_step=1, alpha_fake=0.0, auxiliary_soft_temperature=1.0,
        freeze_input_embeddings=True, freeze_output_embeddings=False, max_grad_norm=1.0, warmup_steps=100,
        adam_beta1=0.9, adam_beta2=0.999, weight_decay=0.0, bf16=True),
}
OFFICIAL_SWITCHES = dict(embedding_noise_mode="variance_preserving", remask_mode="exact", clamp_min_one_mask=True,
                         auxiliary_sample="fresh", sample_mask_tokens=True)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_preset_matches_the_published_configuration_and_round_trips(tmp_path, name):
    config = DiMOConfig.from_preset(name, output_dir=str(tmp_path / "out"), use_cpu=True)
    for field, value in {**PUBLISHED[name], **OFFICIAL_SWITCHES}.items():
        assert getattr(config, field) == value, field
    assert str(getattr(config.lr_scheduler_type, "value", config.lr_scheduler_type)) == "constant_with_warmup"
    checkpointing = getattr(config, "activation_checkpointing", None)
    if checkpointing is None:
        checkpointing = config.gradient_checkpointing
    assert checkpointing is (name == "meissonic")
    # JSON round trip: to_dict / to_json_string → DiMOConfig(**d) gives the same configuration
    as_dict = config.to_dict()
    assert DiMOConfig(**as_dict).to_dict() == as_dict
    from_json = DiMOConfig(**json.loads(config.to_json_string()))
    assert from_json.to_dict() == as_dict
    # overrides win
    assert DiMOConfig.from_preset(name, output_dir=str(tmp_path), use_cpu=True, max_steps=7).max_steps == 7
    with pytest.raises(ValueError, match="unknown Di"):
        DiMOConfig.from_preset("nope", output_dir=str(tmp_path))


def test_defaults_keep_the_original_behaviour_and_old_configs_load(tmp_path):
    config = _args(tmp_path)
    assert (config.embedding_noise_mode, config.remask_mode, config.clamp_min_one_mask, config.auxiliary_sample,
            config.sample_mask_tokens, config.alpha_fake, config.teacher_cfg_scale) == \
        ("additive", "independent", False, "reuse", False, 0.0, 1.0)
    new = ("embedding_noise_mode", "remask_mode", "clamp_min_one_mask", "auxiliary_sample", "sample_mask_tokens",
           "alpha_fake", "auxiliary_soft_temperature")
    saved = {k: v for k, v in config.to_dict().items() if k not in new}  # a config saved before these fields
    assert DiMOConfig(**saved).to_dict() == config.to_dict()
    assert "1 (the default)" in DiMOConfig.__dataclass_fields__["teacher_cfg_scale"].metadata["help"]
