"""``MaskedDiffusionTrainer``: pre-training and SFT of masked diffusion LMs with the transformers ``Trainer``."""

from __future__ import annotations

from dataclasses import dataclass, field
import torch
from transformers import Trainer, TrainingArguments

from ..denoiser import denoise, get_mask_token_id
from .mdm_loss import forward_process, pretraining_loss, prompt_mask_from_lengths, sft_loss

OBJECTIVES = ("auto", "pretrain", "sft")


@dataclass
class MaskedDiffusionTrainingArguments(TrainingArguments):
    """[`TrainingArguments`] plus the knobs of the masked-diffusion objective."""

    mask_eps: float = field(default=1e-3, metadata={
        "help": "Floor of the mask probability: p_mask = (1 - mask_eps) * t + mask_eps with t ~ U(0, 1) (LLaDA)."})
    objective: str = field(default="auto", metadata={
        "help": "'pretrain' (eq. 3: every token may be masked, loss / (B*L)), 'sft' (eq. 5: prompt never masked, "
                "loss normalised per answer length; needs `prompt_lengths` in the batch) or 'auto' (sft when the "
                "batch carries `prompt_lengths`)."})
    remove_unused_columns: bool = field(default=False, metadata={
        "help": "Kept False: the batch carries `prompt_lengths`, which the model's forward does not take."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.objective not in OBJECTIVES:
            raise ValueError(f"`objective` must be one of {OBJECTIVES}, got {self.objective!r}.")
        if not 0 <= self.mask_eps < 1:
            raise ValueError(f"`mask_eps` must lie in [0, 1), got {self.mask_eps}.")


class MaskedDiffusionTrainer(Trainer):
    """Trains any model that follows the denoiser contract with LLaDA's masked-diffusion objective
    (Nie et al., 2025, eq. 3 for pre-training, eq. 5 for SFT). Works with peft models and under DDP.

    Batches hold ``input_ids``, optionally ``attention_mask`` (padding is never masked nor scored) and, for SFT,
    ``prompt_lengths`` (see [`MaskedDiffusionSFTCollator`] in ``training.data``).
    """

    args: MaskedDiffusionTrainingArguments

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | None = None):
        input_ids = inputs["input_ids"]
        attention_mask = inputs.get("attention_mask")
        prompt_lengths = inputs.get("prompt_lengths")
        objective = getattr(self.args, "objective", "auto")
        if objective == "auto":
            objective = "sft" if prompt_lengths is not None else "pretrain"
        if objective == "sft" and prompt_lengths is None:
            raise ValueError("objective='sft' needs `prompt_lengths` in every batch (use MaskedDiffusionSFTCollator).")
        maskable = attention_mask.bool() if attention_mask is not None else torch.ones_like(input_ids, dtype=torch.bool)
        if objective == "sft":
            maskable &= ~prompt_mask_from_lengths(prompt_lengths, input_ids.shape[1])
        noisy, masked, p_mask = forward_process(input_ids, get_mask_token_id(model), getattr(self.args, "mask_eps", 1e-3),
                                                maskable)
        logits = denoise(model, noisy, attention_mask)
        if objective == "sft":
            answer_lengths = maskable.sum(dim=1).clamp_min(1)
            loss = sft_loss(logits, input_ids, masked, p_mask, answer_lengths)
        else:
            loss = pretraining_loss(logits, input_ids, masked, p_mask)
        return (loss, {"logits": logits}) if return_outputs else loss


__all__ = ["MaskedDiffusionTrainer", "MaskedDiffusionTrainingArguments"]
