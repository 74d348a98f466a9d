"""Exponential moving average of the generator's trainable parameters (the authors keep an EMA copy of θ).

Only the trainable tensors are shadowed, so in ``memory_mode="lora"`` the EMA costs two small adapters, not a model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class ParameterEMA:
    """θ_ema ← decay·θ_ema + (1 − decay)·θ after every optimizer step, for the named parameters."""

    def __init__(self, parameters: dict[str, nn.Parameter], decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"`decay` must lie in (0, 1), got {decay}.")
        self.decay = decay
        self.parameters = parameters
        self.shadow = {name: p.detach().clone() for name, p in parameters.items()}

    @torch.no_grad()
    def update(self) -> None:
        names = list(self.parameters)
        torch._foreach_lerp_([self.shadow[n] for n in names], [self.parameters[n].detach() for n in names],
                             1.0 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: tensor.contiguous() for name, tensor in self.shadow.items()}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) - set(state)
        if missing:
            raise KeyError(f"EMA state lacks {sorted(missing)[:5]} ({len(missing)} tensors).")
        for name, tensor in self.shadow.items():
            tensor.copy_(state[name])

    @contextlib.contextmanager
    @torch.no_grad()
    def swapped(self) -> Iterator[None]:
        """Inside the block the parameters hold the EMA values; the live values are restored afterwards."""
        live = {name: p.detach().clone() for name, p in self.parameters.items()}
        for name, p in self.parameters.items():
            p.copy_(self.shadow[name])
        try:
            yield
        finally:
            for name, p in self.parameters.items():
                p.copy_(live[name])


__all__ = ["ParameterEMA"]
