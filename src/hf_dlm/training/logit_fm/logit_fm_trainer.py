"""``LogitFMTrainer``: trains a Logit-FM denoiser with the transformers ``Trainer``."""

from __future__ import annotations

import torch
from transformers import Trainer

from ..._io import AtomicCheckpointMixin
from ..._training_guards import ResumeGuardMixin, check_token_ids, require_batch_keys
from ..mdm_loss import trainable_positions
from .logit_fm_config import LogitFMTrainingArguments
from .objective import denoising_loss, loss_positions_mask, noisy_simplex, sample_flow_times


class LogitFMTrainer(ResumeGuardMixin, AtomicCheckpointMixin, Trainer):
    """Trains p_θ(x_1 | x_t, t) with the Logit-FM denoising objective (eq. 15 of "Integrating geodesic interpolation
    and flow matching for non-autoregressive text generation in logit space"): per sequence a time t, noise
    x_0 ~ Dirichlet(α), the geodesic point x_t between x_0 and the β-smoothed data (eqs. 2–3), and the cross-entropy
    of the model's logits against the data tokens.

    Batches hold ``input_ids``, optionally ``attention_mask`` (padding is neither noised nor scored),
    ``prompt_lengths`` (the prompt stays a one-hot point and is not scored; see ``MaskedDiffusionSFTCollator``) and
    ``labels`` (positions labelled −100 stay one-hot points and are not scored, like the prompt). With
    ``loss_positions="all"`` (the authors' code) every position is scored, prompt and padding included; the prompt
    still stays a one-hot point (the authors' code does the same). Refused by name:
    a batch without ``input_ids``, ids outside ``[0, vocab_size)``, a row with nothing to score. Resuming follows
    [`ResumeGuardMixin`].
    """

    args: LogitFMTrainingArguments
    loss_is_scaled_for_ga = False  # the loss ignores `num_items_in_batch` (which `labels` in a batch would trigger)

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | None = None):
        config = self.accelerator.unwrap_model(model).config
        beta = self.args.smoothing_beta if self.args.smoothing_beta is not None else config.smoothing_beta
        alpha = (self.args.dirichlet_concentration if self.args.dirichlet_concentration is not None
                 else config.dirichlet_concentration)
        require_batch_keys(inputs, ("input_ids",), "LogitFMTrainer", "Each dataset row must hold `input_ids`.")
        input_ids = inputs["input_ids"]
        check_token_ids("input_ids", input_ids, config.vocab_size, dim=2)
        attention_mask = inputs.get("attention_mask")
        # padding, the prompt and −100-labelled positions are fixed one-hot points and not scored
        scored = trainable_positions(input_ids, attention_mask, inputs.get("prompt_lengths"), inputs.get("labels"))
        fixed = ~scored
        t = sample_flow_times(len(input_ids), self.args.time_distribution, self.args.t_max, input_ids.device)
        simplex = noisy_simplex(input_ids, t, config.vocab_size, beta, alpha, fixed)
        logits = model(simplex=simplex, timesteps=t, attention_mask=attention_mask).logits
        loss = denoising_loss(logits, input_ids, loss_positions_mask(scored, self.args.loss_positions))
        return (loss, {"logits": logits}) if return_outputs else loss


__all__ = ["LogitFMTrainer"]
