"""``LogitFMTrainer``: trains a Logit-FM denoiser with the transformers ``Trainer``."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import Trainer, TrainingArguments

from ...generation.logit_fm.path import check_smoothing
from ..mdm_loss import prompt_mask_from_lengths
from .objective import TIME_DISTRIBUTIONS, denoising_loss, noisy_simplex, sample_flow_times


@dataclass
class LogitFMTrainingArguments(TrainingArguments):
    """[`TrainingArguments`] plus the knobs of the Logit-FM objective (eq. 15)."""

    smoothing_beta: float | None = field(default=None, metadata={
        "help": "β of eq. 3, x_1ˢ = (1 − β) x_1 + β/N; in (0, 1). None = the model config's `smoothing_beta` "
                "(the paper: 0.01)."})
    dirichlet_concentration: float | None = field(default=None, metadata={
        "help": "α of the noise x_0 ~ Dirichlet(α·1); None = the model config's (the paper: 1)."})
    time_distribution: str = field(default="uniform", metadata={
        "help": "'uniform': t ~ U[0, t_max] (the paper); 'log_uniform': uniform in −log(1 − t) on [0, t_max] "
                "(the authors' public code, with t_max = 0.3)."})
    t_max: float = field(default=1.0, metadata={"help": "Largest training time, in (0, 1] (< 1 for log_uniform)."})
    remove_unused_columns: bool = field(default=False, metadata={
        "help": "Kept False: batches may carry `prompt_lengths`, which the model's forward does not take."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.smoothing_beta is not None:
            check_smoothing(self.smoothing_beta)
        if self.dirichlet_concentration is not None and not self.dirichlet_concentration > 0:
            raise ValueError(f"`dirichlet_concentration` must be > 0, got {self.dirichlet_concentration!r}.")
        if self.time_distribution not in TIME_DISTRIBUTIONS:
            raise ValueError(f"`time_distribution` must be one of {TIME_DISTRIBUTIONS}, "
                             f"got {self.time_distribution!r}.")
        if not 0.0 < self.t_max <= 1.0 or (self.time_distribution == "log_uniform" and self.t_max >= 1.0):
            raise ValueError(f"`t_max` must lie in (0, 1] ((0, 1) for log_uniform), got {self.t_max!r}.")


class LogitFMTrainer(Trainer):
    """Trains p_θ(x_1 | x_t, t) with the Logit-FM denoising objective (eq. 15 of "Integrating geodesic interpolation
    and flow matching for non-autoregressive text generation in logit space"): per sequence a time t, noise
    x_0 ~ Dirichlet(α), the geodesic point x_t between x_0 and the β-smoothed data (eqs. 2–3), and the cross-entropy
    of the model's logits against the data tokens.

    Batches hold ``input_ids``, optionally ``attention_mask`` (padding is neither noised nor scored) and
    ``prompt_lengths`` (the prompt stays a one-hot point and is not scored; see ``MaskedDiffusionSFTCollator``).
    """

    args: LogitFMTrainingArguments

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | None = None):
        config = self.accelerator.unwrap_model(model).config
        beta = self.args.smoothing_beta if self.args.smoothing_beta is not None else config.smoothing_beta
        alpha = (self.args.dirichlet_concentration if self.args.dirichlet_concentration is not None
                 else config.dirichlet_concentration)
        input_ids = inputs["input_ids"]
        attention_mask = inputs.get("attention_mask")
        scored = attention_mask.bool() if attention_mask is not None else torch.ones_like(input_ids, dtype=torch.bool)
        fixed = ~scored
        if inputs.get("prompt_lengths") is not None:
            prompt = prompt_mask_from_lengths(inputs["prompt_lengths"], input_ids.shape[1])
            fixed, scored = fixed | prompt, scored & ~prompt
        t = sample_flow_times(len(input_ids), self.args.time_distribution, self.args.t_max, input_ids.device)
        simplex = noisy_simplex(input_ids, t, config.vocab_size, beta, alpha, fixed)
        logits = model(simplex=simplex, timesteps=t, attention_mask=attention_mask).logits
        loss = denoising_loss(logits, input_ids, scored)
        return (loss, {"logits": logits}) if return_outputs else loss


__all__ = ["LogitFMTrainer", "LogitFMTrainingArguments"]
