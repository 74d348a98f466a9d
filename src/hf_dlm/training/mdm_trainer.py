"""``MaskedDiffusionTrainer``: pre-training and SFT of masked diffusion LMs with the transformers ``Trainer``."""

from __future__ import annotations

from dataclasses import dataclass, field
import torch
from transformers import Trainer

from .._io import AtomicCheckpointMixin
from .._training_guards import (GuardedTrainingArguments, ResumeGuardMixin, check_choice, check_real,
                                check_token_ids, embedding_rows, require_batch_keys)
from ..denoiser import denoise, get_mask_token_id
from .mdm_loss import forward_process, pretraining_loss, sft_loss, trainable_positions

OBJECTIVES = ("auto", "pretrain", "sft")


@dataclass
class MaskedDiffusionTrainingArguments(GuardedTrainingArguments):
    """[`TrainingArguments`] plus the knobs of the masked-diffusion objective, checked at construction (type, range,
    finiteness; see [`GuardedTrainingArguments`] for the optimizer knobs and ``restart_optimizer_on_resume``)."""

    mask_eps: float = field(default=1e-3, metadata={
        "help": "Floor of the mask probability: p_mask = (1 - mask_eps) * t + mask_eps with t ~ U(0, 1) (LLaDA); "
                "in (0, 1): 0 would let p_mask reach 0, and the loss divides by it."})
    objective: str = field(default="auto", metadata={
        "help": "'pretrain' (eq. 3: every token may be masked, loss / (B*L)), 'sft' (eq. 5: prompt never masked, "
                "loss normalised per answer length; needs `prompt_lengths` in the batch) or 'auto' (sft when the "
                "batch carries `prompt_lengths`)."})
    remove_unused_columns: bool = field(default=False, metadata={
        "help": "Kept False: the batch carries `prompt_lengths`, which the model's forward does not take."})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("objective", self.objective, OBJECTIVES)
        self.mask_eps = check_real("mask_eps", self.mask_eps, low=0.0, high=1.0, low_open=True, high_open=True)


class MaskedDiffusionTrainer(ResumeGuardMixin, AtomicCheckpointMixin, Trainer):
    """Trains any model that follows the denoiser contract with LLaDA's masked-diffusion objective
    (Nie et al., 2025, eq. 3 for pre-training, eq. 5 for SFT). Works with peft models and under DDP.

    Batches hold ``input_ids``, optionally ``attention_mask`` (padding is never masked nor scored), ``labels``
    (positions labelled −100 are never masked nor scored; elsewhere a label must equal its token) and, for SFT,
    ``prompt_lengths`` (see [`MaskedDiffusionSFTCollator`] in ``training.data``). See
    [`~hf_dlm.training.mdm_loss.trainable_positions`] for how the three combine; SFT normalises each row by its
    number of trainable positions, pre-training by B·L as LLaDA's code does.

    Refused by name at every step: a batch without ``input_ids``; ids outside the model's embedding or equal to the
    mask token; a row with nothing to train (its loss would be exactly 0); ``prompt_lengths`` with
    ``objective='pretrain'`` (it would be ignored). Resuming follows [`ResumeGuardMixin`].
    """

    args: MaskedDiffusionTrainingArguments
    loss_is_scaled_for_ga = False  # the loss ignores `num_items_in_batch` (which `labels` in a batch would trigger)

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | None = None):
        require_batch_keys(inputs, ("input_ids",), "MaskedDiffusionTrainer",
                           "Each dataset row must hold `input_ids` (or `prompt_ids`/`answer_ids` for "
                           "MaskedDiffusionSFTCollator).")
        input_ids = inputs["input_ids"]
        attention_mask = inputs.get("attention_mask")
        prompt_lengths = inputs.get("prompt_lengths")
        objective = getattr(self.args, "objective", "auto")
        if objective == "auto":
            objective = "sft" if prompt_lengths is not None else "pretrain"
        if objective == "sft" and prompt_lengths is None:
            raise ValueError("objective='sft' needs `prompt_lengths` in every batch (use MaskedDiffusionSFTCollator).")
        if objective == "pretrain" and prompt_lengths is not None:
            raise ValueError("objective='pretrain' masks every position, but the batch carries `prompt_lengths`: use "
                             "objective='sft' (or 'auto') to keep prompts unmasked, or drop `prompt_lengths`.")
        mask_token_id = get_mask_token_id(model)
        self._check_ids(model, input_ids, mask_token_id)
        maskable = trainable_positions(input_ids, attention_mask, prompt_lengths, inputs.get("labels"))
        noisy, masked, p_mask = forward_process(input_ids, mask_token_id, getattr(self.args, "mask_eps", 1e-3),
                                                maskable)
        logits = denoise(model, noisy, attention_mask)
        if objective == "sft":
            answer_lengths = maskable.sum(dim=1).clamp_min(1)
            loss = sft_loss(logits, input_ids, masked, p_mask, answer_lengths)
        else:
            loss = pretraining_loss(logits, input_ids, masked, p_mask)
        return (loss, {"logits": logits}) if return_outputs else loss

    def _check_ids(self, model: torch.nn.Module, input_ids: torch.Tensor, mask_token_id: int) -> None:
        """``input_ids`` must be a (batch, length) integer tensor inside the model's embedding, without the mask id
        (clean data holding the mask token would teach the model to predict the mask)."""
        rows = embedding_rows(self.accelerator.unwrap_model(model))
        if rows is not None:
            check_token_ids("input_ids", input_ids, rows, dim=2, what="model's embedding rows")
        if bool((input_ids == mask_token_id).any()):
            raise ValueError(f"`input_ids` holds the mask token id {mask_token_id} at "
                             f"{int((input_ids == mask_token_id).sum())} positions: clean training data must not "
                             "contain the mask token.")


__all__ = ["MaskedDiffusionTrainer", "MaskedDiffusionTrainingArguments"]
