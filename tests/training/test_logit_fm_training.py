"""LogitFMTrainer: the eq. 15 objective reduces loss on the oracle corpus; prompts stay fixed and unscored."""

import pytest
import torch

from hf_dlm import LogitFMConfig, LogitFMModel, LogitFMTrainer, LogitFMTrainingArguments
from hf_dlm.evaluation.oracle import OracleLanguage
from hf_dlm.training import TokenIdsDataset
from hf_dlm.training.logit_fm import denoising_loss, noisy_simplex, sample_flow_times


def held_out_loss(model, ids, seed=0) -> float:
    g = torch.Generator().manual_seed(seed)
    t = sample_flow_times(len(ids), "uniform", 1.0, generator=g)
    simplex = noisy_simplex(ids, t, model.config.vocab_size, model.config.smoothing_beta, generator=g)
    with torch.no_grad():
        logits = model(simplex=simplex, timesteps=t).logits
    return float(denoising_loss(logits, ids, torch.ones_like(ids, dtype=torch.bool)))


@pytest.mark.parametrize("time_distribution, t_max", [("uniform", 1.0), ("log_uniform", 0.5)])
def test_training_reduces_loss_on_the_oracle_corpus(tmp_path, time_distribution, t_max):
    oracle = OracleLanguage()
    tok = oracle.tokenizer()
    torch.manual_seed(0)
    model = LogitFMModel(LogitFMConfig(vocab_size=len(tok), hidden_size=48, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=96, max_position_embeddings=32, time_embedding_dim=32,
                                       time_conditioning="adaln_single"))
    held_out = oracle.sample(64, 16, seed=5)
    before = held_out_loss(model, held_out)
    args = LogitFMTrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=32, max_steps=60,
                                    learning_rate=3e-3, warmup_steps=5, report_to=[], use_cpu=True,
                                    save_strategy="no", logging_steps=10, disable_tqdm=True,
                                    time_distribution=time_distribution, t_max=t_max)
    LogitFMTrainer(model=model, args=args, train_dataset=TokenIdsDataset(oracle.sample(2000, 16, seed=1))).train()
    after = held_out_loss(model.eval(), held_out)
    assert after < before - 0.5, (before, after)


def test_prompt_is_a_fixed_point_and_not_scored(tmp_path):
    torch.manual_seed(0)
    model = LogitFMModel(LogitFMConfig(vocab_size=30, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=32, max_position_embeddings=16, time_embedding_dim=16))
    seen = {}

    def spy(module, args, kwargs, output):
        seen["simplex"] = kwargs["simplex"]

    model.register_forward_hook(spy, with_kwargs=True)
    args = LogitFMTrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    trainer = LogitFMTrainer(model=model, args=args)
    ids = torch.randint(0, 30, (3, 8))
    batch = {"input_ids": ids, "prompt_lengths": torch.tensor([0, 2, 5])}
    loss, outputs = trainer.compute_loss(model, batch, return_outputs=True)
    scored = torch.arange(8).unsqueeze(0) >= batch["prompt_lengths"].unsqueeze(1)
    torch.testing.assert_close(loss, denoising_loss(outputs["logits"], ids, scored))
    one_hot = torch.nn.functional.one_hot(ids, 30).float()
    assert torch.equal(seen["simplex"][1, :2], one_hot[1, :2])
    assert torch.equal(seen["simplex"][2, :5], one_hot[2, :5])
    assert not torch.equal(seen["simplex"][0, :2], one_hot[0, :2])  # row 0 has no prompt: noised


@pytest.mark.parametrize("kwargs, match", [
    ({"smoothing_beta": 0.0}, "smoothing_beta"), ({"smoothing_beta": 1.2}, "smoothing_beta"),
    ({"time_distribution": "beta"}, "time_distribution"), ({"t_max": 0.0}, "t_max"),
    ({"time_distribution": "log_uniform", "t_max": 1.0}, "t_max"), ({"dirichlet_concentration": 0}, "dirichlet"),
])
def test_training_arguments_reject_bad_input(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        LogitFMTrainingArguments(output_dir=str(tmp_path), use_cpu=True, **kwargs)
