"""A task a small masked diffusion LM learns to decode confidently, for measuring parallel decoding where it can pay
off (Fast-dLLM, arXiv 2505.22618, Sec. 3.3: a threshold commits every token the model is sure of).

The prompt is BOS + ``n`` words drawn uniformly from 64; the answer is the same words mapped through a fixed random
permutation, then EOS. Every answer token is determined by the prompt, so a trained model is confident and its
accuracy is exact (token by token against the known answer). A small LLaDA (d 128, 2 layers) is trained on it with
``MaskedDiffusionTrainer``'s SFT objective (LLaDA, arXiv 2502.09992, eq. 5) and cached under
``$HF_DLM_CACHE/reference`` (default ``~/.cache/hf_dlm``), keyed by the settings.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from hf_dlm import LLaDAConfig, LLaDAModelLM
from hf_dlm.recipes.reference import cache_root
from hf_dlm.training.data import MaskedDiffusionSFTCollator
from hf_dlm.training.mdm_trainer import MaskedDiffusionTrainer, MaskedDiffusionTrainingArguments

WORDS = 64
BOS, EOS, PAD, MASK = WORDS, WORDS + 1, WORDS + 2, WORDS + 3
PERMUTATION_SEED = 0


def permutation() -> torch.LongTensor:
    return torch.randperm(WORDS, generator=torch.Generator().manual_seed(PERMUTATION_SEED))


class PermutedCopies(torch.utils.data.Dataset):
    """SFT rows ``{"prompt_ids": [BOS] + words, "answer_ids": permutation[words]}`` (the collator appends EOS); row
    ``i`` is drawn from seed ``offset + i``, so evaluation rows (another offset) are never trained on."""

    def __init__(self, words: int, rows: int, offset: int = 0) -> None:
        self.words, self.rows, self.offset, self.mapping = words, rows, offset, permutation()

    def __len__(self) -> int:
        return self.rows

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        words = torch.randint(0, WORDS, (self.words,), generator=torch.Generator().manual_seed(self.offset + index))
        return {"prompt_ids": [BOS] + words.tolist(), "answer_ids": self.mapping[words].tolist()}


def evaluation_batch(words: int, count: int) -> tuple[torch.LongTensor, torch.LongTensor]:
    """``count`` held-out prompts (BOS + words) and their answers (mapped words + EOS)."""
    rows = [PermutedCopies(words, count, offset=10**9)[i] for i in range(count)]
    prompts = torch.tensor([r["prompt_ids"] for r in rows])
    answers = torch.tensor([r["answer_ids"] + [EOS] for r in rows])
    return prompts, answers


def trained_model(words: int, steps: int, batch_size: int = 16, seed: int = 0) -> tuple[LLaDAModelLM, dict]:
    """The model trained on ``words``-word copies for ``steps`` steps (from the cache when there)."""
    folder = Path(cache_root()) / f"permuted_copy_w{words}_s{steps}_b{batch_size}_seed{seed}"
    if (folder / "config.json").exists():
        model = LLaDAModelLM.from_pretrained(folder).eval()
        return model, {"cached": str(folder), **model.config.to_dict().get("benchmark_training", {})}
    torch.manual_seed(seed)
    config = LLaDAConfig(vocab_size=WORDS + 4, embedding_size=WORDS + 4, d_model=128, n_layers=2, n_heads=4,
                         n_kv_heads=4, mlp_hidden_size=256, max_sequence_length=2 * words + 2, rope_theta=10000.0,
                         mask_token_id=MASK, pad_token_id=PAD, eos_token_id=EOS, bos_token_id=BOS)
    model = LLaDAModelLM(config)
    args = MaskedDiffusionTrainingArguments(
        output_dir=str(folder.with_name(folder.name + ".run")), per_device_train_batch_size=batch_size,
        max_steps=steps, learning_rate=1e-3, lr_scheduler_type="cosine", warmup_steps=min(100, steps // 10),
        logging_steps=max(1, steps // 10), save_strategy="no", report_to=[], use_cpu=True, seed=seed,
        dataloader_num_workers=0, disable_tqdm=True)
    trainer = MaskedDiffusionTrainer(model=model, args=args, train_dataset=PermutedCopies(words, steps * batch_size),
                                     data_collator=MaskedDiffusionSFTCollator(eos_token_id=EOS))
    start = time.perf_counter()
    trainer.train()
    info = {"train_seconds": time.perf_counter() - start, "steps": steps, "batch_size": batch_size,
            "final_loss": trainer.state.log_history[-2].get("loss") if len(trainer.state.log_history) > 1 else None}
    model.config.benchmark_training = info
    model.eval().save_pretrained(folder)
    return model, info
