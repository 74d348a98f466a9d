"""MaskGIT scheduler: iterative parallel decoding of masked image tokens (Chang et al., 2022, Sec. 3.2).

Each step samples every masked token from the transformer's distribution, then re-masks the least confident of the
newly sampled tokens so that the masked fraction follows the schedule γ(r) at progress r = (step + 1) / steps.
Confidences get Gumbel noise scaled by a choice temperature annealed over the steps. With the ``cosine`` and
``linear`` schedules and the same generator this reproduces diffusers' ``AmusedScheduler.step`` token for token;
``arccos`` and ``sqrt`` are MaskGIT's other schedules. One step is valid: everything is revealed at once.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput

from ..denoiser.schedule import MASK_SCHEDULES, MaskSchedule, mask_ratio_schedule

GeneratorArg = torch.Generator | Sequence[torch.Generator] | None


def is_integer(value: object) -> bool:
    """A Python or NumPy integer that is not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """A Python or NumPy real number that is not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_real(value: object, name: str, low: float | None = None, high: float | None = None,
               low_open: bool = False, allowed: str | None = None) -> None:
    """Raise `TypeError` unless ``value`` is a real number and `ValueError` unless it is finite and within
    ``[low, high]`` (``(low, high]`` with ``low_open``); the message names ``name``, the value and what is allowed."""
    if allowed is None:
        lower = "" if low is None else (f"> {low}" if low_open else f">= {low}")
        upper = "" if high is None else f"<= {high}"
        allowed = "a finite number" + (f" {lower}" if lower else "") + (" and" if lower and upper else "") + \
            (f" {upper}" if upper else "")
    if not is_real(value):
        raise TypeError(f"`{name}` must be {allowed}, got {value!r} of type {type(value).__name__}.")
    number = float(value)
    if not math.isfinite(number) or (low is not None and (number <= low if low_open else number < low)) \
            or (high is not None and number > high):
        raise ValueError(f"`{name}` must be {allowed}, got {value!r}.")


def check_temperature(value: object, name: str = "temperature") -> None:
    """A choice temperature: a finite number >= 0, or a ``(start, end)`` pair of them (annealed over the steps)."""
    allowed = "a finite number >= 0 or a (start, end) pair of them"
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"`{name}` must be {allowed}, got a sequence of {len(value)} values {value!r}.")
        for item in value:
            if not is_real(item):
                raise TypeError(f"`{name}` must be {allowed}, got {value!r}.")
            if not math.isfinite(float(item)) or float(item) < 0:
                raise ValueError(f"`{name}` must be {allowed}, got {value!r}.")
        return
    check_real(value, name, low=0.0, allowed=allowed)


def check_generator(generator: object, batch_size: int, name: str = "generator") -> None:
    """``None``, one ``torch.Generator``, or a list of exactly ``batch_size`` of them (one per image)."""
    if generator is None or isinstance(generator, torch.Generator):
        return
    if isinstance(generator, (list, tuple)):
        bad = [type(g).__name__ for g in generator if not isinstance(g, torch.Generator)]
        if bad:
            raise TypeError(f"`{name}` must be a torch.Generator or a list of them, got a list holding {bad}.")
        if len(generator) != batch_size:
            raise ValueError(f"`{name}` is a list of {len(generator)} generators, but the batch has {batch_size} "
                             f"images: pass exactly one generator per image, or a single generator.")
        return
    raise TypeError(f"`{name}` must be None, a torch.Generator or a list of them, got {type(generator).__name__}.")


def check_bool(value: object, name: str) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be True or False, got {value!r}.")


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
                generator: torch.Generator | None = None, positions: torch.BoolTensor | None = None,
                at_least_one: bool = False) -> tuple[torch.LongTensor, torch.BoolTensor]:
    """MaskGIT corruption (arXiv:2202.04200, Sec. 3.1), the one place it is written: each token (of ``positions``
    only, when given) is masked independently with probability ``mask_ratio`` (a float, or a tensor broadcastable
    to the rows, e.g. one ratio per row of shape (batch, 1)); ``at_least_one`` also masks the lowest-scored
    position of each row. Returns (masked sample, mask), shaped like ``sample``."""
    rows = sample.reshape(len(sample), -1)
    device = generator.device if generator is not None else sample.device
    scores = torch.rand(rows.shape, device=device, generator=generator).to(sample.device)
    allowed = None if positions is None else positions.reshape(rows.shape)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, 2.0)
    mask = scores < mask_ratio
    if allowed is not None:
        mask &= allowed
    if at_least_one:
        lowest = scores == scores.min(dim=1, keepdim=True).values
        mask |= lowest if allowed is None else lowest & allowed
    mask = mask.view(sample.shape)
    return sample.masked_fill(mask, mask_token_id), mask


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"{type(value).__name__} {value!r}"[:200]


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
        masking_schedule: γ — ``cosine`` | ``linear`` | ``arccos`` | ``sqrt`` (``hf_dlm.denoiser.MaskSchedule``,
            shared with the trainers; ``self.schedule``).
        choice_temperature: default temperature of the Gumbel noise on confidences, a float annealed linearly to
            0.01 or a ``(start, end)`` pair (aMUSEd: ``(2, 0)``); ``set_timesteps(temperature=...)`` overrides it.
    """

    order = 1

    @register_to_config
    def __init__(self, mask_token_id: int, masking_schedule: str = "cosine",
                 choice_temperature: float | tuple[float, float] = (2.0, 0.0)) -> None:
        if not is_integer(mask_token_id) or mask_token_id < 0:
            raise ValueError(f"`mask_token_id` must be an integer >= 0, got {mask_token_id!r}.")
        self.schedule = MaskSchedule(masking_schedule)
        check_temperature(choice_temperature, "choice_temperature")
        self.timesteps: torch.Tensor | None = None
        self.temperatures: torch.Tensor | None = None

    def set_timesteps(self, num_inference_steps: int,
                      temperature: float | tuple[float, float] | list[float] | None = None,
                      device: str | torch.device | None = None) -> None:
        """Timesteps ``num_inference_steps − 1 … 0`` and the per-step choice temperatures.

        ``temperature``: a finite number >= 0 (annealed linearly to 0.01) or a ``(start, end)`` pair; None uses the
        config's ``choice_temperature``. Raises `TypeError`/`ValueError` naming the argument otherwise."""
        if not is_integer(num_inference_steps) or num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be an integer >= 1, got {num_inference_steps!r}.")
        num_inference_steps = int(num_inference_steps)
        temperature = self.config.choice_temperature if temperature is None else temperature
        check_temperature(temperature, "temperature")
        if device is not None:
            if not isinstance(device, (str, torch.device)):
                raise TypeError(f"`device` must be None, a string or a torch.device, got {type(device).__name__}.")
            try:
                device = torch.device(device)
            except RuntimeError as error:
                raise ValueError(f"`device` {device!r} is not a valid torch device: {error}") from None
        self.timesteps = torch.arange(num_inference_steps, device=device).flip(0)
        if isinstance(temperature, (tuple, list)):
            self.temperatures = torch.linspace(temperature[0], temperature[1], num_inference_steps, device=device)
        else:
            self.temperatures = torch.linspace(temperature, 0.01, num_inference_steps, device=device)

    def _step_index(self, timestep: int | torch.Tensor) -> torch.Tensor:
        if self.timesteps is None:
            raise ValueError("call `set_timesteps` before `step` or `add_noise`.")
        if isinstance(timestep, torch.Tensor):
            if timestep.numel() != 1 or timestep.dtype.is_floating_point or timestep.dtype.is_complex \
                    or timestep.dtype == torch.bool:
                raise TypeError(f"`timestep` must be one integer timestep (an int or a one-element integer tensor), "
                                f"got a {timestep.dtype} tensor of shape {tuple(timestep.shape)}.")
            timestep = timestep.reshape(()).to(self.timesteps.device)
        elif not is_integer(timestep):
            raise TypeError(f"`timestep` must be one integer timestep from `scheduler.timesteps`, got {timestep!r}.")
        index = (self.timesteps == timestep).nonzero()
        if index.numel() == 0:
            raise ValueError(f"`timestep` {timestep} is not one of the scheduled timesteps {self.timesteps.tolist()}.")
        return index

    def mask_ratio(self, timestep: int | torch.Tensor) -> torch.Tensor:
        """γ after the step at ``timestep``: the fraction of tokens that stays masked."""
        index = self._step_index(timestep)
        return self.schedule((index + 1) / len(self.timesteps))

    def step(self, model_output: torch.Tensor, timestep: int | torch.Tensor, sample: torch.LongTensor,
             starting_mask_ratio: float = 1.0, generator: GeneratorArg = None,
             return_dict: bool = True) -> MaskGITSchedulerOutput | tuple:
        """One decoding step.

        Args:
            model_output: logits over the codebook, (batch, length, codebook) or (batch, codebook, height, width).
            timestep: the current timestep from ``self.timesteps``.
            sample: current tokens, (batch, length) or (batch, height, width), masked positions = ``mask_token_id``.
            starting_mask_ratio: scales γ (for image editing, where decoding starts partly unmasked).
            generator: for the token samples and the Gumbel noise: one ``torch.Generator``, or a list of one per
                row of the batch (each row is then stepped with its own generator, exactly as it would be alone).

        Raises `TypeError`/`ValueError` naming the argument for a non-float ``model_output``, a non-integer
        ``sample``, mismatched shapes, ids outside the codebook and the mask id, an unscheduled ``timestep``, a
        ``starting_mask_ratio`` outside [0, 1] or a generator list of the wrong length; and `ValueError` when
        ``model_output`` holds NaN or +inf logits (or a row of all −inf): those never become tokens.
        """
        self._check_step_inputs(model_output, timestep, sample, starting_mask_ratio, generator, return_dict)
        if isinstance(generator, (list, tuple)):
            rows = [self.step(model_output[i: i + 1], timestep, sample[i: i + 1], starting_mask_ratio, g,
                              return_dict=False) for i, g in enumerate(generator)]
            prev_sample = torch.cat([row[0] for row in rows])
            pred_original = torch.cat([row[1] for row in rows])
            if not return_dict:
                return prev_sample, pred_original
            return MaskGITSchedulerOutput(prev_sample, pred_original)
        two_dim = sample.ndim == 3 and model_output.ndim == 4
        if two_dim:
            batch, codebook, height, width = model_output.shape
            sample = sample.reshape(batch, height * width)
            model_output = model_output.reshape(batch, codebook, height * width).permute(0, 2, 1)
        unknown = sample == self.config.mask_token_id
        probs = model_output.softmax(dim=-1)
        finite = torch.isfinite(probs).all(dim=-1)
        if not finite.all():
            raise ValueError(f"`model_output` holds NaN or +inf logits (or rows of all -inf) at {int((~finite).sum())} "
                             f"of {finite.numel()} positions; the transformer produced non-finite values, and they "
                             "are never sampled as tokens.")
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
            ratio = starting_mask_ratio * self.schedule((index + 1) / len(self.timesteps))
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

    def add_noise(self, sample: torch.LongTensor, timesteps: int | torch.Tensor | None = None,
                  generator: GeneratorArg = None, positions: torch.BoolTensor | None = None,
                  return_mask: bool = False) -> torch.LongTensor | tuple[torch.LongTensor, torch.BoolTensor,
                                                                           torch.Tensor]:
        """MaskGIT corruption q(x_t | x_0) (arXiv:2202.04200, Sec. 3.1), for samplers and trainers alike.

        Args:
            sample: integer tokens (batch, length) or (batch, height, width).
            timesteps: one of ``self.timesteps``: every token is masked with probability γ at that step, as aMUSEd's
                ``add_noise`` does. None: the training draw — per row r ~ U(0, 1), ratio γ(r), and at least one
                position masked per row (no ``set_timesteps`` needed).
            generator: one ``torch.Generator`` or a list of one per row of ``sample``.
            positions: a boolean tensor like ``sample``: only these positions may be masked (a text prompt stays).
            return_mask: return (noisy sample, mask, per-row ratio of shape (batch,)) instead of the noisy sample.
        """
        if not isinstance(sample, torch.Tensor) or sample.dtype.is_floating_point or sample.dtype.is_complex \
                or sample.dtype == torch.bool or sample.ndim < 2:
            raise TypeError("`sample` must be an integer token tensor of shape (batch, length) or (batch, height, "
                            f"width), got {_describe(sample)}.")
        if (sample < 0).any():
            raise ValueError(f"`sample` holds negative token ids {sample[sample < 0].unique()[:5].tolist()}.")
        if positions is not None and (not isinstance(positions, torch.Tensor) or positions.dtype != torch.bool
                                      or positions.shape != sample.shape):
            raise TypeError(f"`positions` must be a boolean tensor shaped like `sample` {tuple(sample.shape)}, got "
                            f"{_describe(positions)}.")
        ratio = self.mask_ratio(timesteps) if timesteps is not None else None
        check_generator(generator, sample.shape[0])
        if isinstance(generator, (list, tuple)):
            rows = [self._corrupt(sample[i: i + 1], ratio, g, None if positions is None else positions[i: i + 1])
                    for i, g in enumerate(generator)]
            noisy, mask, ratios = (torch.cat(parts) for parts in zip(*rows))
        else:
            noisy, mask, ratios = self._corrupt(sample, ratio, generator, positions)
        return (noisy, mask, ratios) if return_mask else noisy

    def _corrupt(self, sample: torch.LongTensor, ratio: torch.Tensor | None, generator: torch.Generator | None,
                 positions: torch.BoolTensor | None) -> tuple[torch.LongTensor, torch.BoolTensor, torch.Tensor]:
        training = ratio is None
        if training:
            ratio = self.schedule.draw(len(sample), sample.device, generator)
        noisy, mask = random_mask(sample, ratio, self.config.mask_token_id, generator, positions,
                                  at_least_one=training)
        return noisy, mask, ratio.reshape(-1).expand(len(sample)) if ratio.numel() == 1 else ratio.reshape(-1)

    def _check_step_inputs(self, model_output: object, timestep: object, sample: object,
                           starting_mask_ratio: object, generator: object, return_dict: object) -> None:
        if not isinstance(model_output, torch.Tensor) or not model_output.dtype.is_floating_point:
            raise TypeError(f"`model_output` must be a floating-point tensor of logits, got {_describe(model_output)}.")
        if not isinstance(sample, torch.Tensor) or sample.dtype.is_floating_point or sample.dtype.is_complex \
                or sample.dtype == torch.bool:
            raise TypeError(f"`sample` must be an integer token tensor, got {_describe(sample)}.")
        if sample.ndim == 2 and model_output.ndim == 3 and tuple(model_output.shape[:2]) == tuple(sample.shape):
            codebook = model_output.shape[-1]
        elif sample.ndim == 3 and model_output.ndim == 4 and model_output.shape[0] == sample.shape[0] \
                and tuple(model_output.shape[2:]) == tuple(sample.shape[1:]):
            codebook = model_output.shape[1]
        else:
            raise ValueError("`model_output` and `sample` must be (batch, length, codebook) and (batch, length), or "
                             "(batch, codebook, height, width) and (batch, height, width); got "
                             f"{tuple(model_output.shape)} and {tuple(sample.shape)}.")
        if codebook < 1 or sample.shape[0] < 1:
            raise ValueError(f"`model_output` {tuple(model_output.shape)} has an empty batch or codebook.")
        mask_id = self.config.mask_token_id
        valid = (sample == mask_id) | ((sample >= 0) & (sample < codebook))
        if not valid.all():
            raise ValueError(f"`sample` holds ids {sample[~valid].unique()[:5].tolist()} outside the codebook "
                             f"[0, {codebook - 1}] and the mask id {mask_id}.")
        self._step_index(timestep)
        check_real(starting_mask_ratio, "starting_mask_ratio", low=0.0, high=1.0)
        check_generator(generator, sample.shape[0])
        check_bool(return_dict, "return_dict")


__all__ = ["MASK_SCHEDULES", "MaskGITScheduler", "MaskGITSchedulerOutput", "MaskSchedule", "check_generator",
           "check_real", "check_temperature", "is_integer", "is_real", "mask_ratio_schedule", "random_mask",
           "remask_least_confident"]
