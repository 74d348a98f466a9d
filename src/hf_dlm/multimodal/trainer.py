"""A causal-LM Trainer that reports the loss on text tokens and on image tokens separately (the paper's Figure 4
break-down) and can mix in text-only "replay" batches against forgetting (the direction §2.2's analysis points to:
image tokens outnumber caption tokens about 30:1, so text ability decays unless text keeps being trained)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler
from transformers import Trainer

from .._io import AtomicCheckpointMixin
from .._training_guards import (GuardedTrainingArguments, ResumeGuardMixin, check_real, check_token_ids,
                                embedding_rows, require_batch_keys)
from .data import IGNORE_INDEX
from .tokens import ImageTokenMap


@dataclass
class ModalitySplitTrainingArguments(GuardedTrainingArguments):
    """[`TrainingArguments`] plus the text-replay fraction, checked at construction (see
    [`GuardedTrainingArguments`] for the optimizer knobs and ``restart_optimizer_on_resume``)."""

    text_replay_fraction: float = field(default=0.0, metadata={
        "help": "Fraction of training batches drawn from `replay_dataset` (text-only sequences, e.g. the language "
                "model's pre-training text) instead of the image-caption data; 0 disables replay."})
    remove_unused_columns: bool = field(default=False, metadata={
        "help": "Kept False: examples are raw (caption, image) dicts that the collator turns into model inputs."})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.text_replay_fraction = check_real("text_replay_fraction", self.text_replay_fraction, low=0.0, high=1.0,
                                               high_open=True)


def modality_loss_sums(logits: torch.Tensor, labels: torch.LongTensor, token_map: ImageTokenMap) -> torch.Tensor:
    """Next-token cross-entropy summed per modality:
    ``[text_sum, text_count, image_sum, image_count, caption_sum, caption_count]``.

    A scored position (label ≠ -100 after the causal shift) is an *image* position when its target is a codebook
    token, a *text* position otherwise (caption words, the format tokens and text-only data). *Caption* positions
    are the text positions whose target is not a format token (``<doc>`` … ``</doc>``, pad): the words alone, which
    a pretrained LM already knows and the format tokens, new to it, would mask."""
    targets = labels[:, 1:]
    losses = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                             ignore_index=IGNORE_INDEX, reduction="none").view_as(targets)
    scored = targets != IGNORE_INDEX
    image = scored & token_map.is_image_token(targets)
    text = scored & ~image
    formats = torch.tensor(sorted(token_map.special_ids.values()), device=targets.device)
    caption = text & ~torch.isin(targets, formats)
    return torch.stack([losses[text].sum(), text.sum().to(losses.dtype), losses[image].sum(),
                        image.sum().to(losses.dtype), losses[caption].sum(), caption.sum().to(losses.dtype)])


class ReplayBatchSampler(Sampler[list[int]]):
    """Batches over ``ConcatDataset([main, replay])``: every main example once per epoch (shuffled, in batches of
    ``batch_size``) and, evenly interleaved, ``round(n·f / (1 − f))`` replay batches for ``n`` main batches, so
    replay batches are a fraction ``f`` of all batches. Replay examples cycle through shuffled passes. Each call to
    ``__iter__`` is a new epoch with its own permutation (seeded by ``seed`` and the epoch number)."""

    def __init__(self, num_main: int, num_replay: int, batch_size: int, replay_fraction: float, seed: int = 0,
                 drop_last: bool = False) -> None:
        if num_replay < 1:
            raise ValueError("text replay needs a non-empty `replay_dataset`.")
        self.num_main, self.num_replay, self.batch_size = num_main, num_replay, batch_size
        self.replay_fraction, self.seed, self.drop_last, self.epoch = replay_fraction, seed, drop_last, 0
        main_batches = num_main // batch_size if drop_last else -(-num_main // batch_size)
        self.main_batches = main_batches
        self.replay_batches = round(main_batches * replay_fraction / (1 - replay_fraction))

    def __len__(self) -> int:
        return self.main_batches + self.replay_batches

    def is_replay(self, index: int) -> bool:
        """Whether batch ``index`` of an epoch is a replay batch (the replay batches are spread evenly)."""
        total = len(self)
        return (index + 1) * self.replay_batches // total > index * self.replay_batches // total

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        main = torch.randperm(self.num_main, generator=generator).tolist()
        main_batches = [main[i: i + self.batch_size] for i in range(0, self.main_batches * self.batch_size,
                                                                     self.batch_size)]
        replay_order: list[int] = []
        next_main = 0
        for index in range(len(self)):
            if self.is_replay(index):
                while len(replay_order) < self.batch_size:
                    replay_order += torch.randperm(self.num_replay, generator=generator).tolist()
                batch, replay_order = replay_order[: self.batch_size], replay_order[self.batch_size:]
                yield [self.num_main + i for i in batch]
            else:
                yield main_batches[next_main]
                next_main += 1


class ModalitySplitTrainer(ResumeGuardMixin, AtomicCheckpointMixin, Trainer):
    """``Trainer`` for a causal LM extended with image tokens ("Pre-trained Language Models Do Not Help
    Auto-regressive Text-to-Image Generation", §2.2, Figure 4).

    The loss is the usual next-token cross-entropy over all scored tokens; in addition every logging step reports
    ``text_loss`` and ``image_loss`` (mean cross-entropy over the text / image tokens of the steps since the last
    log), their token counts and the token-weighted total ``token_loss`` — so
    ``text_loss·text_tokens + image_loss·image_tokens = token_loss·(text_tokens + image_tokens)``. Evaluation
    reports ``eval_text_loss`` and ``eval_image_loss`` the same way. ``caption_loss`` is the text loss without the
    format tokens (see [`modality_loss_sums`]). With ``text_replay_fraction > 0`` a fraction of
    the batches come from ``replay_dataset`` (text-only ``input_ids`` examples).
    """

    args: ModalitySplitTrainingArguments

    def __init__(self, *args, image_token_map: ImageTokenMap, replay_dataset: Dataset | None = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.args.text_replay_fraction > 0 and replay_dataset is None:
            raise ValueError(f"`text_replay_fraction`={self.args.text_replay_fraction} needs a `replay_dataset`.")
        self.image_token_map = image_token_map
        # our loss shifts labels whatever the model's `loss_type` says, so the Trainer's token count for
        # gradient-accumulation normalisation (`num_items_in_batch`) must count `labels[..., 1:]`
        self._loss_shifts_labels = True
        self.replay_dataset = replay_dataset
        self._sums = {"train": torch.zeros(6, dtype=torch.float64), "eval": torch.zeros(6, dtype=torch.float64)}

    # ------------------------------------------------------------------ data
    def get_train_dataloader(self) -> DataLoader:
        if self.replay_dataset is None or self.args.text_replay_fraction == 0:
            return super().get_train_dataloader()
        sampler = ReplayBatchSampler(len(self.train_dataset), len(self.replay_dataset), self._train_batch_size,
                                     self.args.text_replay_fraction, seed=self.args.seed,
                                     drop_last=self.args.dataloader_drop_last)
        loader = DataLoader(ConcatDataset([self.train_dataset, self.replay_dataset]), batch_sampler=sampler,
                            collate_fn=self.data_collator, num_workers=self.args.dataloader_num_workers,
                            pin_memory=self.args.dataloader_pin_memory)
        return self.accelerator.prepare(loader)

    # ------------------------------------------------------------------ loss
    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | int | None = None):
        require_batch_keys(inputs, ("input_ids", "labels"), "ModalitySplitTrainer",
                           "Use `ImageTextCollator`, which builds both from (caption, image) examples.")
        labels = inputs["labels"]
        rows = embedding_rows(self.accelerator.unwrap_model(model))
        if rows is not None:
            check_token_ids("input_ids", inputs["input_ids"], rows, dim=2, what="model's embedding rows")
            check_token_ids("labels", labels[labels != IGNORE_INDEX], rows, what="model's embedding rows (or -100)")
        if not bool((labels[..., 1:] != IGNORE_INDEX).any()):
            raise ValueError("`labels` scores no position of the batch (all -100 after the causal shift): the batch "
                             "would train nothing.")
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"))
        sums = modality_loss_sums(outputs.logits, labels, self.image_token_map)
        self._sums["train" if model.training else "eval"] += sums.detach().double().cpu()
        total = sums[0] + sums[2]
        count = num_items_in_batch if num_items_in_batch is not None else (sums[1] + sums[3]).clamp_min(1)
        loss = total / count
        return (loss, outputs) if return_outputs else loss

    def _split_metrics(self, phase: str, prefix: str = "") -> dict[str, float]:
        sums = self._sums[phase].to(self.args.device)
        if self.accelerator.num_processes > 1:
            sums = self.accelerator.reduce(sums, reduction="sum")
        text_sum, text_n, image_sum, image_n, caption_sum, caption_n = sums.tolist()
        self._sums[phase].zero_()
        metrics = {f"{prefix}text_tokens": int(text_n), f"{prefix}image_tokens": int(image_n)}
        if text_n:
            metrics[f"{prefix}text_loss"] = text_sum / text_n
        if image_n:
            metrics[f"{prefix}image_loss"] = image_sum / image_n
        if caption_n:
            metrics[f"{prefix}caption_loss"] = caption_sum / caption_n
        if text_n + image_n:
            metrics[f"{prefix}token_loss"] = (text_sum + image_sum) / (text_n + image_n)
        return metrics

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            logs.update(self._split_metrics("train"))
        super().log(logs, start_time)

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix: str = "eval"):
        self._sums["eval"].zero_()
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys,
                                         metric_key_prefix)
        output.metrics.update(self._split_metrics("eval", f"{metric_key_prefix}_"))
        return output


__all__ = ["ModalitySplitTrainer", "ModalitySplitTrainingArguments", "ReplayBatchSampler", "modality_loss_sums"]
