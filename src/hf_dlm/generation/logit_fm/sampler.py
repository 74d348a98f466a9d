"""The Logit-FM sampling loop (Algorithms 1 and 2 of the paper, and the hybrid scheme of §2.3) over any model that
returns the logits of p(x_1 | x_t, t), and the ``custom_generate`` callable that runs it from transformers'
``generate()``."""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig
from transformers.utils import ModelOutput

from .._reload import merge_overrides
from ..sampling import add_gumbel_noise, filter_logits
from .configuration import LogitFMGenerationConfig
from .path import (mean_smoothed_logit, ode_coefficient, ode_step, randomized_step, sample_dirichlet_log,
                   smoothed_one_hot_log, time_grid)


@dataclass
class LogitFMGenerationOutput(ModelOutput):
    """Output of Logit-FM ``generate()`` with ``return_dict_in_generate=True``.

    Args:
        sequences: prompt followed by the generated tokens (argmax of the final x_t, or of the final prediction with
            ``readout="prediction"``), shape (batch, length).
        nfe: model calls (``num_steps``, plus one with ``readout="prediction"``).
        schemes: the scheme each step used (``ode`` or ``randomized`` steps of a hybrid run, for instance).
        times: the time grid t_0 … t_K.
        history: with ``output_history``, argmax x_t of the generated positions after every step.
    """

    sequences: torch.LongTensor | None = None
    nfe: int | None = None
    schemes: tuple[str, ...] | None = None
    times: tuple[float, ...] | None = None
    history: tuple[torch.LongTensor, ...] | None = None


def step_schemes(scheme: str, times: list[float], switch_time: float) -> list[str]:
    """The update rule of every step: the hybrid scheme takes ODE steps while t_i < t* and randomized steps from
    the first t_i ≥ t* on."""
    if scheme != "hybrid":
        return [scheme] * (len(times) - 1)
    return ["ode" if t < switch_time else "randomized" for t in times[:-1]]


def predict_x1_logits(model: torch.nn.Module, simplex: torch.Tensor, t: float,
                      attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Logits of p(x_1 | x_t, t) from ``model``: called as ``model(simplex=x_t, timesteps=t)`` when its forward
    takes ``simplex`` (our [`LogitFMModel`]), otherwise as ``model(inputs_embeds=x_t·E, timesteps=t)`` with E its
    input embedding matrix — the contract another model must follow to be sampled by these schemes."""
    timesteps = torch.full((simplex.shape[0],), float(t), device=simplex.device)
    if "simplex" in inspect.signature(model.forward).parameters:
        out = model(simplex=simplex, timesteps=timesteps, attention_mask=attention_mask)
    else:
        weight = model.get_input_embeddings().weight
        out = model(inputs_embeds=simplex.to(weight.dtype) @ weight, timesteps=timesteps,
                    attention_mask=attention_mask)
    logits = out.logits if hasattr(out, "logits") else out[0]
    return logits.float()


def _sample_x1(logits: torch.Tensor, config: LogitFMGenerationConfig,
               generator: torch.Generator | None) -> torch.LongTensor:
    logits = filter_logits(logits, config.top_k, None)
    return torch.argmax(add_gumbel_noise(logits, config.sampling_temperature, generator), dim=-1)


@torch.no_grad()
def sample_logit_fm(model: torch.nn.Module, input_ids: torch.LongTensor, config: LogitFMGenerationConfig,
                    vocab_size: int, attention_mask: torch.Tensor | None = None,
                    generator: torch.Generator | None = None) -> LogitFMGenerationOutput:
    """Run the configured scheme for ``config.max_new_tokens`` positions after ``input_ids``.

    Prompt positions are fixed one-hot points of the simplex at every step; only the answer moves. The state is
    kept as l_t = log x_t (normalised), starting at x_0 ~ Dirichlet(α). Per step i (t = t_i, h = t_{i+1} − t_i):
    ``ode`` l ← l + h/(1−t)(l̄_1 − l) (Algorithm 1, eq. 17); ``semi_randomized`` the same with l_1 = log x_1ˢ of
    one sample; ``randomized`` l ← (1−t−h) log x_0' + (t+h) log x_1ˢ with fresh x_0' (Algorithm 2). With
    ``ode_coefficient="delta_s"`` the ODE factor h/(1−t) becomes Δs = log(1−t) − log(1−t−h) (the authors' code). The
    tokens are argmax x_{t_end} (``readout="x_t"``) or the argmax of one more prediction p(x_1 | x_{t_end}, t_end)
    (``readout="prediction"``, the authors' code; one more model call).
    """
    beta, alpha = _path_settings(model, config)
    batch, prompt_length = input_ids.shape
    length, device = config.max_new_tokens, input_ids.device
    num_steps = config.resolved_num_steps
    times = time_grid(num_steps, config.time_grid, config.resolved_t_end, config.step_size)
    schemes = step_schemes(config.scheme, times, float(config.hybrid_switch_time))
    prompt = torch.nn.functional.one_hot(input_ids, vocab_size).float()
    log_x = sample_dirichlet_log((batch, length), vocab_size, alpha, generator, device)
    suppress = list(config.suppress_tokens or [])
    history = []
    for i in tqdm(range(num_steps), disable=not config.show_progress, desc="logit-fm"):
        t, t_next = times[i], times[i + 1]
        simplex = torch.cat([prompt, log_x.exp()], dim=1)
        logits = predict_x1_logits(model, simplex, t, attention_mask)[:, prompt_length:, :vocab_size]
        if suppress:
            logits[..., suppress] = float("-inf")
        if schemes[i] == "ode":
            target = mean_smoothed_logit(logits.softmax(-1), beta)
            log_x = ode_step(log_x, target, t, t_next - t, ode_coefficient(t, t_next, config.ode_coefficient))
        else:
            x1 = _sample_x1(logits, config, generator)
            log_x1 = smoothed_one_hot_log(x1, vocab_size, beta)
            if schemes[i] == "semi_randomized":
                log_x = ode_step(log_x, log_x1, t, t_next - t,
                                 ode_coefficient(t, t_next, config.ode_coefficient))
            else:
                log_x = randomized_step(log_x1, t_next, alpha, generator)
        if config.output_history:
            history.append(log_x.argmax(-1))
    if config.readout == "prediction":  # the authors' code: one more call at t_end, tokens = argmax of its prediction
        simplex = torch.cat([prompt, log_x.exp()], dim=1)
        final = predict_x1_logits(model, simplex, times[-1], attention_mask)[:, prompt_length:, :vocab_size]
        if suppress:
            final[..., suppress] = float("-inf")
        tokens = final.argmax(-1)
    else:
        if suppress:  # with t_end < 1 the noise still weighs on x_t: never return a suppressed token
            log_x[..., suppress] = float("-inf")
        tokens = log_x.argmax(-1)
    sequences = torch.cat([input_ids, tokens], dim=1)
    return LogitFMGenerationOutput(sequences=sequences, nfe=config.nfe, schemes=tuple(schemes),
                                   times=tuple(times), history=tuple(history) if config.output_history else None)


def _path_settings(model: torch.nn.Module, config: LogitFMGenerationConfig) -> tuple[float, float]:
    """β and α: the generation config's, else the model config's, else the paper's 0.01 and 1."""
    model_config = getattr(model, "config", None)
    beta = config.smoothing_beta if config.smoothing_beta is not None else getattr(model_config, "smoothing_beta", 0.01)
    alpha = (config.dirichlet_concentration if config.dirichlet_concentration is not None
             else getattr(model_config, "dirichlet_concentration", 1.0))
    return float(beta), float(alpha)


def resolve_config(model: torch.nn.Module, base: GenerationConfig | None, overrides: dict[str, Any]
                   ) -> LogitFMGenerationConfig:
    """A validated [`LogitFMGenerationConfig`]: ``base`` (converted if it is a plain ``GenerationConfig``) updated with
    ``overrides``; β and α default to the model config's ``smoothing_beta`` / ``dirichlet_concentration``."""
    config = merge_overrides(LogitFMGenerationConfig, base, overrides, "Logit-FM sampling")
    config.smoothing_beta, config.dirichlet_concentration = _path_settings(model, config)
    config.validate()
    return config


def logit_fm_generate(model: torch.nn.Module, input_ids: torch.LongTensor, logits_processor=None,
                      stopping_criteria=None, generation_config: GenerationConfig | None = None,
                      logit_fm_config: LogitFMGenerationConfig | None = None,
                      generator: torch.Generator | None = None, **model_kwargs: Any
                      ) -> torch.LongTensor | LogitFMGenerationOutput:
    """Logit-FM sampling as a ``custom_generate`` callable of transformers' ``generate()``::

        model.generate(input_ids, custom_generate=logit_fm_generate, max_new_tokens=64,
                       logit_fm_config=LogitFMGenerationConfig(scheme="hybrid", num_steps=64))

    ``model`` must return the logits of p(x_1 | x_t, t) (see [`predict_x1_logits`] for the call contract).
    ``max_new_tokens`` and ``return_dict_in_generate`` come from transformers' generation config; the scheme
    settings from ``logit_fm_config``. Autoregressive logits processors and stopping criteria do not apply.
    """
    config = copy.deepcopy(logit_fm_config) if logit_fm_config is not None else LogitFMGenerationConfig()
    if generation_config is not None:
        if generation_config.max_new_tokens is not None:
            config.max_new_tokens = generation_config.max_new_tokens
        config.return_dict_in_generate = generation_config.return_dict_in_generate
    config = resolve_config(model, config, {})
    vocab_size = model.get_input_embeddings().weight.shape[0]
    output = sample_logit_fm(model, input_ids, config, vocab_size, model_kwargs.get("attention_mask"), generator)
    return output if config.return_dict_in_generate else output.sequences


__all__ = ["LogitFMGenerationOutput", "logit_fm_generate", "predict_x1_logits", "resolve_config", "sample_logit_fm",
           "step_schemes"]
