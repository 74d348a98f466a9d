"""diffusers schedulers for masked image generation."""

from .scheduling_maskgit import (MASK_SCHEDULES, MaskGITScheduler, MaskGITSchedulerOutput, MaskSchedule,
                                 mask_ratio_schedule)

__all__ = ["MASK_SCHEDULES", "MaskGITScheduler", "MaskGITSchedulerOutput", "MaskSchedule", "mask_ratio_schedule"]
