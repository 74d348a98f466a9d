"""The denoiser contract: how every algorithm calls every masked model (``denoise``, ``guided_denoise``, the mask
id, unwrapping), and its conditioning half (``DenoiserConditions``, ``build_conditions``,
``conditional_denoise``). This package is the bottom layer: it imports no other part of ``hf_dlm``."""

from .conditions import DenoiserConditions, build_conditions, encode_captions, mask_ratio_input
from .contract import denoise, guided_denoise, shift_logits_to_tokens
from .guidance import conditional_denoise, unconditional_inputs
from .kind import (DenoiserKind, denoiser_kind, fixed_length, get_mask_token_id, grid_shape, is_image_denoiser,
                   logit_width, null_class_label, predicts_next_token, special_token_ids, token_vocab_size, unwrap,
                   uses_mask_ratio)
from .schedule import MASK_SCHEDULES, SCHEDULE_ALIASES, MaskSchedule, mask_ratio_schedule

__all__ = [
    "DenoiserConditions", "DenoiserKind", "MASK_SCHEDULES", "MaskSchedule", "SCHEDULE_ALIASES", "build_conditions",
    "conditional_denoise", "denoise", "denoiser_kind", "encode_captions", "fixed_length", "get_mask_token_id",
    "grid_shape", "guided_denoise", "is_image_denoiser", "logit_width", "mask_ratio_input", "mask_ratio_schedule",
    "null_class_label", "predicts_next_token", "shift_logits_to_tokens", "special_token_ids", "token_vocab_size",
    "unconditional_inputs", "unwrap", "uses_mask_ratio",
]
