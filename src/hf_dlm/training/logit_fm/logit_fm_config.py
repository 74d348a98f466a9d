"""``LogitFMTrainingArguments``: the knobs of the Logit-FM denoising objective (eq. 15 of "Integrating geodesic
interpolation and flow matching for non-autoregressive text generation in logit space") on top of
``TrainingArguments``."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..._training_guards import GuardedTrainingArguments, check_choice, check_real
from ...generation.logit_fm.path import check_smoothing
from .objective import TIME_DISTRIBUTIONS


@dataclass
class LogitFMTrainingArguments(GuardedTrainingArguments):
    """[`TrainingArguments`] plus the knobs of the Logit-FM objective (eq. 15), checked at construction (type,
    range, finiteness; see [`GuardedTrainingArguments`] for the optimizer knobs and ``restart_optimizer_on_resume``)."""

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
        self.dirichlet_concentration = check_real("dirichlet_concentration", self.dirichlet_concentration, low=0.0,
                                                  low_open=True, allow_none=True)
        check_choice("time_distribution", self.time_distribution, TIME_DISTRIBUTIONS)
        self.t_max = check_real("t_max", self.t_max, low=0.0, high=1.0, low_open=True)
        if not 0.0 < self.t_max <= 1.0 or (self.time_distribution == "log_uniform" and self.t_max >= 1.0):
            raise ValueError(f"`t_max` must lie in (0, 1] ((0, 1) for log_uniform), got {self.t_max!r}.")


__all__ = ["LogitFMTrainingArguments"]
