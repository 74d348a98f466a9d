"""Nothing silent in training: the SFT collator honours −100 labels and refuses prompts that leave no answer, the
Trainers refuse bad batches, configs refuse bad values by name, and resuming neither restarts the optimizer quietly
nor steps past ``max_steps``."""

import logging
import math
import os
import shutil

import pytest
import torch
import torch.nn.functional as F
from tests.utils.models import tiny_llada_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import Trainer

from hf_dlm import LLaDAModelLM, LogitFMConfig, LogitFMModel, MaskedImageTransformer
from hf_dlm._training_guards import GuardedTrainingArguments, ResumeGuardMixin
from hf_dlm.multimodal.trainer import ModalitySplitTrainer, ModalitySplitTrainingArguments
from hf_dlm.training import (MaskedDiffusionSFTCollator, MaskedDiffusionTrainer, MaskedDiffusionTrainingArguments,
                             MaskedImageTrainer, MaskedImageTrainingArguments, TextToImageModules, TokenIdsDataset)
from hf_dlm.training.dimo import ConditionDataset, DiMOConfig, DiMOTrainer
from hf_dlm.training.logit_fm import LogitFMTrainer, LogitFMTrainingArguments
from hf_dlm.training.mdm_loss import trainable_positions

EOS, MASK = 93, 95
HYPOTHESIS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _mdm_args(tmp_path, **overrides) -> MaskedDiffusionTrainingArguments:
    kwargs = dict(output_dir=str(tmp_path), report_to=[], use_cpu=True, disable_tqdm=True, save_strategy="no")
    kwargs.update(overrides)
    return MaskedDiffusionTrainingArguments(**kwargs)


# ------------------------------------------------------------------------------------ 1. the SFT collator
def _expected_collation(rows, prompts, labels, max_length):
    """A plain re-implementation of the documented rule: the error the collator must raise (a regex naming the
    argument) or the batch it must build."""
    cut_rows, cut_labels = [], []
    for row, prompt, label in zip(rows, prompts, labels):
        if prompt < 0 or prompt > len(row):
            return "prompt_length", None
        cut = bool(max_length) and len(row) > max_length
        row = row[:max_length] if cut else row
        label = label[:max_length] if cut else label
        if prompt >= len(row):
            return "prompt_length.*`max_length`" if cut else "prompt_length` = .* leaves no answer token", None
        if all(value == -100 for value in label[prompt:]):
            return "labels", None
        cut_rows.append(row)
        cut_labels.append([-100 if j < prompt else value for j, value in enumerate(label)])
    length = max(len(r) for r in cut_rows)
    ids = [r + [EOS] * (length - len(r)) for r in cut_rows]
    lab = [lab_row + [EOS] * (length - len(lab_row)) for lab_row in cut_labels]
    return None, (ids, lab)


@st.composite
def _sft_features(draw):
    features, rows, prompts, labels = [], [], [], []
    for _ in range(draw(st.integers(1, 4))):
        row = draw(st.lists(st.integers(0, 90), min_size=1, max_size=10))
        prompt = draw(st.integers(-1, len(row) + 1))
        excluded = draw(st.lists(st.booleans(), min_size=len(row), max_size=len(row)))
        label = [-100 if out else token for token, out in zip(row, excluded)]
        feature = {"input_ids": row, "prompt_length": prompt}
        if draw(st.booleans()):
            feature["labels"] = label
        else:
            label = list(row)
        features.append(feature)
        rows.append(row)
        prompts.append(prompt)
        labels.append(label)
    max_length = draw(st.one_of(st.none(), st.integers(1, 12)))
    return features, rows, prompts, labels, max_length


@HYPOTHESIS
@given(_sft_features())
def test_collator_property_trains_exactly_the_allowed_positions_or_refuses_by_name(case):
    features, rows, prompts, labels, max_length = case
    error, expected = _expected_collation(rows, prompts, labels, max_length)
    collator = MaskedDiffusionSFTCollator(eos_token_id=EOS, max_length=max_length)
    if error is not None:
        with pytest.raises(ValueError, match=error):
            collator(features)
        return
    batch = collator(features)
    assert batch["input_ids"].tolist() == expected[0]
    assert batch["labels"].tolist() == expected[1]
    assert batch["prompt_lengths"].tolist() == prompts
    # the trainer's view of the batch agrees with the collator's labels
    trained = trainable_positions(batch["input_ids"], None, batch["prompt_lengths"], batch["labels"])
    assert torch.equal(trained, batch["labels"] != -100)


@HYPOTHESIS
@given(st.integers(0, 8), st.integers(0, 8), st.integers(1, 12))
def test_collator_property_prompt_answer_format_under_truncation(prompt_len, answer_len, max_length):
    feature = {"prompt_ids": list(range(1, prompt_len + 1)), "answer_ids": list(range(40, 40 + answer_len))}
    collator = MaskedDiffusionSFTCollator(eos_token_id=EOS, max_length=max_length)
    row_len = min(prompt_len + answer_len + 1, max_length)  # + the appended EOS
    if prompt_len >= row_len:
        with pytest.raises(ValueError, match=rf"`prompt_length` = {prompt_len} .*`max_length`={max_length}"):
            collator([feature])
        return
    batch = collator([feature])
    assert batch["input_ids"].shape == (1, row_len)
    assert (batch["labels"][0, :prompt_len] == -100).all() and (batch["labels"][0, prompt_len:] != -100).all()


def test_collator_labels_compose_with_the_prompt_and_keep_the_appended_eos():
    batch = MaskedDiffusionSFTCollator(eos_token_id=EOS)([
        {"prompt_ids": [1, 2], "answer_ids": [3, 4, 5], "labels": [1, -100, 3, -100, 5]},
        {"prompt_ids": [6], "answer_ids": [7], "labels": [-100, 7]},
    ])
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5, EOS], [6, 7, EOS, EOS, EOS, EOS]]
    # prompt positions are -100 whatever their label; user -100 stays -100; EOS and its padding are trained
    assert batch["labels"].tolist() == [[-100, -100, 3, -100, 5, EOS], [-100, 7, EOS, EOS, EOS, EOS]]


@pytest.mark.parametrize("feature, error, match", [
    ({"input_ids": [1, 2, 3], "prompt_length": -1}, ValueError, r"`prompt_length` must be >= 0, got -1"),
    ({"input_ids": [1, 2, 3], "prompt_length": 3}, ValueError, r"`prompt_length` = 3 leaves no answer"),
    ({"input_ids": [1, 2, 3], "prompt_length": 4}, ValueError, r"`prompt_length` = 4 exceeds"),
    ({"input_ids": [1, 2, 3], "prompt_length": 1.0}, TypeError, r"`prompt_length` must be an integer, got 1.0"),
    ({"input_ids": [1, 2, 3], "prompt_length": True}, TypeError, r"`prompt_length` must be an integer, got True"),
    ({"input_ids": [1, 2, 3]}, ValueError, r"no `prompt_length`"),
    ({"input_ids": [1, 2], "prompt_length": 0, "labels": [1]}, ValueError, r"`labels` must align .*1 labels"),
    ({"input_ids": [1, 2], "prompt_length": 0, "labels": [1, 7]}, ValueError, r"`labels`\[1\] = 7 is neither"),
    ({"input_ids": [1, 2], "prompt_length": 1, "labels": [1, -100]}, ValueError, r"every answer position .*-100"),
    ({"input_ids": [1, -2], "prompt_length": 0}, ValueError, r"`input_ids` holds token id -2"),
    ({"input_ids": [1.0, 2.0], "prompt_length": 0}, TypeError, r"`input_ids` must hold integer token ids"),
    ({"prompt_ids": [1], "answer_ids": ["a"]}, TypeError, r"`answer_ids` must hold integer token ids"),
    ({"prompt_ids": [1], "answer_ids": [2], "input_ids": [1, 2]}, ValueError, r"`prompt_ids` and `answer_ids`, or"),
    ({"prompt_ids": [1]}, ValueError, r"no `answer_ids`"),
])
def test_collator_refuses_bad_features_by_name(feature, error, match):
    with pytest.raises(error, match=match):
        MaskedDiffusionSFTCollator(eos_token_id=EOS)([feature])


def test_collator_refuses_empty_batches_bad_settings_and_ids_beyond_the_tokenizer():
    with pytest.raises(ValueError, match="`features` is empty"):
        MaskedDiffusionSFTCollator(eos_token_id=EOS)([])
    with pytest.raises(ValueError, match=r"`max_length` must be >= 1, got 0"):
        MaskedDiffusionSFTCollator(eos_token_id=EOS, max_length=0)
    with pytest.raises(ValueError, match=r"`eos_token_id` must be >= 0, got -1"):
        MaskedDiffusionSFTCollator(eos_token_id=-1)

    class Tokenizer:  # what the collator reads from a tokenizer
        eos_token_id = 9

        def __len__(self):
            return 10

    collator = MaskedDiffusionSFTCollator(Tokenizer())
    assert collator([{"prompt_ids": [1], "answer_ids": [2]}])["input_ids"].tolist() == [[1, 2, 9]]
    with pytest.raises(ValueError, match=r"`answer_ids` holds token id 12, outside the vocabulary \[0, 10\)"):
        collator([{"prompt_ids": [1], "answer_ids": [12]}])


# ------------------------------------------------------------------------------------ 2. the loss and the trainers
@HYPOTHESIS
@given(st.data())
def test_trainable_positions_property_matches_the_rule(data):
    batch, length = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 8))
    ids = torch.tensor(data.draw(st.lists(st.lists(st.integers(0, 9), min_size=length, max_size=length),
                                          min_size=batch, max_size=batch)))
    prompts = torch.tensor(data.draw(st.lists(st.integers(0, length + 1), min_size=batch, max_size=batch)))
    attention = torch.tensor(data.draw(st.lists(st.lists(st.integers(0, 1), min_size=length, max_size=length),
                                                min_size=batch, max_size=batch)))
    excluded = torch.tensor(data.draw(st.lists(st.lists(st.booleans(), min_size=length, max_size=length),
                                               min_size=batch, max_size=batch)))
    labels = ids.masked_fill(excluded, -100)
    expected = [[bool(attention[b, j]) and j >= prompts[b] and not excluded[b, j] for j in range(length)]
                for b in range(batch)]
    if (prompts >= length).any():
        with pytest.raises(ValueError, match="`prompt_lengths`"):
            trainable_positions(ids, attention, prompts, labels)
    elif not all(any(row) for row in expected):
        with pytest.raises(ValueError, match="no position to train on"):
            trainable_positions(ids, attention, prompts, labels)
    else:
        assert trainable_positions(ids, attention, prompts, labels).tolist() == expected


def test_sft_loss_with_excluded_labels_equals_a_hand_computation(tiny_llada, tmp_path):
    trainer = MaskedDiffusionTrainer(model=tiny_llada, args=_mdm_args(tmp_path, mask_eps=0.2))
    batch = MaskedDiffusionSFTCollator(eos_token_id=EOS)([
        {"prompt_ids": [1, 2], "answer_ids": [3, 4, 5, 6], "labels": [1, 2, 3, -100, -100, 6]},
        {"input_ids": [7, 8, 9, 10, 11, 12, 13], "prompt_length": 3, "labels": [7, 8, 9, -100, 11, 12, -100]},
    ])
    torch.manual_seed(4)
    got = trainer.compute_loss(tiny_llada, batch)
    # the same draws by hand: t per row, then one uniform per position (forward_process's order)
    torch.manual_seed(4)
    ids = batch["input_ids"]
    t = torch.rand(2, 1)
    u = torch.rand(2, 7)
    allowed = [[j in (2, 5, 6) for j in range(7)], [j in (4, 5) for j in range(7)]]  # row 0: answer 3, 6, EOS
    total = 0.0
    noisy = ids.clone()
    masked = [[False] * 7 for _ in range(2)]
    for b in range(2):
        p = (1 - 0.2) * float(t[b]) + 0.2
        for j in range(7):
            if allowed[b][j] and float(u[b, j]) < p:
                noisy[b, j], masked[b][j] = MASK, True
    with torch.no_grad():
        logits = tiny_llada(noisy).logits.float()
    for b in range(2):
        p = (1 - 0.2) * float(t[b]) + 0.2
        for j in range(7):
            if masked[b][j]:
                nll = float(torch.logsumexp(logits[b, j], 0) - logits[b, j, ids[b, j]])
                total += nll / p / sum(allowed[b])
    assert got.item() == pytest.approx(total / 2, rel=1e-5)
    assert any(any(row) for row in masked)  # the draw scored something


@pytest.mark.parametrize("batch, match", [
    ({"labels": torch.zeros(1, 4, dtype=torch.long)}, r"needs `input_ids` in every batch; the batch holds \['labels"),
    ({"input_ids": torch.tensor([[1, 2, 100]])}, r"`input_ids` holds id 100, outside the model's embedding"),
    ({"input_ids": torch.tensor([[1, -1, 3]])}, r"`input_ids` holds id -1"),
    ({"input_ids": torch.tensor([[1, MASK, 3]])}, r"mask token id 95"),
    ({"input_ids": torch.tensor([[1, 2, 3]]), "prompt_lengths": torch.tensor([3])}, r"`prompt_lengths`\[0\] = 3"),
    ({"input_ids": torch.tensor([[1, 2, 3]]), "prompt_lengths": torch.tensor([-1])}, r"`prompt_lengths` must be >= 0"),
    ({"input_ids": torch.tensor([[1, 2, 3]]), "labels": torch.tensor([[1, 5, 3]])}, r"`labels`\[0, 1\] = 5"),
    ({"input_ids": torch.tensor([[1, 2, 3]]), "labels": torch.full((1, 3), -100)}, r"row 0 .* no position to train"),
    ({"input_ids": torch.tensor([[1.0, 2.0]])}, r"`input_ids` must hold integer ids"),
])
def test_mdm_trainer_refuses_bad_batches_by_name(tiny_llada, tmp_path, batch, match):
    trainer = MaskedDiffusionTrainer(model=tiny_llada, args=_mdm_args(tmp_path))
    error = TypeError if "integer ids" in match else ValueError
    with pytest.raises(error, match=match):
        trainer.compute_loss(tiny_llada, batch)


def test_pretrain_objective_refuses_prompt_lengths_instead_of_ignoring_them(tiny_llada, tmp_path):
    trainer = MaskedDiffusionTrainer(model=tiny_llada, args=_mdm_args(tmp_path, objective="pretrain"))
    with pytest.raises(ValueError, match=r"objective='pretrain' .* `prompt_lengths`"):
        trainer.compute_loss(tiny_llada, {"input_ids": torch.tensor([[1, 2, 3]]), "prompt_lengths": torch.tensor([1])})


def test_logit_fm_trainer_keeps_excluded_labels_fixed_and_unscored(tmp_path):
    from hf_dlm.training.logit_fm import denoising_loss

    torch.manual_seed(0)
    model = LogitFMModel(LogitFMConfig(vocab_size=30, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=32, max_position_embeddings=16, time_embedding_dim=16))
    seen = {}
    model.register_forward_hook(lambda m, a, kw, out: seen.update(simplex=kw["simplex"]), with_kwargs=True)
    trainer = LogitFMTrainer(model=model, args=LogitFMTrainingArguments(output_dir=str(tmp_path), report_to=[],
                                                                         use_cpu=True))
    ids = torch.randint(0, 30, (2, 6))
    labels = ids.clone()
    labels[0, 1:3] = -100
    labels[1, 5] = -100
    loss, outputs = trainer.compute_loss(model, {"input_ids": ids, "labels": labels}, return_outputs=True)
    torch.testing.assert_close(loss, denoising_loss(outputs["logits"], ids, labels != -100))
    one_hot = F.one_hot(ids, 30).float()
    assert torch.equal(seen["simplex"][0, 1:3], one_hot[0, 1:3]) and torch.equal(seen["simplex"][1, 5], one_hot[1, 5])
    with pytest.raises(ValueError, match=r"`input_ids` holds id 30, outside the vocabulary \[0, 30\)"):
        trainer.compute_loss(model, {"input_ids": torch.tensor([[1, 30]])})


def test_masked_image_trainer_refuses_tokens_outside_the_codebook_and_missing_conditions(tmp_path):
    transformer = MaskedImageTransformer(codebook_size=17, sample_size=2, hidden_size=16, num_layers=1,
                                         num_attention_heads=2, num_classes=3)
    trainer = MaskedImageTrainer(model=TextToImageModules(transformer), args=MaskedImageTrainingArguments(
        output_dir=str(tmp_path), report_to=[], use_cpu=True))
    with pytest.raises(ValueError, match=r"`image_tokens` holds id 17, outside the codebook \[0, 17\)"):
        trainer.compute_loss(trainer.model, {"image_tokens": torch.tensor([[0, 1, 2, 17]]),
                                             "class_labels": torch.tensor([0])})
    with pytest.raises(ValueError, match=r"`class_labels` or `text_input_ids`"):
        trainer.compute_loss(trainer.model, {"image_tokens": torch.tensor([[0, 1, 2, 3]])})
    with pytest.raises(ValueError, match=r"sample_size² = 4 tokens per image, got 3"):
        trainer.compute_loss(trainer.model, {"image_tokens": torch.tensor([[0, 1, 2]]),
                                             "class_labels": torch.tensor([0])})


def test_modality_split_trainer_refuses_a_batch_that_scores_nothing(tiny_llada, tmp_path):
    from hf_dlm.multimodal.tokens import ImageTokenMap

    trainer = ModalitySplitTrainer(model=tiny_llada, args=ModalitySplitTrainingArguments(
        output_dir=str(tmp_path), report_to=[], use_cpu=True), image_token_map=ImageTokenMap.__new__(ImageTokenMap))
    ids = torch.tensor([[1, 2, 3]])
    with pytest.raises(ValueError, match=r"`labels` scores no position"):
        trainer.compute_loss(tiny_llada, {"input_ids": ids, "labels": torch.tensor([[1, -100, -100]])})
    with pytest.raises(ValueError, match=r"`labels` holds id 300"):
        trainer.compute_loss(tiny_llada, {"input_ids": ids, "labels": torch.tensor([[1, 300, 3]])})
    with pytest.raises(ValueError, match=r"needs `labels` in every batch"):
        trainer.compute_loss(tiny_llada, {"input_ids": ids})


# ------------------------------------------------------------------------------------ 3. configs and datasets
@pytest.mark.parametrize("kwargs, error, match", [
    ({"mask_eps": float("nan")}, ValueError, r"`mask_eps` must be a finite number, got nan"),
    ({"mask_eps": 0.0}, ValueError, r"`mask_eps` must lie in \(0, 1\), got 0.0"),
    ({"mask_eps": 1.0}, ValueError, r"`mask_eps` must lie in \(0, 1\), got 1.0"),
    ({"mask_eps": "0.1"}, TypeError, r"`mask_eps` must be a real number, got '0.1'"),
    ({"objective": "dpo"}, ValueError, r"`objective` must be one of .*'dpo'"),
    ({"learning_rate": float("nan")}, ValueError, r"`learning_rate` must be a finite number"),
    ({"learning_rate": -1e-4}, ValueError, r"`learning_rate` must be >= 0, got -0.0001"),
    ({"weight_decay": float("inf")}, ValueError, r"`weight_decay` must be a finite number"),
    ({"adam_beta1": 2.0}, ValueError, r"`adam_beta1` must lie in \[0, 1\), got 2.0"),
    ({"adam_epsilon": -1.0}, ValueError, r"`adam_epsilon` must be >= 0"),
    ({"max_grad_norm": float("nan")}, ValueError, r"`max_grad_norm` must be a finite number"),
    ({"restart_optimizer_on_resume": "yes"}, TypeError, r"`restart_optimizer_on_resume` must be a bool"),
])
def test_mdm_training_arguments_refuse_bad_values_by_name(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        _mdm_args(tmp_path, **kwargs)


@pytest.mark.parametrize("cls, kwargs, error, match", [
    (DiMOConfig, {"teacher_cfg_scale": float("nan")}, ValueError, r"`teacher_cfg_scale` must be a finite number"),
    (DiMOConfig, {"auxiliary_learning_rate": float("nan")}, ValueError, r"`auxiliary_learning_rate` must be a finite"),
    (DiMOConfig, {"generator_temperature": float("inf")}, ValueError, r"`generator_temperature` must be a finite"),
    (DiMOConfig, {"embedding_noise_std": float("nan")}, ValueError, r"`embedding_noise_std` must be a finite"),
    (DiMOConfig, {"auxiliary_updates_per_step": 1.5}, TypeError, r"`auxiliary_updates_per_step` must be an integer"),
    (DiMOConfig, {"lora_dropout": 1.0}, ValueError, r"`lora_dropout` must lie in \[0, 1\), got 1.0"),
    (DiMOConfig, {"eval_num_samples": 0}, ValueError, r"`eval_num_samples` must be >= 1, got 0"),
    (DiMOConfig, {"learning_rate": float("inf")}, ValueError, r"`learning_rate` must be a finite number"),
    (LogitFMTrainingArguments, {"dirichlet_concentration": float("inf")}, ValueError, r"`dirichlet_concentration`"),
    (LogitFMTrainingArguments, {"t_max": float("nan")}, ValueError, r"`t_max` must be a finite number"),
    (MaskedImageTrainingArguments, {"label_smoothing": float("nan")}, ValueError, r"`label_smoothing` must be"),
    (MaskedImageTrainingArguments, {"condition_dropout": 1.0}, ValueError, r"`condition_dropout` must lie in"),
    (ModalitySplitTrainingArguments, {"text_replay_fraction": "0.5"}, TypeError, r"`text_replay_fraction` must be a"),
])
def test_method_configs_refuse_bad_values_by_name(tmp_path, cls, kwargs, error, match):
    with pytest.raises(error, match=match):
        cls(output_dir=str(tmp_path), report_to=[], use_cpu=True, **kwargs)


@pytest.mark.parametrize("make, error, match", [
    (lambda: TokenIdsDataset(torch.zeros(0, 8, dtype=torch.long)), ValueError, r"`input_ids` is empty"),
    (lambda: TokenIdsDataset(torch.rand(2, 8)), TypeError, r"`input_ids` must hold integer token ids"),
    (lambda: TokenIdsDataset([[1, 2]]), TypeError, r"`input_ids` must be a tensor"),
    (lambda: TokenIdsDataset(torch.tensor([[1, -2]])), ValueError, r"negative token id -2"),
    (lambda: ConditionDataset.from_labels([1, 2.5]), TypeError, r"condition 1: `class_labels` must be an integer"),
    (lambda: ConditionDataset.from_labels([-1]), ValueError, r"condition 0: `class_labels` must be >= 0"),
    (lambda: ConditionDataset([{"input_ids": [1.5]}]), TypeError, r"`input_ids` of condition 0 must be .*integer"),
])
def test_datasets_refuse_bad_rows_by_name(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_training_on_an_empty_dataset_is_refused_by_name(tiny_llada, tmp_path):
    trainer = MaskedDiffusionTrainer(model=tiny_llada, args=_mdm_args(tmp_path, max_steps=1), train_dataset=[])
    with pytest.raises(ValueError, match=r"`train_dataset` is empty"):
        trainer.train()


def test_a_dataset_of_rows_without_input_ids_is_refused_by_name(tiny_llada, tmp_path):
    rows = [{"text_ids": torch.tensor([1, 2, 3])} for _ in range(2)]
    trainer = MaskedDiffusionTrainer(model=tiny_llada.train(), args=_mdm_args(tmp_path, max_steps=1,
                                                                              per_device_train_batch_size=2),
                                     train_dataset=rows)
    with pytest.raises(ValueError, match=r"needs `input_ids` in every batch; the batch holds \['text_ids'\]"):
        trainer.train()


# ------------------------------------------------------------------------------------ 4. resuming
@pytest.mark.parametrize("cls", [MaskedDiffusionTrainer, DiMOTrainer, LogitFMTrainer, ModalitySplitTrainer,
                                 MaskedImageTrainer])
def test_every_trainer_guards_resume_and_every_config_carries_the_opt_in(cls):
    mro = cls.__mro__
    assert ResumeGuardMixin in mro and mro.index(ResumeGuardMixin) < mro.index(Trainer)
    for args_cls in (MaskedDiffusionTrainingArguments, DiMOConfig, LogitFMTrainingArguments,
                     MaskedImageTrainingArguments, ModalitySplitTrainingArguments):
        assert issubclass(args_cls, GuardedTrainingArguments)


def _run(tmp_path, max_steps, **overrides):
    torch.manual_seed(0)
    model = LLaDAModelLM(tiny_llada_config(n_layers=1))
    data = TokenIdsDataset(torch.randint(0, 90, (4, 8), generator=torch.Generator().manual_seed(0)))
    args = _mdm_args(str(tmp_path / "out"), max_steps=max_steps, per_device_train_batch_size=2, save_strategy="steps",
                     save_steps=3, learning_rate=1e-2, **overrides)
    return MaskedDiffusionTrainer(model=model.train(), args=args, train_dataset=data)


@pytest.fixture
def checkpoint(tmp_path):
    _run(tmp_path, 3).train()
    path = tmp_path / "out" / "checkpoint-3"
    assert (path / "optimizer.pt").is_file()
    return path


def test_resuming_without_optimizer_state_is_refused_naming_the_file(tmp_path, checkpoint):
    os.remove(checkpoint / "optimizer.pt")
    trainer = _run(tmp_path, 5)
    with pytest.raises(FileNotFoundError, match=r"`optimizer.pt` is missing.*restart_optimizer_on_resume=True"):
        trainer.train(resume_from_checkpoint=str(checkpoint))
    os.remove(checkpoint / "scheduler.pt")
    with pytest.raises(FileNotFoundError, match=r"`optimizer.pt` and `scheduler.pt` are missing"):
        _run(tmp_path, 5).train(resume_from_checkpoint=str(checkpoint))


def test_restart_optimizer_on_resume_restarts_loudly(tmp_path, checkpoint, caplog):
    os.remove(checkpoint / "optimizer.pt")
    trainer = _run(tmp_path, 5, restart_optimizer_on_resume=True)
    with caplog.at_level(logging.WARNING, logger="hf_dlm"):
        trainer.train(resume_from_checkpoint=str(checkpoint))
    assert trainer.state.global_step == 5
    assert any("restart_optimizer_on_resume=True" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("max_steps", [3, 2])
def test_resuming_a_finished_run_trains_zero_steps_and_says_so(tmp_path, checkpoint, caplog, max_steps):
    trainer = _run(tmp_path, max_steps)
    with caplog.at_level(logging.WARNING, logger="hf_dlm"):
        trainer.train(resume_from_checkpoint=str(checkpoint))
    assert trainer.state.global_step == 3
    saved = LLaDAModelLM.from_pretrained(checkpoint)
    for (name, a), b in zip(trainer.model.state_dict().items(), saved.state_dict().values()):
        assert torch.equal(a, b), name  # weights untouched
    assert any("training zero steps" in r.getMessage() and f"max_steps={max_steps}" in r.getMessage()
               for r in caplog.records)


def test_resuming_an_unfinished_run_stops_exactly_at_max_steps(tmp_path, checkpoint):
    trainer = _run(tmp_path, 4)
    output = trainer.train(resume_from_checkpoint=str(checkpoint))
    assert trainer.state.global_step == 4 and output.global_step == 4
    assert math.isfinite(output.training_loss)


def test_dimo_refuses_a_checkpoint_without_the_auxiliary_optimizer(tmp_path):
    def teacher():
        torch.manual_seed(0)
        return LLaDAModelLM(tiny_llada_config(n_layers=1, d_model=32, n_heads=2, n_kv_heads=2)).eval()

    def args(max_steps, **kw):
        return DiMOConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=2, max_steps=max_steps,
                          generation_length=4, report_to=[], use_cpu=True, save_strategy="steps", save_steps=1,
                          disable_tqdm=True, **kw)

    prompts = ConditionDataset.from_prompts(torch.full((4, 2), 92))
    DiMOTrainer(teacher(), args(1), train_dataset=prompts).train()
    checkpoint = tmp_path / "out" / "checkpoint-1"
    os.remove(checkpoint / "auxiliary_optimizer.pt")
    with pytest.raises(FileNotFoundError, match=r"`auxiliary_optimizer.pt` is missing.*auxiliary model's optimizer"):
        DiMOTrainer(teacher(), args(2), train_dataset=prompts).train(resume_from_checkpoint=str(checkpoint))
    resumed = DiMOTrainer(teacher(), args(2, restart_optimizer_on_resume=True), train_dataset=prompts)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 2
    shutil.rmtree(tmp_path / "out")
