"""Reference models on the oracle language: the masked-diffusion teacher every later method starts from, and the
autoregressive baseline with the same parameter count and token budget (the "Autoregressive" row of the tables).

Two builds of each: ``tiny`` (seconds; what tests use) and ``bench`` (minutes; what the benchmarks and docs
report). Builds are cached on disk under ``$HF_DLM_CACHE/reference`` (default ``~/.cache/hf_dlm``), keyed by a
hash of their settings, so a changed recipe never returns a stale model.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import (AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel, PreTrainedModel,
                          PreTrainedTokenizerBase, Trainer, TrainingArguments)
from transformers.utils import logging

from .._io import save_atomically
from ..generation import MaskedDiffusionGenerationConfig
from ..models import LLaDAConfig, LLaDAModelLM
from ..training import MaskedDiffusionTrainer, MaskedDiffusionTrainingArguments, TokenIdsDataset
from ..evaluation.oracle import OracleLanguage

logger = logging.get_logger(__name__)


@dataclass(frozen=True)
class ReferenceSettings:
    """One build of the reference models: oracle task, architecture and training budget.

    The teacher is a LLaDA-architecture model (SwiGLU MLP of width ``mlp_hidden_size``, untied head); the AR
    baseline is a GPT-2 whose MLP width is chosen so its parameter count matches the teacher's, trained on the same
    sequences for the same number of steps and batch size (the same token budget, plus one BOS per sequence).
    """

    name: str
    seq_len: int
    d_model: int
    n_layers: int
    n_heads: int
    mlp_hidden_size: int
    batch_size: int
    max_steps: int
    learning_rate: float
    warmup_steps: int
    train_sequences: int
    oracle_seed: int = 0
    data_seed: int = 1
    seed: int = 0

    @property
    def token_budget(self) -> int:
        return self.batch_size * self.max_steps * self.seq_len

    def key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


REFERENCE_SETTINGS: dict[str, ReferenceSettings] = {
    "tiny": ReferenceSettings(name="tiny", seq_len=16, d_model=32, n_layers=1, n_heads=2, mlp_hidden_size=64,
                              batch_size=32, max_steps=40, learning_rate=3e-3, warmup_steps=5, train_sequences=2000),
    "bench": ReferenceSettings(name="bench", seq_len=64, d_model=128, n_layers=4, n_heads=4, mlp_hidden_size=384,
                               batch_size=64, max_steps=2000, learning_rate=1e-3, warmup_steps=100,
                               train_sequences=64_000),
}


REFERENCE_TOP_P = 0.9


def get_settings(size: str | ReferenceSettings) -> ReferenceSettings:
    if isinstance(size, ReferenceSettings):
        return size
    if size not in REFERENCE_SETTINGS:
        raise ValueError(f"`size` must be one of {sorted(REFERENCE_SETTINGS)} or a ReferenceSettings, got {size!r}.")
    return REFERENCE_SETTINGS[size]


def oracle_and_tokenizer(settings: ReferenceSettings) -> tuple[OracleLanguage, PreTrainedTokenizerBase]:
    oracle = OracleLanguage(seed=settings.oracle_seed)
    return oracle, oracle.tokenizer(model_max_length=settings.seq_len + 1)


def teacher_config(settings: ReferenceSettings, tokenizer: PreTrainedTokenizerBase) -> LLaDAConfig:
    return LLaDAConfig(
        vocab_size=len(tokenizer), embedding_size=len(tokenizer), d_model=settings.d_model,
        n_layers=settings.n_layers, n_heads=settings.n_heads, mlp_hidden_size=settings.mlp_hidden_size,
        max_sequence_length=max(settings.seq_len, 16) * 2, rope_theta=10000.0,
        mask_token_id=tokenizer.mask_token_id, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
    )


def teacher_generation_config(settings: ReferenceSettings, tokenizer: PreTrainedTokenizerBase
                              ) -> MaskedDiffusionGenerationConfig:
    """The reference sampler: a whole sequence of ``seq_len`` tokens, one per step, revealed in random order
    (ancestral sampling), temperature 1 with nucleus ``top_p = 0.9`` (which drops the oracle's floor-probability
    tail: on the bench build it brings gen-PPL within a few % of the data's at the data's entropy), special tokens
    never proposed."""
    return MaskedDiffusionGenerationConfig(
        max_new_tokens=settings.seq_len, steps=settings.seq_len, temperature=1.0, top_p=REFERENCE_TOP_P,
        remasking="random", suppress_tokens=list(tokenizer.all_special_ids), stop_at_eos=False,
    )


def count_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters (tied weights counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def ar_config(settings: ReferenceSettings, tokenizer: PreTrainedTokenizerBase, target_parameters: int) -> GPT2Config:
    """A GPT-2 of the teacher's width and depth whose MLP width makes its parameter count the closest to
    ``target_parameters``."""
    def build(n_inner: int) -> GPT2Config:
        return GPT2Config(vocab_size=len(tokenizer), n_positions=settings.seq_len + 1, n_embd=settings.d_model,
                          n_layer=settings.n_layers, n_head=settings.n_heads, n_inner=n_inner,
                          bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                          pad_token_id=tokenizer.pad_token_id, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)

    def params(n_inner: int) -> int:
        d, layers = settings.d_model, settings.n_layers
        per_layer = 4 * d * d + 4 * d + 2 * d * n_inner + n_inner + d + 4 * d  # attn, MLP, two LayerNorms
        return layers * per_layer + (len(tokenizer) + settings.seq_len + 1) * d + 2 * d

    best = min(range(settings.d_model, 16 * settings.d_model + 1, 8), key=lambda n: abs(params(n) - target_parameters))
    return build(best)


def _train(model: PreTrainedModel, trainer_cls: type[Trainer], args_cls: type[TrainingArguments],
           dataset: torch.utils.data.Dataset, settings: ReferenceSettings, collator=None) -> float:
    with tempfile.TemporaryDirectory() as scratch:
        args = args_cls(
            output_dir=scratch, per_device_train_batch_size=settings.batch_size, learning_rate=settings.learning_rate,
            weight_decay=0.01, max_steps=settings.max_steps, warmup_steps=settings.warmup_steps,
            lr_scheduler_type="cosine", logging_steps=max(settings.max_steps // 10, 1), save_strategy="no",
            report_to=[], use_cpu=True, seed=settings.seed, disable_tqdm=settings.max_steps < 100,
        )
        trainer = trainer_cls(model=model, args=args, train_dataset=dataset, data_collator=collator)
        start = time.monotonic()
        trainer.train()
        return time.monotonic() - start


def train_teacher(settings: ReferenceSettings) -> tuple[LLaDAModelLM, PreTrainedTokenizerBase, dict]:
    """Train the masked-diffusion teacher (LLaDA pre-training objective) on oracle samples."""
    oracle, tokenizer = oracle_and_tokenizer(settings)
    torch.manual_seed(settings.seed)
    model = LLaDAModelLM(teacher_config(settings, tokenizer))
    model.generation_config = teacher_generation_config(settings, tokenizer)
    data = TokenIdsDataset(oracle.sample(settings.train_sequences, settings.seq_len, seed=settings.data_seed))
    seconds = _train(model, MaskedDiffusionTrainer, MaskedDiffusionTrainingArguments, data, settings)
    return model.eval(), tokenizer, {"train_seconds": seconds, "parameters": count_parameters(model)}


class _ARRows(torch.utils.data.Dataset):
    def __init__(self, words: torch.LongTensor, bos: int) -> None:
        self.rows = torch.cat([torch.full((len(words), 1), bos), words], dim=1)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.rows[i], "labels": self.rows[i]}


def train_ar_baseline(settings: ReferenceSettings, target_parameters: int | None = None
                      ) -> tuple[GPT2LMHeadModel, PreTrainedTokenizerBase, dict]:
    """Train the autoregressive baseline: GPT-2 with (about) the teacher's parameter count, on the same sequences
    (BOS-prefixed) with the same steps and batch size."""
    oracle, tokenizer = oracle_and_tokenizer(settings)
    if target_parameters is None:
        target_parameters = count_parameters(LLaDAModelLM(teacher_config(settings, tokenizer)))
    torch.manual_seed(settings.seed)
    model = GPT2LMHeadModel(ar_config(settings, tokenizer, target_parameters))
    data = _ARRows(oracle.sample(settings.train_sequences, settings.seq_len, seed=settings.data_seed),
                   tokenizer.bos_token_id)
    seconds = _train(model, Trainer, TrainingArguments, data, settings)
    return model.eval(), tokenizer, {"train_seconds": seconds, "parameters": count_parameters(model)}


def cache_root() -> Path:
    return Path(os.environ.get("HF_DLM_CACHE", Path.home() / ".cache" / "hf_dlm")) / "reference"


def load_reference(kind: str, size: str | ReferenceSettings = "tiny", cache_dir: str | Path | None = None,
                   retrain: bool = False) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, dict]:
    """The reference ``teacher`` or ``ar`` model of a build, trained on first use and then loaded from the cache.

    Returns ``(model, tokenizer, info)`` where ``info`` holds the settings, parameter count and training time."""
    if kind not in ("teacher", "ar"):
        raise ValueError(f"`kind` must be 'teacher' or 'ar', got {kind!r}.")
    settings = get_settings(size)
    folder = Path(cache_dir) if cache_dir is not None else cache_root()
    folder = folder / f"{kind}-{settings.name}-{settings.key()}"
    info_file = folder / "reference_info.json"
    if info_file.exists() and not retrain:
        model = AutoModelForCausalLM.from_pretrained(folder).eval()
        return model, AutoTokenizer.from_pretrained(folder), json.loads(info_file.read_text())
    logger.info("training the %s reference %s (%s)", settings.name, kind, folder)
    if kind == "teacher":
        model, tokenizer, info = train_teacher(settings)
    else:
        model, tokenizer, info = train_ar_baseline(settings)
    info = {**info, "kind": kind, "settings": asdict(settings), "token_budget": settings.token_budget}
    save_atomically(folder, model, tokenizer, extra_files={info_file.name: json.dumps(info, indent=2)})
    return model, tokenizer, info


__all__ = ["REFERENCE_SETTINGS", "ReferenceSettings", "ar_config", "count_parameters", "get_settings",
           "load_reference", "teacher_config", "teacher_generation_config", "train_ar_baseline", "train_teacher"]
