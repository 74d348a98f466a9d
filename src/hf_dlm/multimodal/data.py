"""The paper's sequence format and a collator from (caption, image) pairs to padded, labelled batches.

``<doc> <text> caption </text> <image> image tokens </image> </doc>``, padded with ``<pad>`` (§2.1). Images come
as codebook indices or as pixels that a diffusers ``VQModel`` tokenizes. Text-only examples (``input_ids``, e.g.
the language model's own pre-training text for replay) pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from .tokens import ImageTokenMap

IGNORE_INDEX = -100


def prompt_ids(token_map: ImageTokenMap, caption_ids: Sequence[int]) -> list[int]:
    """The conditioning prefix ``<doc> <text> caption </text> <image>`` that text-to-image generation continues."""
    return [token_map["doc_start"], token_map["text_start"], *[int(i) for i in caption_ids], token_map["text_end"],
            token_map["image_start"]]


def format_sequence(token_map: ImageTokenMap, caption_ids: Sequence[int], image_codes: torch.Tensor) -> list[int]:
    """One full document: ``<doc> <text> caption </text> <image> <img…> </image> </doc>``."""
    image = token_map.codes_to_ids(torch.as_tensor(image_codes).reshape(-1)).tolist()
    return prompt_ids(token_map, caption_ids) + image + [token_map["image_end"], token_map["doc_end"]]


@torch.no_grad()
def encode_images(vq_model, pixel_values: torch.Tensor) -> torch.LongTensor:
    """Tokenize images with a diffusers ``VQModel``: encode, quantize, return the (N, h, w) codebook indices."""
    latents = vq_model.encode(pixel_values.to(vq_model.device, vq_model.dtype)).latents
    indices = vq_model.quantize(latents)[2][2]
    return indices.reshape(latents.shape[0], *latents.shape[2:]).cpu().long()


def check_vq_model(vq_model, token_map: ImageTokenMap) -> None:
    """Raise when the VQ model's codebook or token grid does not match the token map."""
    codebook = int(vq_model.config.num_vq_embeddings)
    if codebook != token_map.codebook_size:
        raise ValueError(f"the VQ model has {codebook} codebook entries but the token map has "
                         f"codebook_size={token_map.codebook_size}.")
    scale = 2 ** (len(vq_model.config.block_out_channels) - 1)
    sample = vq_model.config.sample_size
    sample = tuple(sample) if isinstance(sample, (list, tuple)) else (sample, sample)
    grid = (sample[0] // scale, sample[1] // scale)
    if token_map.image_grid is not None and grid != token_map.image_grid:
        raise ValueError(f"the VQ model makes a {grid} token grid from {sample} images but the token map expects "
                         f"image_grid={token_map.image_grid}.")


class ImageTextCollator:
    """Turns examples into ``input_ids``, ``attention_mask`` and ``labels`` (padding → -100), right-padded.

    Each example is a dict with either
      * ``caption`` (str, tokenized without special tokens) or ``caption_ids``, and ``image_codes`` (codebook
        indices, shape ``image_grid`` or flat) or ``pixel_values`` (C, H, W; tokenized by ``vq_model``), or
      * ``input_ids`` alone: a text-only sequence used as it is (labels = inputs).

    Args:
        tokenizer: the extended tokenizer (for captions).
        token_map: from [`add_image_tokens`], with ``image_grid`` set.
        vq_model: a diffusers ``VQModel`` for ``pixel_values`` examples; its codebook and grid must match.
        caption_dropout: probability of replacing a caption by the empty caption (trains the unconditional branch
            of classifier-free guidance).
        max_caption_tokens: captions are truncated to this many tokens.
        pad_to_length: pad every batch to this length (default: the longest example).
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, token_map: ImageTokenMap, vq_model=None,
                 caption_dropout: float = 0.0, max_caption_tokens: int | None = None,
                 pad_to_length: int | None = None) -> None:
        if token_map.image_grid is None:
            raise ValueError("`token_map` needs an `image_grid` (the (height, width) of an image's token grid).")
        if not 0.0 <= caption_dropout <= 1.0:
            raise ValueError(f"`caption_dropout` must lie in [0, 1], got {caption_dropout}.")
        if max_caption_tokens is not None and max_caption_tokens < 0:
            raise ValueError(f"`max_caption_tokens` must be >= 0, got {max_caption_tokens}.")
        if vq_model is not None:
            check_vq_model(vq_model, token_map)
        self.tokenizer, self.token_map, self.vq_model = tokenizer, token_map, vq_model
        self.caption_dropout, self.max_caption_tokens, self.pad_to_length = (caption_dropout, max_caption_tokens,
                                                                             pad_to_length)

    def _caption_ids(self, example: dict[str, Any]) -> list[int]:
        if "caption_ids" in example:
            ids = [int(i) for i in torch.as_tensor(example["caption_ids"]).view(-1).tolist()]
        elif "caption" in example:
            ids = self.tokenizer(example["caption"], add_special_tokens=False)["input_ids"]
        else:
            raise ValueError(f"an image example needs `caption` or `caption_ids`, got keys {sorted(example)}.")
        if self.caption_dropout and float(torch.rand(())) < self.caption_dropout:
            return []
        return ids[: self.max_caption_tokens] if self.max_caption_tokens is not None else ids

    def _image_codes(self, examples: list[dict[str, Any]]) -> dict[int, torch.LongTensor]:
        codes: dict[int, torch.LongTensor] = {}
        pixel_index = [i for i, ex in enumerate(examples) if "image_codes" not in ex and "pixel_values" in ex]
        if pixel_index:
            if self.vq_model is None:
                raise ValueError("examples with `pixel_values` need the collator's `vq_model` to tokenize them.")
            pixels = torch.stack([torch.as_tensor(examples[i]["pixel_values"]) for i in pixel_index])
            encoded = encode_images(self.vq_model, pixels)
            if tuple(encoded.shape[1:]) != self.token_map.image_grid:
                raise ValueError(f"images of size {tuple(pixels.shape[-2:])} give a {tuple(encoded.shape[1:])} "
                                 f"token grid; the token map expects {self.token_map.image_grid}.")
            codes.update(zip(pixel_index, encoded))
        for i, ex in enumerate(examples):
            if "image_codes" in ex:
                grid = torch.as_tensor(ex["image_codes"])
                if grid.numel() != self.token_map.num_image_tokens or (grid.dim() == 2 and
                                                                       tuple(grid.shape) != self.token_map.image_grid):
                    raise ValueError(f"`image_codes` of shape {tuple(grid.shape)} does not match the token grid "
                                     f"{self.token_map.image_grid}.")
                codes[i] = grid
        return codes

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        codes = self._image_codes(examples)
        sequences = []
        for i, ex in enumerate(examples):
            if i in codes:
                sequences.append(format_sequence(self.token_map, self._caption_ids(ex), codes[i]))
            elif "input_ids" in ex:
                sequences.append([int(t) for t in torch.as_tensor(ex["input_ids"]).view(-1).tolist()])
            else:
                raise ValueError(f"an example needs `image_codes` or `pixel_values` (with a caption), or "
                                 f"`input_ids` for text-only data; got keys {sorted(ex)}.")
        length = max(len(s) for s in sequences)
        if self.pad_to_length is not None:
            if self.pad_to_length < length:
                raise ValueError(f"`pad_to_length`={self.pad_to_length} is shorter than an example ({length}).")
            length = self.pad_to_length
        pad = self.token_map["pad"]
        input_ids = torch.full((len(sequences), length), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
        for row, seq in enumerate(sequences):
            input_ids[row, : len(seq)] = torch.tensor(seq)
            attention_mask[row, : len(seq)] = 1
        labels = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


__all__ = ["IGNORE_INDEX", "ImageTextCollator", "check_vq_model", "encode_images", "format_sequence", "prompt_ids"]
