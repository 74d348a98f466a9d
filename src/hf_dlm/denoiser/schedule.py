"""The noise schedule of masked diffusion over tokens: γ(r), the fraction of tokens masked at progress r ∈ [0, 1]
(γ(0) = 1, γ(1) = 0), one object shared by the trainers that corrupt and the samplers that unmask.

cosine: cos(rπ/2), MaskGIT's default (arXiv:2202.04200, Sec. 3.3 and Fig. 3); linear: 1 − r (also spelled
``uniform``, Di[M]O's name for it, arXiv:2503.15457); arccos: arccos(r)/(π/2); sqrt: 1 − √r.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

MASK_SCHEDULES = ("cosine", "linear", "arccos", "sqrt")
SCHEDULE_ALIASES = {"uniform": "linear"}


@dataclass(frozen=True)
class MaskSchedule:
    """γ(r) by name (one of ``MASK_SCHEDULES`` or an alias in ``SCHEDULE_ALIASES``); ``name`` holds the canonical
    name. Raises ``ValueError`` naming ``masking_schedule`` for an unknown one."""

    name: str = "cosine"

    def __post_init__(self) -> None:
        name = SCHEDULE_ALIASES.get(self.name, self.name)
        if name not in MASK_SCHEDULES:
            raise ValueError(f"`masking_schedule` must be one of {MASK_SCHEDULES}, got {self.name!r}.")
        object.__setattr__(self, "name", name)

    def __call__(self, progress: torch.Tensor) -> torch.Tensor:
        """γ(progress), elementwise."""
        if self.name == "cosine":
            return torch.cos(progress * math.pi / 2)
        if self.name == "linear":
            return 1 - progress
        if self.name == "arccos":
            return torch.arccos(progress) / (math.pi / 2)
        return 1 - torch.sqrt(progress)

    def draw(self, batch: int, device: torch.device | str = "cpu",
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Training mask ratios γ(r), r ~ U(0, 1), one per row: shape (batch, 1), clamped to [0, 1]."""
        source = generator.device if generator is not None else device
        progress = torch.rand(batch, 1, device=source, generator=generator).to(device)
        return self(progress).clamp(0.0, 1.0)


def mask_ratio_schedule(progress: torch.Tensor, schedule: str) -> torch.Tensor:
    """γ(r) of the schedule named ``schedule`` (see [`MaskSchedule`])."""
    return MaskSchedule(schedule)(progress)


__all__ = ["MASK_SCHEDULES", "MaskSchedule", "SCHEDULE_ALIASES", "mask_ratio_schedule"]
