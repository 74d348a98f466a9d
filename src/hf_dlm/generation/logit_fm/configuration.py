"""Settings of Logit-FM sampling, saved to and reloaded from ``generation_config.json``."""

from __future__ import annotations

from typing import Any

from transformers import GenerationConfig

from .._reload import TOKEN_ID_FIELDS, token_ids_from_model_config

SCHEMES = ("ode", "semi_randomized", "randomized", "hybrid")
TIME_GRIDS = ("uniform", "log")


class LogitFMGenerationConfig(GenerationConfig):
    """A [`GenerationConfig`] for Logit-FM sampling: ``max_new_tokens`` positions start at Dirichlet noise and
    move to the data along the logit-space flow in ``num_steps`` model calls (NFE = ``num_steps``).

    Args:
        scheme: ``ode`` (Algorithm 1: Euler steps of eq. 16 with the smoothed mean logit of eq. 17),
            ``semi_randomized`` (the same step with a one-sample estimate l_1 = log x_1ˢ, x_1 ~ p_θ(x_1|x_t)),
            ``randomized`` (Algorithm 2: sample x_1, draw fresh x_0, jump to the geodesic point at t + h) or
            ``hybrid`` (ODE steps while t < ``hybrid_switch_time``, randomized steps from there on; §2.3).
        num_steps: K, the number of steps and model calls.
        step_size: h; ``None`` = t_end / K. With a uniform grid, t_i = i·h (K·h must not exceed 1).
        time_grid: ``uniform`` in t, or ``log`` — uniform in −log(1 − t), denser near the end.
        t_end: last time of the grid; ``None`` = 1 (uniform) or 0.999 (log). Tokens are argmax of x_{t_end}.
        hybrid_switch_time: t* of the hybrid scheme, in [0, 1] (the paper found 0.28 best on Fine Web).
        top_k: x_1 is sampled from the k most likely tokens (the paper: k = 1); ``None`` = all.
        temperature: sampling temperature of x_1 (0 = greedy); ``do_sample`` is implied.
        smoothing_beta: β of eq. 3; ``None`` = the model config's ``smoothing_beta``.
        dirichlet_concentration: α of the noise; ``None`` = the model config's.
        suppress_tokens: token ids that x_1 never takes (and that get no weight in the ODE mean).
        output_history: with ``return_dict_in_generate``, also return argmax x_t after every step.
        show_progress: a progress bar over steps.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.scheme: str = kwargs.pop("scheme", "randomized")
        self.num_steps: int = kwargs.pop("num_steps", 64)
        self.step_size: float | None = kwargs.pop("step_size", None)
        self.time_grid: str = kwargs.pop("time_grid", "uniform")
        self.t_end: float | None = kwargs.pop("t_end", None)
        self.hybrid_switch_time: float = kwargs.pop("hybrid_switch_time", 0.3)
        self.smoothing_beta: float | None = kwargs.pop("smoothing_beta", None)
        self.dirichlet_concentration: float | None = kwargs.pop("dirichlet_concentration", None)
        self.output_history: bool = kwargs.pop("output_history", False)
        self.show_progress: bool = kwargs.pop("show_progress", False)
        kwargs.setdefault("max_new_tokens", 128)
        kwargs.setdefault("top_k", 1)
        kwargs.setdefault("temperature", 1.0)
        kwargs.setdefault("do_sample", True)
        super().__init__(**kwargs)

    @property
    def resolved_t_end(self) -> float:
        if self.t_end is not None:
            return float(self.t_end)
        return 1.0 if self.time_grid == "uniform" else 0.999

    def validate(self, strict: bool = False, user_set_attributes: set[str] | None = None) -> None:
        super().validate(strict=strict, user_set_attributes=user_set_attributes)
        if not hasattr(self, "scheme"):  # called by the parent __init__ before our fields exist
            return
        if self.scheme not in SCHEMES:
            raise ValueError(f"`scheme` must be one of {SCHEMES}, got {self.scheme!r}.")
        if isinstance(self.num_steps, bool) or not isinstance(self.num_steps, int) or self.num_steps < 1:
            raise ValueError(f"`num_steps` must be an integer >= 1, got {self.num_steps!r}.")
        if self.time_grid not in TIME_GRIDS:
            raise ValueError(f"`time_grid` must be one of {TIME_GRIDS}, got {self.time_grid!r}.")
        t_end = self.resolved_t_end
        if not 0.0 < t_end <= 1.0:
            raise ValueError(f"`t_end` must lie in (0, 1], got {self.t_end!r}.")
        if self.time_grid == "log" and t_end >= 1.0:
            raise ValueError(f"`t_end` must be < 1 with time_grid='log', got {self.t_end!r}.")
        if self.step_size is not None:
            if self.time_grid != "uniform":
                raise ValueError("`step_size` applies to time_grid='uniform' only.")
            if not self.step_size > 0 or self.step_size * self.num_steps > 1.0 + 1e-9:
                raise ValueError(f"`step_size` must be > 0 with num_steps·step_size <= 1, got step_size="
                                 f"{self.step_size!r} and num_steps={self.num_steps}.")
        if isinstance(self.hybrid_switch_time, bool) or not 0.0 <= float(self.hybrid_switch_time) <= 1.0:
            raise ValueError(f"`hybrid_switch_time` (t*) must lie in [0, 1], got {self.hybrid_switch_time!r}.")
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, int)
                                       or self.top_k < 1):
            raise ValueError(f"`top_k` must be an integer >= 1 or None, got {self.top_k!r}.")
        if self.temperature is not None and self.temperature < 0:
            raise ValueError(f"`temperature` must be >= 0, got {self.temperature!r}.")
        if self.smoothing_beta is not None and (isinstance(self.smoothing_beta, bool)
                                                or not 0.0 < float(self.smoothing_beta) < 1.0):
            raise ValueError(f"`smoothing_beta` (β) must lie in (0, 1), got {self.smoothing_beta!r}.")
        if self.dirichlet_concentration is not None and not self.dirichlet_concentration > 0:
            raise ValueError(f"`dirichlet_concentration` must be > 0, got {self.dirichlet_concentration!r}.")
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"`max_new_tokens` must be a positive integer, got {self.max_new_tokens!r}.")

    @property
    def sampling_temperature(self) -> float:
        return float(self.temperature or 0.0) if self.do_sample else 0.0

    @classmethod
    def from_model_config(cls, model_config: Any) -> "LogitFMGenerationConfig":
        """The default settings with the model config's special-token ids (what ``post_init`` of a freshly built
        model uses; saved settings are reloaded from ``generation_config.json`` instead)."""
        return cls(**token_ids_from_model_config(model_config, TOKEN_ID_FIELDS))


__all__ = ["LogitFMGenerationConfig", "SCHEMES", "TIME_GRIDS"]
