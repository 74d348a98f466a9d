"""The initial-state distribution p_init of a one-step generator distilled with Di[M]O (Zhu et al., 2025, Sec. 4.3).

A one-step generator does not start from an all-mask canvas (a deterministic input would make its output
distribution the naive product of per-token marginals again). Its input x_init is a *partly masked random
sequence*: a fraction ``r_init`` of the generated positions hold the mask token, the others hold uniformly random
tokens, and Gaussian noise of standard deviation σ may be added to the input embeddings of the generated positions.
The same settings must be used in training and at inference, so they are saved with the distilled model
(``config.dimo_initial_state``) and read back by ``generate(steps=1)`` and ``MaskedImagePipeline``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

TOKEN_DISTRIBUTIONS = ("uniform",)
EMBEDDING_NOISE_MODES = ("additive", "variance_preserving")


def mix_embedding_noise(embeddings: torch.Tensor, noise: torch.Tensor, std: float,
                        mode: str = "additive") -> torch.Tensor:
    """Di[M]O's embedding perturbation of e with standard normal ``noise`` n and scale σ = ``std``:
    ``"additive"`` e + σ·n (this project's original form, variance 1 + σ² per unit-variance coordinate);
    ``"variance_preserving"`` σ·n + √(1 − σ²)·e (the authors' transformers, yuanzhi-zhu/DiMO
    ``MaskGit_src/Network/transformer.py`` and ``Meissonic_src/transformer.py``; needs σ ≤ 1)."""
    if mode == "additive":
        return embeddings + std * noise
    if mode == "variance_preserving":
        return std * noise + (1.0 - std * std) ** 0.5 * embeddings
    raise ValueError(f"`embedding_noise_mode` must be one of {EMBEDDING_NOISE_MODES}, got {mode!r}.")


@dataclass
class DiMOInitialState:
    """Settings of p_init (Di[M]O Sec. 4.3, "initial-state strategy").

    Args:
        r_init: fraction of generated positions that start as the mask token (the paper's best: 0.6 on MaskGIT).
        r_init_max: when set, the fraction is drawn per batch uniformly from ``[r_init, r_init_max]``.
        token_distribution: distribution of the non-mask positions; ``uniform`` over the allowed tokens.
        embedding_noise_std: σ of Gaussian noise added to the input embeddings of the generated positions.
        embedding_noise_mode: how the noise is mixed in (see [`mix_embedding_noise`]): ``"additive"`` e + σ·n (the
            default, kept so that generators saved before this field load and sample unchanged) or
            ``"variance_preserving"`` σ·n + √(1 − σ²)·e (the authors' code; σ must be ≤ 1).
        clamp_min_one_mask: mask at least one position even when ``round(length · r)`` is 0 (the authors'
            ``generate_one_step`` clamps the count to ≥ 1). Default False, today's behaviour: with the usual
            r_init ≥ 0.5 the count is never 0, so the clamp only matters for r_init ≈ 0 or very short answers,
            and a saved generator without the field keeps sampling exactly as it did.
        vocab_size: tokens are drawn from ``[0, vocab_size)``, minus ``excluded_token_ids`` and the mask token.
        excluded_token_ids: ids never used as random initial tokens (special tokens).
    """

    r_init: float = 0.6
    r_init_max: float | None = None
    token_distribution: str = "uniform"
    embedding_noise_std: float = 0.0
    vocab_size: int | None = None
    excluded_token_ids: list[int] = field(default_factory=list)
    embedding_noise_mode: str = "additive"
    clamp_min_one_mask: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.r_init) <= 1.0:
            raise ValueError(f"`r_init` must lie in [0, 1], got {self.r_init}.")
        if self.r_init_max is not None and not float(self.r_init) <= float(self.r_init_max) <= 1.0:
            raise ValueError(f"`r_init_max` must lie in [r_init, 1] = [{self.r_init}, 1], got {self.r_init_max}.")
        if self.token_distribution not in TOKEN_DISTRIBUTIONS:
            raise ValueError(f"`token_distribution` must be one of {TOKEN_DISTRIBUTIONS}, "
                             f"got {self.token_distribution!r}.")
        if self.embedding_noise_std < 0:
            raise ValueError(f"`embedding_noise_std` must be >= 0, got {self.embedding_noise_std}.")
        if self.embedding_noise_mode not in EMBEDDING_NOISE_MODES:
            raise ValueError(f"`embedding_noise_mode` must be one of {EMBEDDING_NOISE_MODES}, "
                             f"got {self.embedding_noise_mode!r}.")
        if self.embedding_noise_mode == "variance_preserving" and self.embedding_noise_std > 1:
            raise ValueError("variance-preserving embedding noise σ·n + √(1 − σ²)·e needs `embedding_noise_std` ≤ 1, "
                             f"got {self.embedding_noise_std}.")
        if not isinstance(self.clamp_min_one_mask, bool):
            raise TypeError(f"`clamp_min_one_mask` must be a bool, got {type(self.clamp_min_one_mask).__name__}.")
        if self.vocab_size is not None and self.vocab_size < 1:
            raise ValueError(f"`vocab_size` must be a positive integer, got {self.vocab_size}.")
        self.excluded_token_ids = sorted({int(i) for i in self.excluded_token_ids})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DiMOInitialState:
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown DiMOInitialState fields {sorted(unknown)}; "
                             f"expected {sorted(cls.__dataclass_fields__)}.")
        return cls(**values)

    @classmethod
    def from_model(cls, model: nn.Module) -> DiMOInitialState | None:
        """The settings saved with a distilled generator (``config.dimo_initial_state``), or None."""
        values = getattr(getattr(model, "config", None), "dimo_initial_state", None)
        return cls.from_dict(dict(values)) if values else None

    def attach_to(self, model: nn.Module, max_new_tokens: int | None = None, temperature: float = 1.0) -> None:
        """Record these settings in ``model``'s config (``config.dimo_initial_state``, read back by
        [`from_model`]) and, for a model with a masked-diffusion generation config, make ``generate()`` one step:
        ``max_new_tokens`` tokens sampled at ``temperature`` in a single block."""
        if hasattr(model, "register_to_config"):  # a diffusers ModelMixin: the config is frozen
            model.register_to_config(dimo_initial_state=self.to_dict())
            return
        model.config.dimo_initial_state = self.to_dict()
        generation_config = getattr(model, "generation_config", None)
        if generation_config is not None and hasattr(generation_config, "steps"):
            generation_config.steps = 1
            generation_config.block_length = None
            generation_config.max_new_tokens = max_new_tokens
            generation_config.temperature = temperature
            generation_config.do_sample = True

    def allowed_tokens(self, mask_token_id: int, device: torch.device | str = "cpu") -> torch.LongTensor:
        if self.vocab_size is None:
            raise ValueError("`vocab_size` is not set: the initial-state token range is unknown.")
        excluded = set(self.excluded_token_ids) | {int(mask_token_id)}
        allowed = [i for i in range(self.vocab_size) if i not in excluded]
        if not allowed:
            raise ValueError(f"no token is left to draw initial states from (vocab_size {self.vocab_size}, "
                             f"excluded {sorted(excluded)}).")
        return torch.tensor(allowed, dtype=torch.long, device=device)

    def draw_ratio(self, generator: torch.Generator | None = None) -> float:
        """The mask fraction of one batch: ``r_init``, or U[r_init, r_init_max]."""
        if self.r_init_max is None:
            return float(self.r_init)
        u = float(torch.rand((), generator=generator))
        return float(self.r_init) + u * (float(self.r_init_max) - float(self.r_init))

    def sample(self, batch: int, length: int, mask_token_id: int, device: torch.device | str = "cpu",
               generator: torch.Generator | None = None, ratio: float | None = None) -> torch.LongTensor:
        """x_init of shape (batch, length): exactly ``round(length · r)`` positions per row (at least one with
        ``clamp_min_one_mask``, at most ``length``; chosen uniformly) hold ``mask_token_id`` and the rest uniformly
        random allowed tokens. Random numbers come from ``generator``
        (on CPU) so that a seeded call gives the same canvas on every device."""
        ratio = self.draw_ratio(generator) if ratio is None else ratio
        allowed = self.allowed_tokens(mask_token_id)
        tokens = allowed[torch.randint(len(allowed), (batch, length), generator=generator)]
        num_masked = int(round(length * ratio))
        if self.clamp_min_one_mask:
            num_masked = min(max(num_masked, 1), length)
        order = torch.rand(batch, length, generator=generator).argsort(dim=1)
        masked = order < num_masked
        return tokens.masked_fill(masked, mask_token_id).to(device)


def input_embedding_module(model: nn.Module) -> nn.Module:
    """The token-embedding layer of a (possibly DDP- or PEFT-wrapped) denoiser."""
    inner = model
    while hasattr(inner, "module") and not hasattr(inner, "get_input_embeddings"):
        inner = inner.module
    if not hasattr(inner, "get_input_embeddings"):
        raise ValueError(f"{type(model).__name__} has no `get_input_embeddings()`; embedding noise needs it.")
    return inner.get_input_embeddings()


@contextlib.contextmanager
def embedding_noise(model: nn.Module, std: float, positions: torch.BoolTensor,
                    generator: torch.Generator | None = None, mode: str = "additive") -> Iterator[None]:
    """Inside the block, every forward of ``model``'s input-embedding layer perturbs the embeddings at ``positions``
    (batch, length) with Gaussian noise of scale ``std``, mixed as ``mode`` says ([`mix_embedding_noise`]) —
    Di[M]O's embedding perturbation of x_init. Other positions are left exactly as they are. No-op for
    ``std == 0``."""
    if mode not in EMBEDDING_NOISE_MODES:
        raise ValueError(f"`mode` must be one of {EMBEDDING_NOISE_MODES}, got {mode!r}.")
    if std <= 0:
        yield
        return

    def add_noise(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        if output.shape[:2] != positions.shape:
            raise ValueError(f"embedding noise positions have shape {tuple(positions.shape)} but the embeddings "
                             f"have shape {tuple(output.shape[:2])}.")
        noise = torch.randn(output.shape, generator=generator, dtype=torch.float32).to(output.device, output.dtype)
        where = positions.to(output.device).unsqueeze(-1)
        return torch.where(where, mix_embedding_noise(output, noise, std, mode), output)

    handle = input_embedding_module(model).register_forward_hook(add_noise)
    try:
        yield
    finally:
        handle.remove()


__all__ = ["DiMOInitialState", "EMBEDDING_NOISE_MODES", "TOKEN_DISTRIBUTIONS", "embedding_noise",
           "input_embedding_module", "mix_embedding_noise"]
