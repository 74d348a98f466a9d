"""MaskGIT training objective (Chang et al., 2022, Sec. 3.1) as a ``transformers.Trainer`` subclass.

For each image: r ~ U(0, 1), mask ratio γ(r) from the scheduler's schedule, every token masked independently with
probability γ(r) (at least one per image), cross-entropy with label smoothing on the masked tokens only. The
condition (class label or caption) is replaced by the null condition with probability ``condition_dropout``, which
is what classifier-free guidance needs at sampling time (aMUSEd / Muse do the same).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Trainer

from .._io import AtomicCheckpointMixin
from .._training_guards import (GuardedTrainingArguments, ResumeGuardMixin, check_choice, check_real,
                                check_token_ids, require_batch_keys)
from ..denoiser import build_conditions, conditional_denoise, get_mask_token_id
from ..schedulers.scheduling_maskgit import MASK_SCHEDULES, MaskGITScheduler


@dataclass
class MaskedImageTrainingArguments(GuardedTrainingArguments):
    """[`TrainingArguments`] plus the MaskGIT objective's knobs, checked at construction (type, range, finiteness;
    see [`GuardedTrainingArguments`] for the optimizer knobs and ``restart_optimizer_on_resume``)."""

    masking_schedule: str = field(default="cosine", metadata={
        "help": f"γ used to draw the mask ratio during training, one of {MASK_SCHEDULES}."})
    label_smoothing: float = field(default=0.1, metadata={"help": "Label smoothing of the masked-token loss."})
    condition_dropout: float = field(default=0.1, metadata={
        "help": "Probability of training a sample with the null condition (empty caption / null class), for CFG."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Kept False: batches are not model kwargs."})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("masking_schedule", self.masking_schedule, MASK_SCHEDULES)
        self.label_smoothing = check_real("label_smoothing", self.label_smoothing, low=0.0, high=1.0, high_open=True)
        self.condition_dropout = check_real("condition_dropout", self.condition_dropout, low=0.0, high=1.0,
                                            high_open=True)


class TextToImageModules(nn.Module):
    """The modules trained together: ``transformer`` and, for text conditioning, ``text_encoder``."""

    def __init__(self, transformer: nn.Module, text_encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.transformer = transformer
        self.text_encoder = text_encoder


def mask_image_tokens(tokens: torch.LongTensor, mask_token_id: int, schedule: str,
                      generator: torch.Generator | None = None) -> tuple[torch.LongTensor, torch.BoolTensor]:
    """MaskGIT corruption of flat token rows (batch, length): ratio γ(r), r ~ U(0, 1), per row; >= 1 masked.
    The scheduler's training draw (``MaskGITScheduler.add_noise`` without a timestep)."""
    scheduler = MaskGITScheduler(mask_token_id=mask_token_id, masking_schedule=schedule)
    noisy, masked, _ = scheduler.add_noise(tokens, generator=generator, return_mask=True)
    return noisy, masked


class MaskedImageTrainer(ResumeGuardMixin, AtomicCheckpointMixin, Trainer):
    """Trains a ``MaskedImageTransformer`` (and optionally its text encoder) with the MaskGIT objective.

    ``model`` is a [`TextToImageModules`]. Batches hold ``image_tokens`` (batch, height·width) and either
    ``class_labels`` (batch,) or ``text_input_ids`` (batch, text_length); for text, ``null_text_input_ids``
    (the tokenized empty caption, shape (1, text_length)) is the dropped condition.
    """

    def __init__(self, *args, null_text_input_ids: torch.LongTensor | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.null_text_input_ids = null_text_input_ids
        self._noise_scheduler: MaskGITScheduler | None = None

    def noise_scheduler(self, transformer: nn.Module) -> MaskGITScheduler:
        """The scheduler whose ``add_noise`` corrupts the training tokens (``masking_schedule``, the model's mask id)."""
        if self._noise_scheduler is None:
            self._noise_scheduler = MaskGITScheduler(mask_token_id=get_mask_token_id(transformer),
                                                     masking_schedule=self.args.masking_schedule)
        return self._noise_scheduler

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        modules = model.module if hasattr(model, "module") else model
        transformer = modules.transformer
        args: MaskedImageTrainingArguments = self.args
        require_batch_keys(inputs, ("image_tokens",), "MaskedImageTrainer",
                           "Each dataset row must hold `image_tokens` and `class_labels` or `text_input_ids`.")
        if inputs.get("class_labels") is None and inputs.get("text_input_ids") is None:
            raise ValueError(f"MaskedImageTrainer needs `class_labels` or `text_input_ids` in every batch; the batch "
                             f"holds {sorted(inputs)}.")
        side = transformer.config.sample_size
        check_token_ids("image_tokens", inputs["image_tokens"], transformer.config.codebook_size, what="codebook")
        tokens = inputs["image_tokens"].reshape(len(inputs["image_tokens"]), -1)
        if tokens.shape[1] != side * side:
            raise ValueError(f"`image_tokens` must hold sample_size² = {side * side} tokens per image, got "
                             f"{tokens.shape[1]} (shape {tuple(inputs['image_tokens'].shape)}).")
        noisy, masked, _ = self.noise_scheduler(transformer).add_noise(tokens, return_mask=True)
        drop = torch.rand(len(tokens), device=tokens.device) < args.condition_dropout
        if "class_labels" not in inputs and self.null_text_input_ids is None:
            raise ValueError("text-conditional training needs `null_text_input_ids` (the empty caption).")
        conditions = build_conditions(transformer, class_labels=inputs.get("class_labels"),
                                      caption_ids=inputs.get("text_input_ids"), text_encoder=modules.text_encoder,
                                      null_caption_ids=self.null_text_input_ids, drop=drop, with_null=False,
                                      device=tokens.device)
        logits = conditional_denoise(transformer, noisy, conditions)  # (batch, length, codebook)
        loss = F.cross_entropy(logits[masked], tokens[masked], label_smoothing=args.label_smoothing)
        return (loss, {"logits": logits}) if return_outputs else loss


__all__ = ["MaskedImageTrainer", "MaskedImageTrainingArguments", "TextToImageModules", "mask_image_tokens"]
