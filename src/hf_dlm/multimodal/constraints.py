"""Constrained decoding for autoregressive text-to-image: inside ``<image> … </image>`` only codebook tokens may be
sampled, and the span is closed with ``</image>`` exactly when it holds a full image's worth of tokens."""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

from .tokens import ImageTokenMap


class ImageSpanLogitsProcessor(LogitsProcessor):
    """A transformers ``LogitsProcessor`` for sequences in the ``<doc> <text> … </text> <image> … </image>`` format.

    For each row it finds the last ``<image>``; if no ``</image>`` follows it the row is inside an image span. With
    ``n`` tokens generated in the span, ``n < num_image_tokens`` leaves only the codebook tokens, and
    ``n == num_image_tokens`` leaves only ``</image>``. Rows outside a span are untouched (free text).
    Pass it in ``generate(logits_processor=[...])``; it composes with transformers' classifier-free guidance,
    temperature and top-k/top-p, which see the constrained scores.
    """

    def __init__(self, token_map: ImageTokenMap, num_image_tokens: int | None = None) -> None:
        self.token_map = token_map
        self.num_image_tokens = num_image_tokens if num_image_tokens is not None else token_map.num_image_tokens
        if self.num_image_tokens < 1:
            raise ValueError(f"`num_image_tokens` must be >= 1, got {self.num_image_tokens}.")

    def span_state(self, input_ids: torch.LongTensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(inside a span, tokens generated in it) per row."""
        length = input_ids.shape[1]
        positions = torch.arange(length, device=input_ids.device).expand_as(input_ids)
        none = torch.full_like(positions, -1)
        last_start = torch.where(input_ids == self.token_map["image_start"], positions, none).max(dim=1).values
        last_end = torch.where(input_ids == self.token_map["image_end"], positions, none).max(dim=1).values
        inside = last_start > last_end
        return inside, torch.where(inside, length - 1 - last_start, torch.zeros_like(last_start))

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        inside, count = self.span_state(input_ids)
        vocab = torch.arange(scores.shape[-1], device=scores.device)
        image_ok = self.token_map.is_image_token(vocab).unsqueeze(0)
        close_ok = (vocab == self.token_map["image_end"]).unsqueeze(0)
        in_body = (inside & (count < self.num_image_tokens)).unsqueeze(1)
        at_end = (inside & (count >= self.num_image_tokens)).unsqueeze(1)
        allowed = torch.where(in_body, image_ok, torch.where(at_end, close_ok, torch.ones_like(image_ok)))
        return scores.masked_fill(~allowed, float("-inf"))


__all__ = ["ImageSpanLogitsProcessor"]
