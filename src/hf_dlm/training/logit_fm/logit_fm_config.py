"""``LogitFMTrainingArguments``: the knobs of the Logit-FM denoising objective (eq. 15 of "Integrating geodesic
interpolation and flow matching for non-autoregressive text generation in logit space") on top of
``TrainingArguments``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..._training_guards import GuardedTrainingArguments, check_choice, check_real
from ...generation.logit_fm.path import check_smoothing
from .objective import LOSS_POSITIONS, TIME_DISTRIBUTIONS

# The authors' published training objective (EgorSevriugov/KL-Flow, `configs/default_config.yaml`, `fm.type: Logit`;
# `FM_utils.py` `Logit`; `train_fm.py`), field by field with its source. Their optimizer (Muon + Adam) and schedule are
# not TrainingArguments fields and are not part of the preset.
PRESETS: dict[str, dict[str, Any]] = {
    "kl-flow": {
        "time_distribution": "uniform",  # Logit.interpolate: t = torch.rand(batch) * max_t
        "t_max": 0.3,                    # fm_config.max_t: 0.3
        "smoothing_beta": 0.01,          # fm_config.beta: 0.01
        "dirichlet_concentration": 1.0,  # Logit.sampler_0: Dirichlet(ones(vocab_size))
        "loss_positions": "all",         # train_fm.py: labels = input_ids, F.cross_entropy over every position
    },
}


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
        "help": "'uniform': t ~ U[0, t_max] (the paper with t_max = 1; the authors' public code draws t uniformly "
                "on [0, 0.3], i.e. t_max = 0.3); 'log_uniform': uniform in −log(1 − t) on [0, t_max] (an option of "
                "this library, not the authors')."})
    t_max: float = field(default=1.0, metadata={"help": "Largest training time, in (0, 1] (< 1 for log_uniform). The "
                                                        "paper: 1; the authors' code: 0.3 (see `from_preset`)."})
    loss_positions: str = field(default="answer", metadata={
        "help": "'answer' (default): the loss scores the answer only — not the prompt, padding or −100 labels, which "
                "stay fixed one-hot points and are conditioning, as in every other trainer of this library; 'all' "
                "(the authors' code): every position is scored, prompt and padding included (the prompt stays a "
                "one-hot point). For the authors' padding too, give batches without `attention_mask`: padding is "
                "then noised, attended and scored like any token."})
    remove_unused_columns: bool = field(default=False, metadata={
        "help": "Kept False: batches may carry `prompt_lengths`, which the model's forward does not take."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.smoothing_beta is not None:
            check_smoothing(self.smoothing_beta)
        self.dirichlet_concentration = check_real("dirichlet_concentration", self.dirichlet_concentration, low=0.0,
                                                  low_open=True, allow_none=True)
        check_choice("time_distribution", self.time_distribution, TIME_DISTRIBUTIONS)
        check_choice("loss_positions", self.loss_positions, LOSS_POSITIONS)
        self.t_max = check_real("t_max", self.t_max, low=0.0, high=1.0, low_open=True)
        if not 0.0 < self.t_max <= 1.0 or (self.time_distribution == "log_uniform" and self.t_max >= 1.0):
            raise ValueError(f"`t_max` must lie in (0, 1] ((0, 1) for log_uniform), got {self.t_max!r}.")

    @classmethod
    def from_preset(cls, name: str, **kwargs: Any) -> "LogitFMTrainingArguments":
        """A published objective in one call, any field overridable (``output_dir`` and the optimizer knobs go in
        ``kwargs``): ``"kl-flow"`` — the authors' code: t uniform on [0, 0.3], β 0.01, Dirichlet(1) noise, the loss
        over every position (see ``PRESETS`` for each value's source)."""
        if name not in PRESETS:
            raise ValueError(f"unknown Logit-FM training preset {name!r}; known: {sorted(PRESETS)}.")
        return cls(**{**PRESETS[name], **kwargs})


__all__ = ["LogitFMTrainingArguments", "PRESETS"]
