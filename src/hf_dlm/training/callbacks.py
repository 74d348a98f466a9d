"""Trainer callbacks shared by the recipes."""

from __future__ import annotations

import time

from transformers import TrainerCallback, TrainerControl, TrainerState
from transformers.utils import logging

logger = logging.get_logger(__name__)


class TimeBudget(TrainerCallback):
    """Stops training once ``seconds`` of wall time have passed since ``train()`` began (``None``: no limit)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds, self.start = seconds, None

    def on_train_begin(self, args, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        self.start = time.monotonic()

    def on_step_end(self, args, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        if self.seconds is not None and time.monotonic() - self.start > self.seconds:
            logger.warning("time budget of %.0f s reached at step %d: stopping", self.seconds, state.global_step)
            control.should_training_stop = True


__all__ = ["TimeBudget"]
