"""Checks at the Trainers' boundary, shared by every hf-dlm ``Trainer`` so that training cannot silently do nothing.

- [`check_real`] / [`check_int`]: an argument's type, finiteness and range, refused with a ``TypeError`` or
  ``ValueError`` that names the argument, the value and what is allowed.
- [`GuardedTrainingArguments`]: ``TrainingArguments`` whose optimizer knobs (``learning_rate``, ``weight_decay``,
  Adam's betas and epsilon, ``max_grad_norm``) are checked, plus the explicit ``restart_optimizer_on_resume``
  opt-in. Every hf-dlm argument class derives from it.
- [`check_token_ids`] / [`require_batch_keys`] / [`check_train_dataset`]: what a batch and a dataset must hold.
- [`ResumeGuardMixin`]: resuming refuses a checkpoint without its optimizer and scheduler state (unless
  ``restart_optimizer_on_resume=True``, which restarts them with a warning), and resuming a finished run trains
  zero steps and says so in the log (transformers' loop would otherwise train one step past ``max_steps``).

The module sits at the package root, like ``_io``, because hf-dlm's Trainers live in two layers: ``training/``
and ``multimodal/`` (below training, which it must not import).
"""

from __future__ import annotations

import glob
import math
import numbers
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import TrainingArguments
from transformers.utils import logging

logger = logging.get_logger(__name__)

OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"


# ---------------------------------------------------------------------------------------------- argument values
def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    return f"{'<' if high_open else '<='} {high:g}"


def check_real(name: str, value: Any, *, low: float | None = None, high: float | None = None,
               low_open: bool = False, high_open: bool = False, allow_none: bool = False,
               allow_inf: bool = False) -> float | None:
    """``value`` as a float after checking it is a real number (not a bool, not a string), finite (``+inf`` only
    with ``allow_inf``; NaN never) and inside the interval ``low``..``high`` (open ends with ``low_open`` /
    ``high_open``). ``None`` passes only with ``allow_none``.

    Raises:
        TypeError: not a real number. ValueError: NaN, infinite, or outside the interval.
    """
    if value is None:
        if allow_none:
            return None
        raise TypeError(f"`{name}` must be a real number, got None.")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number, got {value!r} ({type(value).__name__}).")
    number = float(value)
    if math.isnan(number) or (math.isinf(number) and not (allow_inf and number > 0)):
        raise ValueError(f"`{name}` must be a finite number, got {value!r}.")
    below = low is not None and (number < low or (low_open and number == low))
    above = high is not None and (number > high or (high_open and number == high))
    if below or above:
        raise ValueError(f"`{name}` must be {_interval(low, high, low_open, high_open)}, got {value!r}."
                         if high is None or low is None else
                         f"`{name}` must lie in {_interval(low, high, low_open, high_open)}, got {value!r}.")
    return number


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None,
              allow_none: bool = False) -> int | None:
    """``value`` as an int after checking it is an integer (not a bool, not a float) in ``[low, high]``.

    Raises:
        TypeError: not an integer. ValueError: outside the range.
    """
    if value is None:
        if allow_none:
            return None
        raise TypeError(f"`{name}` must be an integer, got None.")
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.dtype.is_floating_point \
            and value.dtype != torch.bool:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer, got {value!r} ({type(value).__name__}).")
    number = int(value)
    if (low is not None and number < low) or (high is not None and number > high):
        raise ValueError(f"`{name}` must be {_interval(low, high, False, False)}, got {number}."
                         if high is None or low is None else
                         f"`{name}` must lie in {_interval(low, high, False, False)}, got {number}.")
    return number


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """``value`` if it is one of ``allowed``, else a ``ValueError`` naming ``name`` and the choices."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {allowed}, got {value!r}.")
    return value


@dataclass
class GuardedTrainingArguments(TrainingArguments):
    """[`TrainingArguments`] whose optimizer knobs are checked at construction (transformers accepts a NaN or
    negative ``learning_rate``, a ``weight_decay`` of ``inf``, ``adam_beta1=2`` …), plus the explicit opt-in to
    resume from a checkpoint whose optimizer state is missing. Base of every hf-dlm argument class."""

    restart_optimizer_on_resume: bool = field(default=False, metadata={
        "help": "Resuming from a checkpoint without `optimizer.pt` / `scheduler.pt` is refused (the optimizer's "
                "moments and the learning-rate schedule would silently restart). True restarts them from scratch "
                "instead, with a warning."})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.learning_rate = check_real("learning_rate", self.learning_rate, low=0.0)
        if self.learning_rate == 0.0:
            logger.warning("`learning_rate` is 0: training will not change the trained weights.")
        self.weight_decay = check_real("weight_decay", self.weight_decay, low=0.0)
        self.adam_beta1 = check_real("adam_beta1", self.adam_beta1, low=0.0, high=1.0, high_open=True)
        self.adam_beta2 = check_real("adam_beta2", self.adam_beta2, low=0.0, high=1.0, high_open=True)
        self.adam_epsilon = check_real("adam_epsilon", self.adam_epsilon, low=0.0)
        # <= 0 disables clipping (transformers' convention) and +inf is a clip that never bites: both honoured
        self.max_grad_norm = check_real("max_grad_norm", self.max_grad_norm, allow_inf=True)
        if not isinstance(self.restart_optimizer_on_resume, bool):
            raise TypeError(f"`restart_optimizer_on_resume` must be a bool, got {self.restart_optimizer_on_resume!r}.")


# ---------------------------------------------------------------------------------------------- batches, datasets
def require_batch_keys(inputs: Mapping[str, Any], keys: Iterable[str], owner: str, hint: str = "") -> None:
    """Refuse a batch that lacks one of ``keys`` (``ValueError`` naming the missing keys and the batch's keys)."""
    if not isinstance(inputs, Mapping):
        raise TypeError(f"{owner} needs each batch to be a dict of tensors, got {type(inputs).__name__}.")
    missing = [key for key in keys if inputs.get(key) is None]
    if missing:
        raise ValueError(f"{owner} needs {', '.join(f'`{k}`' for k in missing)} in every batch; the batch holds "
                         f"{sorted(inputs)}.{(' ' + hint) if hint else ''}")


def check_id_tensor(name: str, ids: Any, dim: int | None = None) -> torch.Tensor:
    """``ids`` must be an integer tensor (of ``dim`` dimensions when given)."""
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"`{name}` must be a tensor of token ids, got {type(ids).__name__}.")
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise TypeError(f"`{name}` must hold integer ids, got dtype {ids.dtype}.")
    if dim is not None and ids.dim() != dim:
        raise ValueError(f"`{name}` must have {dim} dimensions, got shape {tuple(ids.shape)}.")
    return ids


def check_token_ids(name: str, ids: Any, vocab_size: int, dim: int | None = None, what: str = "vocabulary") -> None:
    """``ids`` must be an integer tensor whose every value lies in ``[0, vocab_size)`` (one device sync)."""
    ids = check_id_tensor(name, ids, dim)
    if ids.numel() == 0:
        return
    low, high = torch.stack([ids.min(), ids.max()]).tolist()
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise ValueError(f"`{name}` holds id {bad}, outside the {what} [0, {vocab_size}).")


def embedding_rows(model: torch.nn.Module) -> int | None:
    """Number of rows of a model's input embedding (the largest id it can look up), or ``None`` if unknown."""
    model = getattr(model, "module", model)  # DDP
    getter = getattr(model, "get_input_embeddings", None)
    embeddings = getter() if callable(getter) else None
    rows = getattr(embeddings, "num_embeddings", None)
    return int(rows) if rows is not None else None


def check_train_dataset(dataset: Any, name: str = "train_dataset") -> None:
    """Refuse an empty map-style dataset by name (transformers fails deep in the sampler instead)."""
    if dataset is None:
        return
    try:
        size = len(dataset)
    except TypeError:  # an IterableDataset: its length is unknown until it is iterated
        return
    if size == 0:
        raise ValueError(f"`{name}` is empty: there is nothing to train on.")


# ---------------------------------------------------------------------------------------------- resuming
def missing_optimizer_files(checkpoint: str) -> list[str]:
    """The optimizer / scheduler files transformers needs to restore that ``checkpoint`` lacks (it accepts
    ``optimizer.pt``, ``optimizer.bin``, a sharded ``optimizer*`` folder, SageMaker's ``optimizer.pt_*`` and
    FSDP-XLA's ``rank*-of-*-optimizer.pt``; and ``scheduler.pt``)."""
    missing = []
    optimizer = (os.path.isfile(os.path.join(checkpoint, OPTIMIZER_FILE))
                 or os.path.isfile(os.path.join(checkpoint, "optimizer.bin"))
                 or bool(glob.glob(os.path.join(checkpoint, OPTIMIZER_FILE) + "_*"))
                 or bool(glob.glob(os.path.join(checkpoint, f"rank*-of-*-{OPTIMIZER_FILE}")))
                 or (os.path.isdir(checkpoint)
                     and any(name.startswith("optimizer") and os.path.isdir(os.path.join(checkpoint, name))
                             for name in os.listdir(checkpoint))))
    if not optimizer:
        missing.append(OPTIMIZER_FILE)
    if not os.path.isfile(os.path.join(checkpoint, SCHEDULER_FILE)):
        missing.append(SCHEDULER_FILE)
    return missing


def refuse_or_warn_missing_state(checkpoint: str, missing: list[str], args: Any, what: str) -> None:
    """Raise ``FileNotFoundError`` for ``missing`` files of ``checkpoint`` unless
    ``args.restart_optimizer_on_resume`` is true, in which case log a warning that ``what`` restarts."""
    if not missing:
        return
    files = " and ".join(f"`{name}`" for name in missing) + (" are" if len(missing) > 1 else " is")
    if not getattr(args, "restart_optimizer_on_resume", False):
        raise FileNotFoundError(
            f"cannot resume from {checkpoint}: {files} missing, so {what} would silently restart from scratch. "
            f"Restore the file, resume from another checkpoint, or set `restart_optimizer_on_resume=True` in the "
            f"training arguments to restart them deliberately (logged as a warning).")
    logger.warning("resuming from %s although %s missing (restart_optimizer_on_resume=True): %s restart from "
                   "scratch.", checkpoint, files, what)


class ResumeGuardMixin:
    """Mixed into a ``transformers.Trainer`` subclass (listed before ``Trainer``):

    - ``train()`` refuses an empty ``train_dataset`` by name;
    - resuming refuses a checkpoint without ``optimizer.pt`` / ``scheduler.pt`` (``FileNotFoundError`` naming the
      file and the way out) unless ``args.restart_optimizer_on_resume`` is true (then a warning);
    - resuming a run whose ``global_step`` already reached ``max_steps`` trains zero steps and logs a warning
      (transformers would train one more step before its stop check).
    """

    def train(self, *args: Any, **kwargs: Any):
        check_train_dataset(getattr(self, "train_dataset", None))
        return super().train(*args, **kwargs)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        if checkpoint is not None and not getattr(self, "is_deepspeed_enabled", False):
            refuse_or_warn_missing_state(checkpoint, missing_optimizer_files(checkpoint), self.args,
                                         "the optimizer (its moments and step count) and the learning-rate schedule")
        super()._load_optimizer_and_scheduler(checkpoint)

    def _init_training_state(self, max_steps: int, num_update_steps_per_epoch: int, num_train_epochs: int,
                             resume_from_checkpoint: str | None, trial: Any) -> tuple[int, int]:
        epochs_trained, steps_trained_in_current_epoch = super()._init_training_state(
            max_steps, num_update_steps_per_epoch, num_train_epochs, resume_from_checkpoint, trial)
        if resume_from_checkpoint is not None and self.state.global_step >= max_steps:
            logger.warning("resuming from %s at global step %d with max_steps=%d: the run is finished, training zero "
                           "steps. Raise `max_steps` (or `num_train_epochs`) to train further.",
                           resume_from_checkpoint, self.state.global_step, max_steps)
            return num_train_epochs, 0  # the epoch loop `range(epochs_trained, num_train_epochs)` is empty
        return epochs_trained, steps_trained_in_current_epoch


__all__ = ["GuardedTrainingArguments", "ResumeGuardMixin", "check_choice", "check_id_tensor", "check_int",
           "check_real", "check_token_ids", "check_train_dataset", "embedding_rows", "missing_optimizer_files",
           "refuse_or_warn_missing_state", "require_batch_keys"]
