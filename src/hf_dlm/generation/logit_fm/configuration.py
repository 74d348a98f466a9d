"""Settings of Logit-FM sampling, saved to and reloaded from ``generation_config.json``."""

from __future__ import annotations

from typing import Any

from transformers import GenerationConfig

from .._reload import TOKEN_ID_FIELDS, token_ids_from_model_config

SCHEMES = ("ode", "semi_randomized", "randomized", "hybrid")
TIME_GRIDS = ("uniform", "log")
READOUTS = ("x_t", "prediction")
ODE_COEFFICIENTS = ("h_over_one_minus_t", "delta_s")

# The authors' published sampling configuration (EgorSevriugov/KL-Flow, `configs/default_config.yaml` `fm_config`,
# `fm.type: Logit`, and `FM_utils.py` `Logit.inference_mixed` / `rhs_sample`), field by field with its source.
PRESETS: dict[str, dict[str, Any]] = {
    "kl-flow": {
        "scheme": "hybrid",              # Logit.inference_mixed: ODE steps while t < t_split, randomized steps after
        "time_grid": "log",              # thats = linspace(0, −log(1 − max_t), n + 1): uniform in s = −log(1 − t)
        "t_end": 0.3,                    # fm_config.max_t: 0.3
        "hybrid_switch_time": 0.28,      # fm_config.t_split: 0.28
        "num_steps": None,               # _inference_steps_from_mask: steps = number of generated tokens (fm_config.N
                                         # = 512 only when there is no mask)
        "ode_coefficient": "delta_s",    # lt = (1 − Δs)·lt + Δs·l1 with Δs = −log(1 − max_t)/n
        "readout": "prediction",         # x1_hat = model(max_t, x_t).softmax(); tokens = its argmax (one more call)
        "top_k": 1,                      # inference_mixed(k=1): rhs_sample takes the argmax of the prediction
        "smoothing_beta": 0.01,          # fm_config.beta: 0.01
        "dirichlet_concentration": 1.0,  # Logit.sampler_0: Dirichlet(ones(vocab_size))
    },
}


class LogitFMGenerationConfig(GenerationConfig):
    """A [`GenerationConfig`] for Logit-FM sampling: ``max_new_tokens`` positions start at Dirichlet noise and
    move to the data along the logit-space flow in ``num_steps`` model calls (NFE = ``num_steps``, plus one with
    ``readout="prediction"``). ``from_preset("kl-flow")`` gives the authors' published sampler.

    Args:
        scheme: ``ode`` (Algorithm 1: Euler steps of eq. 16 with the smoothed mean logit of eq. 17),
            ``semi_randomized`` (the same step with a one-sample estimate l_1 = log x_1ˢ, x_1 ~ p_θ(x_1|x_t)),
            ``randomized`` (Algorithm 2: sample x_1, draw fresh x_0, jump to the geodesic point at t + h) or
            ``hybrid`` (ODE steps while t < ``hybrid_switch_time``, randomized steps from there on; §2.3).
        num_steps: K, the number of steps and model calls; ``None`` = ``max_new_tokens`` (one step per generated
            token, as the authors' code does).
        step_size: h; ``None`` = t_end / K. With a uniform grid, t_i = i·h (K·h must not exceed 1).
        time_grid: ``uniform`` in t, or ``log`` — uniform in −log(1 − t), denser near the end.
        t_end: last time of the grid; ``None`` = 1 (uniform) or 0.999 (log). The authors' code: 0.3 (``max_t``).
        hybrid_switch_time: t* of the hybrid scheme, in [0, 1] (the paper found 0.28 best on Fine Web; the authors'
            code: ``t_split`` 0.28). The default 0.3 and the other defaults (uniform grid to t_end 1, 64 steps) are
            kept from before the preset existed so that saved configs and results stay unchanged;
            ``from_preset("kl-flow")`` gives the authors' values.
        readout: how the tokens are read at the end. ``x_t`` (default; the paper's Algorithms 1 and 2): argmax of
            x_{t_end}, NFE = K. ``prediction`` (the authors' code): one more model call at t_end on x_{t_end} and the
            argmax of its prediction p_θ(x_1 | x_{t_end}); NFE = K + 1. The default follows the paper's algorithms
            and spends no extra call.
        ode_coefficient: the factor c of the ODE / semi-randomized step l ← l + c·(l_1 − l).
            ``h_over_one_minus_t`` (default): c = h/(1 − t), the Euler step of eq. 16 in t (Algorithm 1).
            ``delta_s`` (the authors' code): c = Δs = s_{i+1} − s_i with s = −log(1 − t), the Euler step of the same
            ODE in s (dl/ds = l_1 − l); on the log grid Δs = −log(1 − t_end)/K at every step. The two agree to first
            order (h/(1 − t) = 1 − e^{−Δs}); Δs needs t_end < 1. The default is the paper's equation.
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
        # absent from configs saved before these options existed: their defaults are the earlier behaviour
        self.readout: str = kwargs.pop("readout", "x_t")
        self.ode_coefficient: str = kwargs.pop("ode_coefficient", "h_over_one_minus_t")
        kwargs.setdefault("max_new_tokens", 128)
        kwargs.setdefault("top_k", 1)
        kwargs.setdefault("temperature", 1.0)
        kwargs.setdefault("do_sample", True)
        super().__init__(**kwargs)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "LogitFMGenerationConfig":
        """A published configuration in one call, any field overridable: ``"kl-flow"`` — the authors' sampler
        (EgorSevriugov/KL-Flow, ``fm.type: Logit``): hybrid scheme on a grid uniform in −log(1 − t) up to t_end 0.3,
        t* 0.28, one step per generated token, the Δs ODE coefficient, top-1 x_1, β 0.01, Dirichlet(1) noise and
        the readout by one more model call (see ``PRESETS`` for each value's source)."""
        if name not in PRESETS:
            raise ValueError(f"unknown Logit-FM preset {name!r}; known: {sorted(PRESETS)}.")
        return cls(**{**PRESETS[name], **overrides})

    @property
    def resolved_num_steps(self) -> int:
        """K: ``num_steps``, or ``max_new_tokens`` when ``num_steps`` is None."""
        return int(self.num_steps) if self.num_steps is not None else int(self.max_new_tokens)

    @property
    def nfe(self) -> int:
        """Model calls of one run: K, plus one with ``readout="prediction"``."""
        return self.resolved_num_steps + (1 if self.readout == "prediction" else 0)

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
        if self.num_steps is not None and (isinstance(self.num_steps, bool) or not isinstance(self.num_steps, int)
                                           or self.num_steps < 1):
            raise ValueError(f"`num_steps` must be an integer >= 1 or None (= max_new_tokens), got {self.num_steps!r}.")
        if self.readout not in READOUTS:
            raise ValueError(f"`readout` must be one of {READOUTS}, got {self.readout!r}.")
        if self.ode_coefficient not in ODE_COEFFICIENTS:
            raise ValueError(f"`ode_coefficient` must be one of {ODE_COEFFICIENTS}, got {self.ode_coefficient!r}.")
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
            if not self.step_size > 0 or self.step_size * self.resolved_num_steps > 1.0 + 1e-9:
                raise ValueError(f"`step_size` must be > 0 with num_steps·step_size <= 1, got step_size="
                                 f"{self.step_size!r} and num_steps={self.resolved_num_steps}.")
        if self.ode_coefficient == "delta_s" and self.scheme != "randomized":
            last = (self.step_size * self.resolved_num_steps if self.step_size is not None else t_end)
            if last >= 1.0 - 1e-12:
                raise ValueError("`ode_coefficient`='delta_s' needs the grid to end before t = 1 (Δs = −log(1 − t) "
                                 f"is infinite there); set `t_end` < 1, got t_end={t_end!r}.")
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


__all__ = ["LogitFMGenerationConfig", "ODE_COEFFICIENTS", "PRESETS", "READOUTS", "SCHEMES", "TIME_GRIDS"]
