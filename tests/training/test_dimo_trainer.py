"""DiMOTrainer (Algorithm 1): which model each loss updates, exact resume, one-step use, bad input."""

import copy

import pytest
import torch
from tests.utils.distributed import run_torchrun
from tests.utils.models import tiny_llada_config

from hf_dlm import LLaDAModelLM, MaskedImageTransformer
from hf_dlm.training.dimo import ConditionDataset, DiMOConfig, DiMOTrainer

GEN_LENGTH = 12


def _teacher() -> LLaDAModelLM:
    torch.manual_seed(0)
    return LLaDAModelLM(tiny_llada_config(n_layers=1, d_model=32, n_heads=2, n_kv_heads=2)).eval()


def _args(tmp_path, mode: str, **overrides) -> DiMOConfig:
    kwargs = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=2, learning_rate=1e-3,
                  generation_length=GEN_LENGTH, memory_mode=mode, lora_r=4, report_to=[], use_cpu=True,
                  save_strategy="no", logging_steps=1, disable_tqdm=True, embedding_noise_std=0.1, seed=0)
    kwargs.update(overrides)
    return DiMOConfig(**kwargs)


def _prompts(n: int = 16) -> ConditionDataset:
    return ConditionDataset.from_prompts(torch.full((n, 2), 92))


def _snapshot(params: dict) -> dict:
    return {n: p.detach().clone() for n, p in params.items()}


def _changed(before: dict, after: dict) -> bool:
    return any(not torch.equal(before[n], after[n]) for n in before)


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_each_loss_updates_only_its_model_and_the_teacher_never_changes(tmp_path, mode):
    teacher = _teacher()
    teacher_state = copy.deepcopy(teacher.state_dict())
    trainer = DiMOTrainer(teacher, _args(tmp_path, mode, ema_decay=0.5), train_dataset=_prompts())
    trainer.create_optimizer()
    generator, auxiliary = trainer._trainable("generator"), trainer._trainable("auxiliary")
    assert generator and auxiliary and not {id(p) for p in generator.values()} & {id(p) for p in auxiliary.values()}
    inputs = trainer.data_collator([_prompts()[i] for i in range(4)])

    # the auxiliary update (lines 12–13) on the generator's samples: ψ moves, θ does not
    trainer.model.train()
    trainer.compute_loss(trainer.model, inputs)
    generator_before, auxiliary_before = _snapshot(generator), _snapshot(auxiliary)
    x_theta, generated, cond = trainer._pending
    trainer.auxiliary_step(x_theta, generated, cond)
    assert not _changed(generator_before, _snapshot(generator))
    assert _changed(auxiliary_before, _snapshot(auxiliary))
    assert all(p.grad is None for p in auxiliary.values())  # zeroed after its own step

    # the generator loss (now that ψ ≠ φ, g ≠ 0): gradients reach θ only
    loss = trainer.compute_loss(trainer.model, inputs)
    loss.backward()
    assert all(p.grad is not None for p in generator.values())
    assert any(p.grad.abs().sum() > 0 for p in generator.values())
    assert all(p.grad is None for p in auxiliary.values())
    trainer.model.zero_grad(set_to_none=True)

    # a full training run: θ and ψ move, φ is bit-for-bit the same
    trainer.train()
    assert _changed(generator_before, _snapshot(generator))
    base = trainer.teacher if mode == "full" else trainer.model.get_base_model()
    for name, value in teacher_state.items():
        key = name if mode == "full" else name.replace(".weight", ".base_layer.weight")
        tensor = base.state_dict().get(key, base.state_dict().get(name))
        assert torch.equal(tensor, value), name


def test_frozen_output_layer_stays_fixed_in_full_mode(tmp_path):
    """``freeze_output_embeddings`` (what the full text student needs to match LoRA, README): after training, the
    generator's and auxiliary's output layers and input embeddings equal the teacher's; their other weights moved."""
    teacher = _teacher()
    head, embeddings = (teacher.get_output_embeddings().weight.detach().clone(),
                        teacher.get_input_embeddings().weight.detach().clone())
    args = _args(tmp_path, "full", freeze_output_embeddings=True, max_steps=3)
    trainer = DiMOTrainer(teacher, args, train_dataset=_prompts())
    trainer.create_optimizer()
    for role, module in (("generator", trainer.model), ("auxiliary", trainer.auxiliary)):
        trainable = {id(p) for p in trainer._trainable(role).values()}
        frozen = {id(module.get_output_embeddings().weight), id(module.get_input_embeddings().weight)}
        assert trainable and not trainable & frozen
    before = {role: _snapshot(trainer._trainable(role)) for role in ("generator", "auxiliary")}
    trainer.train()
    for module in (trainer.model, trainer.auxiliary):
        assert torch.equal(module.get_output_embeddings().weight, head)
        assert torch.equal(module.get_input_embeddings().weight, embeddings)
    for role in ("generator", "auxiliary"):
        assert _changed(before[role], _snapshot(trainer._trainable(role)))


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_resume_reproduces_the_uninterrupted_run(tmp_path, mode):
    common = dict(max_steps=4, save_strategy="steps", save_steps=2, ema_decay=0.9, auxiliary_updates_per_step=2)
    straight = DiMOTrainer(_teacher(), _args(tmp_path / "a", mode, **common), train_dataset=_prompts())
    straight.train()
    resumed = DiMOTrainer(_teacher(), _args(tmp_path / "b", mode, **common), train_dataset=_prompts())
    resumed.train(resume_from_checkpoint=str(tmp_path / "a" / "out" / "checkpoint-2"))
    for role in ("generator", "auxiliary"):
        a, b = straight._trainable(role), resumed._trainable(role)
        for name in a:
            torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=f"{role} {name}")
    for name, tensor in straight.ema.shadow.items():
        assert torch.equal(tensor, resumed.ema.shadow[name])
    assert straight.auxiliary_optimizer.state_dict()["state"].keys() == \
        resumed.auxiliary_optimizer.state_dict()["state"].keys()


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_distilled_text_generator_saves_and_generates_in_one_call(tmp_path, mode):
    trainer = DiMOTrainer(_teacher(), _args(tmp_path, mode, r_init=0.5, ema_decay=0.9), train_dataset=_prompts())
    trainer.train()
    trainer.save_generator(tmp_path / "student")
    student = LLaDAModelLM.from_pretrained(tmp_path / "student").eval()
    assert student.config.dimo_initial_state["r_init"] == 0.5
    assert student.generation_config.steps == 1 and student.generation_config.max_new_tokens == GEN_LENGTH
    torch.testing.assert_close(student(torch.full((1, 4), 7)).logits,
                               trainer.get_generator()(torch.full((1, 4), 7)).logits)
    inputs: list[torch.Tensor] = []
    handle = student.register_forward_pre_hook(lambda module, args, kwargs: inputs.append(kwargs["input_ids"]),
                                               with_kwargs=True)
    prompt = torch.full((3, 2), 92)
    out = student.generate(prompt, stop_at_eos=False, return_dict_in_generate=True,
                           generator=torch.Generator().manual_seed(0))
    handle.remove()
    assert out.nfe == 1 and len(inputs) == 1
    x_init = inputs[0]
    assert torch.all((x_init[:, 2:] == 95).sum(1) == GEN_LENGTH // 2)  # r_init · L masks, as in training
    assert torch.all(x_init[:, 2:][x_init[:, 2:] != 95] < 92)  # the rest: random non-special tokens
    assert out.sequences.shape == (3, 2 + GEN_LENGTH)
    assert not torch.any(out.sequences[:, 2:] == 95)


def _image_teacher(**kwargs) -> MaskedImageTransformer:
    torch.manual_seed(0)
    return MaskedImageTransformer(codebook_size=9, sample_size=4, hidden_size=32, num_layers=1,
                                  num_attention_heads=2, **kwargs).eval()


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_class_conditional_image_teacher_with_cfg_and_one_step_pipeline(tmp_path, mode):
    from hf_dlm import MaskedImagePipeline, MaskGITScheduler

    teacher = _image_teacher(num_classes=10)
    labels = ConditionDataset.from_labels(list(range(10)) * 2)
    args = _args(tmp_path, mode, teacher_cfg_scale=2.0, generation_length=None, r_init=0.5)
    trainer = DiMOTrainer(teacher, args, train_dataset=labels, eval_dataset=labels)
    trainer.train()
    metrics = trainer.evaluate()
    assert set(metrics) >= {"eval_teacher_pseudo_nll", "eval_unigram_entropy"}
    trainer.save_generator(tmp_path / "student")
    student = MaskedImageTransformer.from_pretrained(tmp_path / "student")
    assert student.config.dimo_initial_state["r_init"] == 0.5
    calls = []
    student.register_forward_pre_hook(lambda module, args, kwargs: calls.append(args[0].clone()), with_kwargs=True)
    pipe = MaskedImagePipeline(vqvae=None, transformer=student, scheduler=MaskGITScheduler(mask_token_id=9))
    pipe.set_progress_bar_config(disable=True)
    tokens = pipe(class_labels=[1, 2, 3], num_inference_steps=1, guidance_scale=1.0, output_type="latent",
                  height=4, width=4, generator=torch.Generator().manual_seed(0)).images
    assert len(calls) == 1
    assert torch.all((calls[0] == 9).flatten(1).sum(1) == 8)  # x_init: half of the 16 tokens masked
    assert tokens.shape == (3, 4, 4) and not torch.any(tokens == 9)
    # left unset, steps and guidance follow the one-step recipe: the same single call, the same tokens
    default = pipe(class_labels=[1, 2, 3], output_type="latent", height=4, width=4,
                   generator=torch.Generator().manual_seed(0)).images
    assert len(calls) == 2 and torch.equal(default, tokens)
    # a teacher (no initial state) still defaults to 12 guided steps
    teacher_calls = []
    teacher.register_forward_pre_hook(lambda module, args, kwargs: teacher_calls.append(args[0].shape[0]),
                                      with_kwargs=True)
    teacher_pipe = MaskedImagePipeline(vqvae=None, transformer=teacher, scheduler=MaskGITScheduler(mask_token_id=9))
    teacher_pipe.set_progress_bar_config(disable=True)
    teacher_pipe(class_labels=[1], output_type="latent", height=4, width=4)
    assert teacher_calls == [2] * 12  # 12 steps, each one batched CFG pass (null + conditional)


def test_text_conditioned_image_teacher(tmp_path):
    from hf_dlm.recipes.digits import build_digits_pipeline

    pipe = build_digits_pipeline(hidden_size=32, num_layers=1, text_hidden_size=32)
    captions = pipe.tokenizer(["a drawing of the digit one", "the number 2"], padding="max_length",
                              return_tensors="pt")["input_ids"]
    null = pipe.tokenizer([""], padding="max_length", return_tensors="pt")["input_ids"]
    data = ConditionDataset.from_captions(captions.repeat(4, 1))
    trainer = DiMOTrainer(pipe.transformer, _args(tmp_path, "lora", teacher_cfg_scale=1.5, generation_length=None),
                          train_dataset=data, text_encoder=pipe.text_encoder, null_text_input_ids=null)
    trainer.train()
    assert trainer.state.global_step == 2
    assert all(h["divergence_per_token"] >= 0 for h in trainer.state.log_history if "divergence_per_token" in h)


def test_custom_f_divergence_is_used(tmp_path):
    trainer = DiMOTrainer(_teacher(), _args(tmp_path, "full", max_steps=1), train_dataset=_prompts(),
                          f_divergence=lambda u: (u - 1) ** 2)  # Pearson χ²
    trainer.train()
    assert callable(trainer.divergence)


def test_bad_input_raises_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"`r_init` must lie in \[0, 1\], got 1.2"):
        _args(tmp_path, "full", r_init=1.2)
    with pytest.raises(ValueError, match="`divergence` must be one of .*got 'wasserstein'"):
        _args(tmp_path, "full", divergence="wasserstein")
    with pytest.raises(ValueError, match="memory_mode"):
        _args(tmp_path, "full", memory_mode="offload")
    no_mask = _teacher()
    no_mask.config.mask_token_id = None
    with pytest.raises(ValueError, match="`teacher` is not a masked diffusion model.*mask_token_id"):
        DiMOTrainer(no_mask, _args(tmp_path, "full"), train_dataset=_prompts())
    other = LLaDAModelLM(tiny_llada_config(n_layers=1, d_model=32, n_heads=2, n_kv_heads=2, embedding_size=128))
    with pytest.raises(ValueError, match="`generator` has 128 logits per position but the teacher has 100"):
        DiMOTrainer(_teacher(), _args(tmp_path, "full"), train_dataset=_prompts(), generator=other)
    with pytest.raises(ValueError, match="cannot be given with memory_mode='lora'"):
        DiMOTrainer(_teacher(), _args(tmp_path, "lora"), train_dataset=_prompts(), auxiliary=_teacher())
    with pytest.raises(ValueError, match="generation_length"):
        DiMOTrainer(_teacher(), _args(tmp_path, "full", generation_length=None), train_dataset=_prompts())


@pytest.mark.distributed
@pytest.mark.parametrize("mode", ["full", "lora"])
def test_two_process_torchrun(tmp_path, mode):
    """Both ranks end with the same generator and auxiliary (gradients are averaged across processes)."""
    import json

    run_torchrun("ddp_dimo.py", tmp_path, mode)
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for report in reports:
        assert report["world_size"] == 2 and report["steps"] == 3
        assert report["wrapped"]["generator"] == "DistributedDataParallel"
        if mode == "full":
            assert report["wrapped"]["auxiliary"] == "DistributedDataParallel"
    for role in ("generator", "auxiliary"):
        assert reports[0]["sums"][role] == pytest.approx(reports[1]["sums"][role], rel=1e-6, abs=1e-6)
