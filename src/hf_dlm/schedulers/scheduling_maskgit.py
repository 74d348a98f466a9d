"""MaskGIT scheduler: iterative parallel decoding of masked image tokens (Chang et al., 2022, Sec. 3.2).

Each step samples every masked token from the transformer's distribution, then re-masks the least confident of the
newly sampled tokens so that the masked fraction follows the schedule γ(r) at progress r = (step + 1) / steps.
Confidences get Gumbel noise scaled by a choice temperature annealed over the steps. With the ``cosine`` and
``linear`` schedules and the same generator this reproduces diffusers' ``AmusedScheduler.step`` token for token;
``arccos`` and ``sqrt`` are MaskGIT's other schedules. One step is valid: everything is revealed at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput

MASK_SCHEDULES = ("cosine", "linear", "arccos", "sqrt")


def mask_ratio_schedule(progress: torch.Tensor, schedule: str) -> torch.Tensor:
    """γ(r): the fraction of tokens still masked after progress ``r`` ∈ [0, 1] (γ(0) = 1, γ(1) = 0).

    cosine: cos(rπ/2) (MaskGIT's default); linear: 1 − r; arccos: arccos(r)/(π/2); sqrt: 1 − √r."""
    if schedule == "cosine":
        return torch.cos(progress * math.pi / 2)
    if schedule == "linear":
        return 1 - progress
    if schedule == "arccos":
        return torch.arccos(progress) / (math.pi / 2)
    if schedule == "sqrt":
        return 1 - torch.sqrt(progress)
    raise ValueError(f"`masking_schedule` must be one of {MASK_SCHEDULES}, got {schedule!r}.")


def gumbel_noise(like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard Gumbel noise shaped like ``like``, drawn on the generator's device (clamped away from log 0)."""
    device = generator.device if generator is not None else like.device
    uniform = torch.zeros_like(like, device=device).uniform_(0, 1, generator=generator).to(like.device)
    return -torch.log((-torch.log(uniform.clamp(1e-20))).clamp(1e-20))


def remask_least_confident(num_masked: torch.Tensor, probs: torch.Tensor, temperature: torch.Tensor | float,
                           generator: torch.Generator | None = None) -> torch.BoolTensor:
    """Positions to mask again: per row the ``num_masked`` lowest of ``log p + temperature · Gumbel``."""
    confidence = torch.log(probs.clamp(1e-20)) + temperature * gumbel_noise(probs, generator)
    cut_off = torch.gather(torch.sort(confidence, dim=-1).values, 1, num_masked.long())
    return confidence < cut_off


def random_mask(sample: torch.LongTensor, mask_ratio: torch.Tensor | float, mask_token_id: int,
                generator: torch.Generator | None = None) -> tuple[torch.LongTensor, torch.BoolTensor]:
    """Training-time corruption: mask each token independently with probability ``mask_ratio`` (a float, or a
    tensor broadcastable to ``sample``, e.g. one ratio per image). Returns (masked sample, mask)."""
    device = generator.device if generator is not None else sample.device
    mask = torch.rand(sample.shape, device=device, generator=generator).to(sample.device) < mask_ratio
    return sample.masked_fill(mask, mask_token_id), mask


@dataclass
class MaskGITSchedulerOutput(BaseOutput):
    """``prev_sample``: the tokens for the next step (re-masked); ``pred_original_sample``: all masked tokens
    filled by this step's samples."""

    prev_sample: torch.LongTensor
    pred_original_sample: torch.LongTensor | None = None


class MaskGITScheduler(SchedulerMixin, ConfigMixin):
    """MaskGIT / aMUSEd iterative decoding of token grids.

    Args:
        mask_token_id: the id of the mask token in ``sample``.
        masking_schedule: γ — ``cosine`` | ``linear`` | ``arccos`` | ``sqrt``.
        choice_temperature: default temperature of the Gumbel noise on confidences, a float annealed linearly to
            0.01 or a ``(start, end)`` pair (aMUSEd: ``(2, 0)``); ``set_timesteps(temperature=...)`` overrides it.
    """

    order = 1

    @register_to_config
    def __init__(self, mask_token_id: int, masking_schedule: str = "cosine",
                 choice_temperature: float | tuple[float, float] = (2.0, 0.0)) -> None:
        if masking_schedule not in MASK_SCHEDULES:
            raise ValueError(f"`masking_schedule` must be one of {MASK_SCHEDULES}, got {masking_schedule!r}.")
        self.timesteps: torch.Tensor | None = None
        self.temperatures: torch.Tensor | None = None

    def set_timesteps(self, num_inference_steps: int,
                      temperature: float | tuple[float, float] | list[float] | None = None,
                      device: str | torch.device | None = None) -> None:
        """Timesteps ``num_inference_steps − 1 … 0`` and the per-step choice temperatures."""
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be an integer >= 1, got {num_inference_steps!r}.")
        temperature = self.config.choice_temperature if temperature is None else temperature
        self.timesteps = torch.arange(num_inference_steps, device=device).flip(0)
        if isinstance(temperature, (tuple, list)):
            self.temperatures = torch.linspace(temperature[0], temperature[1], num_inference_steps, device=device)
        else:
            self.temperatures = torch.linspace(temperature, 0.01, num_inference_steps, device=device)

    def _step_index(self, timestep: int | torch.Tensor) -> torch.Tensor:
        if self.timesteps is None:
            raise ValueError("call `set_timesteps` before `step` or `add_noise`.")
        index = (self.timesteps == timestep).nonzero()
        if index.numel() == 0:
            raise ValueError(f"`timestep` {timestep} is not one of the scheduled timesteps {self.timesteps.tolist()}.")
        return index

    def mask_ratio(self, timestep: int | torch.Tensor) -> torch.Tensor:
        """γ after the step at ``timestep``: the fraction of tokens that stays masked."""
        index = self._step_index(timestep)
        return mask_ratio_schedule((index + 1) / len(self.timesteps), self.config.masking_schedule)

    def step(self, model_output: torch.Tensor, timestep: int | torch.Tensor, sample: torch.LongTensor,
             starting_mask_ratio: float = 1.0, generator: torch.Generator | None = None,
             return_dict: bool = True) -> MaskGITSchedulerOutput | tuple:
        """One decoding step.

        Args:
            model_output: logits over the codebook, (batch, length, codebook) or (batch, codebook, height, width).
            timestep: the current timestep from ``self.timesteps``.
            sample: current tokens, (batch, length) or (batch, height, width), masked positions = ``mask_token_id``.
            starting_mask_ratio: scales γ (for image editing, where decoding starts partly unmasked).
            generator: for the token samples and the Gumbel noise.
        """
        two_dim = sample.ndim == 3 and model_output.ndim == 4
        if two_dim:
            batch, codebook, height, width = model_output.shape
            sample = sample.reshape(batch, height * width)
            model_output = model_output.reshape(batch, codebook, height * width).permute(0, 2, 1)
        unknown = sample == self.config.mask_token_id
        probs = model_output.softmax(dim=-1)
        device = probs.device
        flat = probs.to(generator.device) if generator is not None else probs
        if flat.device.type == "cpu" and flat.dtype != torch.float32:
            flat = flat.float()  # multinomial has no CPU half-precision kernel
        sampled = torch.multinomial(flat.reshape(-1, probs.size(-1)), 1, generator=generator).to(device)
        pred_original = torch.where(unknown, sampled[:, 0].view(*probs.shape[:-1]), sample)

        if timestep == 0:
            prev_sample = pred_original
        else:
            index = self._step_index(timestep)
            ratio = starting_mask_ratio * mask_ratio_schedule((index + 1) / len(self.timesteps),
                                                              self.config.masking_schedule)
            num_masked = (sample.shape[1] * ratio).floor()
            num_masked = torch.min(unknown.sum(dim=-1, keepdim=True) - 1, num_masked)  # reveal at least one
            num_masked = torch.max(torch.tensor([1], device=device), num_masked)
            selected = torch.gather(probs, -1, pred_original[:, :, None])[:, :, 0]
            selected = torch.where(unknown, selected, torch.finfo(selected.dtype).max)  # given tokens stay
            remask = remask_least_confident(num_masked, selected, self.temperatures[index], generator)
            prev_sample = torch.where(remask, self.config.mask_token_id, pred_original)

        if two_dim:
            prev_sample = prev_sample.reshape(batch, height, width)
            pred_original = pred_original.reshape(batch, height, width)
        if not return_dict:
            return prev_sample, pred_original
        return MaskGITSchedulerOutput(prev_sample, pred_original)

    def add_noise(self, sample: torch.LongTensor, timesteps: int | torch.Tensor,
                  generator: torch.Generator | None = None) -> torch.LongTensor:
        """Mask each token with probability γ at ``timesteps`` (one of ``self.timesteps``), as aMUSEd does."""
        return random_mask(sample, self.mask_ratio(timesteps), self.config.mask_token_id, generator)[0]


__all__ = ["MASK_SCHEDULES", "MaskGITScheduler", "MaskGITSchedulerOutput", "mask_ratio_schedule", "random_mask",
           "remask_least_confident"]
