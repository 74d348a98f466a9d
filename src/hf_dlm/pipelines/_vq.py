"""Decoding VQ token grids to images, shared by the masked and the autoregressive image pipelines."""

from __future__ import annotations

import torch

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


def decode_token_grid(vqvae, tokens: torch.LongTensor, image_processor, output_type: str):
    """(B, h, w) codebook indices → images through ``vqvae``'s codebook lookup and decoder, post-processed to
    ``output_type`` (``pil`` | ``np`` | ``pt``); ``latent`` returns the indices themselves."""
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"`output_type` must be one of {OUTPUT_TYPES}, got {output_type!r}.")
    if output_type == "latent":
        return tokens
    pixels = vqvae.decode(tokens, force_not_quantize=True,
                          shape=(tokens.shape[0], *tokens.shape[1:], vqvae.config.latent_channels)).sample.clip(0, 1)
    return image_processor.postprocess(pixels, output_type)
