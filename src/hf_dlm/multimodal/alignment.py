"""Image-text token contrastive alignment (§3.2 of "Pre-trained Language Models Do Not Help Auto-regressive
Text-to-Image Generation"): learn embeddings for the image tokens so that an image's bag-of-words embedding matches
its caption's bag-of-words embedding under the frozen pretrained text embedding table, with CLIP's symmetric
contrastive loss and a learnable temperature. Only the image rows (and the temperature) are trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

MAX_LOGIT_SCALE = math.log(100.0)  # CLIP clips the learned logit scale at 100


def bag_of_words(table: torch.Tensor, token_ids: torch.LongTensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``table``'s rows over each sequence's tokens (positions where ``mask`` is true): (N, L) → (N, D)."""
    vectors = table[token_ids]
    if mask is None:
        return vectors.mean(dim=1)
    weights = mask.to(vectors.dtype).unsqueeze(-1)
    counts = weights.sum(dim=1).clamp_min(1.0)
    return (vectors * weights).sum(dim=1) / counts


def clip_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric contrastive loss (Radford et al., 2021): with l2-normalised rows ``i`` and ``t``,
    logits = exp(logit_scale)·i tᵀ and the loss is the mean of the image→text and text→image cross-entropies
    against the diagonal (pair n matches pair n)."""
    image = F.normalize(image_features, dim=-1)
    text = F.normalize(text_features, dim=-1)
    logits = logit_scale.exp() * image @ text.T
    targets = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


@dataclass
class AlignmentResult:
    """``image_embeddings`` (codebook_size, D): the trained image-token rows, ready for
    ``add_image_tokens(image_embeddings=...)``; ``losses`` and ``temperatures`` (1 / exp(logit_scale)) per step."""

    image_embeddings: torch.Tensor
    losses: list[float]
    temperatures: list[float]


def contrastive_alignment(text_embeddings: torch.Tensor, caption_ids: torch.LongTensor, image_codes: torch.LongTensor,
                          codebook_size: int, *, caption_mask: torch.Tensor | None = None, steps: int = 200,
                          batch_size: int = 256, learning_rate: float = 1e-2, init_std: float | None = None,
                          initial_temperature: float = 0.07, seed: int = 0,
                          show_progress: bool = True) -> AlignmentResult:
    """Train image-token embeddings against the frozen ``text_embeddings`` table (§3.2).

    Args:
        text_embeddings: the pretrained input embedding table (V, D); never modified.
        caption_ids: (N, T) caption token ids; ``caption_mask`` (N, T) marks real tokens (default: all).
        image_codes: (N, L) codebook indices of the paired images.
        codebook_size: number of image tokens K.
        steps, batch_size, learning_rate: Adam on the image rows and the logit scale, a random batch of pairs per step.
        init_std: std of the random initial image rows (default: the std of ``text_embeddings``).
        initial_temperature: CLIP's initial τ (logit scale log(1/τ)), clipped so that 1/τ ≤ 100.
    """
    if codebook_size <= 0:
        raise ValueError(f"`codebook_size` must be a positive integer, got {codebook_size!r}.")
    if len(caption_ids) != len(image_codes):
        raise ValueError(f"`caption_ids` and `image_codes` must hold the same number of pairs, got "
                         f"{len(caption_ids)} and {len(image_codes)}.")
    if len(image_codes) < 2:
        raise ValueError("contrastive alignment needs at least two image-caption pairs.")
    if image_codes.min() < 0 or image_codes.max() >= codebook_size:
        raise ValueError(f"`image_codes` must lie in [0, {codebook_size - 1}].")
    if steps < 1 or batch_size < 2:
        raise ValueError(f"`steps` must be >= 1 and `batch_size` >= 2, got {steps} and {batch_size}.")
    if not 0 < initial_temperature:
        raise ValueError(f"`initial_temperature` must be > 0, got {initial_temperature}.")
    table = text_embeddings.detach().float()
    generator = torch.Generator().manual_seed(seed)
    std = float(table.std()) if init_std is None else init_std
    image_rows = torch.nn.Parameter(torch.randn(codebook_size, table.shape[1], generator=generator) * std)
    logit_scale = torch.nn.Parameter(torch.tensor(min(math.log(1 / initial_temperature), MAX_LOGIT_SCALE)))
    optimizer = torch.optim.Adam([image_rows, logit_scale], lr=learning_rate)
    caption_ids, image_codes = caption_ids.long(), image_codes.long()
    losses, temperatures = [], []
    batch_size = min(batch_size, len(image_codes))
    for _ in tqdm(range(steps), desc="contrastive alignment", disable=not show_progress):
        batch = torch.randperm(len(image_codes), generator=generator)[:batch_size]
        text = bag_of_words(table, caption_ids[batch], None if caption_mask is None else caption_mask[batch])
        image = bag_of_words(image_rows, image_codes[batch])
        loss = clip_loss(image, text, logit_scale)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            logit_scale.clamp_(max=MAX_LOGIT_SCALE)
        losses.append(loss.item())
        temperatures.append(1 / logit_scale.exp().item())
    return AlignmentResult(image_rows.detach().clone(), losses, temperatures)


def nearest_text_tokens(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor, k: int = 3
                        ) -> torch.LongTensor:
    """For each image-token row, the ids of the ``k`` text tokens with the highest cosine similarity (the paper's
    qualitative check of what the aligned image tokens mean)."""
    similarity = F.normalize(image_embeddings.float(), dim=-1) @ F.normalize(text_embeddings.float(), dim=-1).T
    return similarity.topk(k, dim=-1).indices


__all__ = ["AlignmentResult", "bag_of_words", "clip_loss", "contrastive_alignment", "nearest_text_tokens"]
