"""Turning lm-evaluation-harness requests into token ids and generate() settings, without importing the harness.

The harness speaks strings: ``(context, continuation)`` pairs for likelihoods, whole documents for perplexity,
``(context, gen_kwargs)`` for generation. This module holds the model-independent halves of those conversions so
that they can be read (and tested) on their own.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of ``context`` and of ``continuation`` as they are tokenized together.

    As the harness's own backends do, trailing spaces of the context move to the continuation, the pair is
    tokenized as one string, and the continuation is what follows the context's own tokens — so word-boundary
    tokens are the ones the model saw in training. Special tokens are added as the tokenizer adds them by default
    (a BOS before the context when the tokenizer adds one), as LLaDA's evaluation does."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        continuation = context[-spaces:] + continuation
        context = context[:-spaces]
    whole = tokenizer(context + continuation)["input_ids"]
    context_ids = tokenizer(context)["input_ids"]
    return list(whole[:len(context_ids)]), list(whole[len(context_ids):])


def fit_context(context: list[int], continuation: list[int], max_length: int) -> tuple[list[int], int]:
    """Left-truncate ``context`` so that context + continuation fit ``max_length`` tokens; returns the kept context
    and how many tokens were dropped. A continuation that alone exceeds ``max_length`` cannot be scored whole and is
    refused."""
    if len(continuation) > max_length:
        raise ValueError(f"a continuation of {len(continuation)} tokens exceeds `max_length` ({max_length}): it "
                         "cannot be scored whole; raise `max_length` (the model's positions allow it with RoPE) or "
                         "use a task with shorter answers.")
    room = max_length - len(continuation)
    dropped = max(0, len(context) - room)
    return context[dropped:], dropped


def rolling_windows(token_ids: list[int], prefix_token_id: int | None, max_length: int
                    ) -> list[tuple[list[int], list[int]]]:
    """Disjoint (context, target) windows covering ``token_ids`` once each, each fitting ``max_length`` tokens.

    The harness's own windows (``get_rolling_token_windows`` with one token of context, made disjoint): the first
    window scores the first tokens after ``prefix_token_id`` (BOS, else EOS, else nothing), each later window the
    next tokens after the one token before them. For a masked diffusion model the log-likelihood of a document is the
    sum of the windows' ELBOs of log p(target | context)."""
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window  # optional dependency (eval extra)

    if max_length < 2:
        raise ValueError(f"`max_length` must be >= 2 for rolling windows, got {max_length}.")
    prefix = prefix_token_id if prefix_token_id is not None else -1
    windows = []
    for pair in get_rolling_token_windows(token_list=list(token_ids), prefix_token=prefix,
                                          max_seq_len=max_length - 1, context_len=1):
        context, target = make_disjoint_window(pair)
        windows.append(([t for t in context if t != -1] if prefix_token_id is None else list(context), list(target)))
    return windows


# the harness's generate_until keys that mean something to every backend; the rest go to generate() as they are
_HARNESS_KEYS = ("until", "max_gen_toks", "do_sample", "temperature")


@dataclass
class GenerationRequest:
    """One generate_until request in generate() terms."""

    until: list[str]
    max_new_tokens: int
    generate_kwargs: dict[str, Any] = field(default_factory=dict)


def parse_gen_kwargs(gen_kwargs: dict[str, Any] | None, default_max_gen_toks: int, eos_text: str | None
                     ) -> GenerationRequest:
    """The harness's ``gen_kwargs`` as generate() settings.

    ``until`` (a string or a list of strings) becomes stop strings applied to the decoded text, with the tokenizer's
    EOS text added as the harness's backends add it; ``max_gen_toks`` becomes ``max_new_tokens``; ``do_sample=False``
    (or ``temperature=0``) is greedy decoding and ``temperature > 0`` with ``do_sample`` samples; every other key
    (``top_p``, ``top_k``, ...) goes to generate(), which honours it or refuses it by name."""
    kwargs = dict(gen_kwargs or {})
    until = kwargs.pop("until", None)
    if until is None:
        until = []
    elif isinstance(until, str):
        until = [until]
    elif not (isinstance(until, (list, tuple)) and all(isinstance(u, str) for u in until)):
        raise ValueError(f"`until` must be a string or a list of strings, got {until!r}.")
    until = [u for u in until if u]
    if eos_text and eos_text not in until:
        until.append(eos_text)
    max_gen_toks = kwargs.pop("max_gen_toks", default_max_gen_toks)
    if isinstance(max_gen_toks, bool) or not isinstance(max_gen_toks, int) or max_gen_toks < 1:
        raise ValueError(f"`max_gen_toks` must be an integer >= 1, got {max_gen_toks!r}.")
    do_sample = kwargs.pop("do_sample", None)
    temperature = kwargs.pop("temperature", None)
    if temperature is not None and (isinstance(temperature, bool) or not isinstance(temperature, (int, float))
                                    or not math.isfinite(temperature) or temperature < 0):
        raise ValueError(f"`temperature` must be a finite number >= 0, got {temperature!r}.")
    if do_sample is not None and not isinstance(do_sample, bool):
        raise ValueError(f"`do_sample` must be true or false, got {do_sample!r}.")
    if do_sample is False or (do_sample is None and (temperature is None or temperature == 0)):
        kwargs.update(do_sample=False, temperature=0.0)
    else:
        if temperature is not None and temperature == 0:
            raise ValueError("`do_sample=True` with `temperature=0` asks for sampling without randomness; give "
                             "`temperature > 0`, or `do_sample=False` for greedy decoding.")
        kwargs.update(do_sample=True, temperature=float(1.0 if temperature is None else temperature))
    return GenerationRequest(until=until, max_new_tokens=max_gen_toks, generate_kwargs=kwargs)


def cut_at_stop_strings(text: str, until: Sequence[str]) -> str:
    """``text`` up to the first occurrence of any stop string (the stop string itself left out)."""
    end = len(text)
    for stop in until:
        index = text.find(stop)
        if index != -1:
            end = min(end, index)
    return text[:end]


__all__ = ["GenerationRequest", "cut_at_stop_strings", "encode_pair", "fit_context", "parse_gen_kwargs",
           "rolling_windows"]
