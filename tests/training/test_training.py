"""The masked-diffusion objective by hand, training on the oracle corpus, LoRA and 2-process DDP."""

import math

import pytest
import torch
from tests.utils.distributed import run_torchrun

from hf_dlm.training import (MaskedDiffusionSFTCollator, MaskedDiffusionTrainer, MaskedDiffusionTrainingArguments,
                             TokenIdsDataset, forward_process, pretraining_loss, sft_loss)


def test_pretraining_loss_by_hand():
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [[0.0, 0.0, 3.0], [1.0, 1.0, 1.0]]])
    targets = torch.tensor([[0, 2], [2, 1]])
    masked = torch.tensor([[True, True], [False, True]])
    p_mask = torch.tensor([[0.5], [0.25]])

    def nll(row, target):
        return math.log(sum(math.exp(v) for v in row)) - row[target]

    expected = (nll([2, 0, 0], 0) / 0.5 + nll([0, 1, 0], 2) / 0.5 + nll([1, 1, 1], 1) / 0.25) / (2 * 2)
    assert pretraining_loss(logits, targets, masked, p_mask).item() == pytest.approx(expected, rel=1e-6)
    # SFT: row 0 has an answer of 2 tokens, row 1 of 1 token
    expected_sft = ((nll([2, 0, 0], 0) / 0.5 + nll([0, 1, 0], 2) / 0.5) / 2 + nll([1, 1, 1], 1) / 0.25 / 1) / 2
    got = sft_loss(logits, targets, masked, p_mask, torch.tensor([2, 1]))
    assert got.item() == pytest.approx(expected_sft, rel=1e-6)


def test_forward_process_respects_eps_and_prompt():
    ids = torch.arange(2000).view(4, 500) % 50
    prompt = torch.zeros(4, 500, dtype=torch.bool)
    prompt[:, :100] = True
    noisy, masked, p_mask = forward_process(ids, 99, eps=0.1, maskable=~prompt,
                                            generator=torch.Generator().manual_seed(0))
    assert not masked[:, :100].any() and torch.equal(noisy[:, :100], ids[:, :100])
    assert (noisy[masked] == 99).all() and torch.equal(noisy[~masked], ids[~masked])
    assert ((p_mask >= 0.1) & (p_mask <= 1.0)).all()
    rate = masked[:, 100:].float().mean(dim=1)
    assert torch.allclose(rate, p_mask.squeeze(1), atol=0.08)  # each row masks ~p_mask of its answer


def test_trainer_loss_equals_hand_loss_on_the_same_draw(tiny_llada, tmp_path):
    args = MaskedDiffusionTrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    trainer = MaskedDiffusionTrainer(model=tiny_llada, args=args)
    ids = torch.randint(0, 90, (3, 10))
    torch.manual_seed(11)
    got = trainer.compute_loss(tiny_llada, {"input_ids": ids})
    torch.manual_seed(11)
    noisy, masked, p_mask = forward_process(ids, 95, eps=1e-3)
    expected = pretraining_loss(tiny_llada(noisy).logits, ids, masked, p_mask)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    # SFT batches: the prompt is never masked and the loss is normalised by the answer length
    batch = MaskedDiffusionSFTCollator(eos_token_id=93)([{"prompt_ids": [1, 2, 3], "answer_ids": [4, 5]},
                                                         {"prompt_ids": [6], "answer_ids": [7, 8, 9, 10]}])
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5, 93], [6, 7, 8, 9, 10, 93]]
    assert batch["prompt_lengths"].tolist() == [3, 1]
    torch.manual_seed(3)
    got = trainer.compute_loss(tiny_llada, batch)
    torch.manual_seed(3)
    prompt = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    noisy, masked, p_mask = forward_process(batch["input_ids"], 95, eps=1e-3, maskable=~prompt)
    expected = sft_loss(tiny_llada(noisy).logits, batch["input_ids"], masked, p_mask, torch.tensor([3, 5]))
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_dream_trains_through_the_shifted_contract(tiny_dream, tmp_path):
    args = MaskedDiffusionTrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    trainer = MaskedDiffusionTrainer(model=tiny_dream, args=args)
    ids = torch.randint(0, 90, (2, 8))
    torch.manual_seed(1)
    got = trainer.compute_loss(tiny_dream, {"input_ids": ids})
    torch.manual_seed(1)
    noisy, masked, p_mask = forward_process(ids, 95, eps=1e-3)
    raw = tiny_dream(noisy).logits
    expected = pretraining_loss(torch.cat([raw[:, :1], raw[:, :-1]], 1), ids, masked, p_mask)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def _fixed_draw_loss(model, ids):
    """The pre-training loss on one fixed mask draw (deterministic, so before/after is comparable)."""
    noisy, masked, p_mask = forward_process(ids, model.config.mask_token_id, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return pretraining_loss(model(noisy).logits, ids, masked, p_mask).item()


@pytest.fixture(scope="module")
def oracle_setup():
    from hf_dlm.evaluation.oracle import OracleLanguage

    oracle = OracleLanguage(seed=0)
    return oracle, oracle.tokenizer()


def _oracle_model(tokenizer, seed=0):
    from tests.utils.models import tiny_llada_config

    torch.manual_seed(seed)
    config = tiny_llada_config(vocab_size=len(tokenizer), embedding_size=len(tokenizer), n_kv_heads=4,
                               mask_token_id=tokenizer.mask_token_id, pad_token_id=tokenizer.pad_token_id,
                               eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    from hf_dlm import LLaDAModelLM

    return LLaDAModelLM(config)


def test_thirty_steps_reduce_loss_on_the_oracle_corpus(oracle_setup, tmp_path):
    oracle, tokenizer = oracle_setup
    model = _oracle_model(tokenizer)
    held_out = oracle.sample(256, 32, seed=99)
    before = _fixed_draw_loss(model.eval(), held_out)
    args = MaskedDiffusionTrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=64, max_steps=30,
                                            learning_rate=3e-3, report_to=[], use_cpu=True, save_strategy="no",
                                            disable_tqdm=True, logging_steps=10)
    MaskedDiffusionTrainer(model=model.train(), args=args, train_dataset=TokenIdsDataset(oracle.sample(2000, 32, seed=1))).train()
    after = _fixed_draw_loss(model.eval(), held_out)
    assert after < before - 0.5, (before, after)


def test_lora_training_updates_only_adapters(oracle_setup, tmp_path):
    from peft import LoraConfig, get_peft_model

    oracle, tokenizer = oracle_setup
    model = get_peft_model(_oracle_model(tokenizer), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    lora_b = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
    args = MaskedDiffusionTrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=32, max_steps=5,
                                            learning_rate=1e-2, report_to=[], use_cpu=True, save_strategy="no",
                                            disable_tqdm=True)
    MaskedDiffusionTrainer(model=model, args=args, train_dataset=TokenIdsDataset(oracle.sample(200, 16, seed=1))).train()
    for name, param in model.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), name
    assert any(not torch.equal(p, lora_b[n]) for n, p in model.named_parameters() if n in lora_b)
    out = model.generate(input_ids=torch.randint(0, 256, (1, 4)), max_new_tokens=4, steps=2, stop_at_eos=False)
    assert out.shape == (1, 8)


@pytest.mark.distributed
def test_two_process_torchrun(tmp_path):
    run_torchrun("ddp_train.py", tmp_path)
    report = (tmp_path / "report.txt").read_text().split()
    assert report[0] == "2" and int(report[1]) == 6  # world size, optimizer steps
