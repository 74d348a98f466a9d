"""The masked-diffusion training objective (Nie et al., 2025, "Large Language Diffusion Models", eq. 3 and the
SFT objective eq. 5; LLaDA's guidelines for the ``eps`` floor on the mask probability)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def forward_process(input_ids: torch.LongTensor, mask_token_id: int, eps: float = 1e-3,
                    maskable: torch.BoolTensor | None = None, generator: torch.Generator | None = None,
                    ) -> tuple[torch.LongTensor, torch.BoolTensor, torch.Tensor]:
    """Forward (noising) process q(x_t | x_0): draw t ~ U(0, 1) per sequence, mask every maskable token
    independently with probability ``p_mask = (1 − eps)·t + eps``.

    Returns ``(noisy_ids, masked, p_mask)`` with ``p_mask`` of shape (batch, 1).
    """
    batch, length = input_ids.shape
    t = torch.rand(batch, 1, device=input_ids.device, generator=generator)
    p_mask = (1.0 - eps) * t + eps
    masked = torch.rand(batch, length, device=input_ids.device, generator=generator) < p_mask
    if maskable is not None:
        masked &= maskable
    return input_ids.masked_fill(masked, mask_token_id), masked, p_mask


def masked_token_nll(logits: torch.Tensor, targets: torch.LongTensor, masked: torch.BoolTensor) -> torch.Tensor:
    """Cross-entropy −log p_θ(x_0^i | x_t) at every position, zero where the token was not masked (float32)."""
    nll = F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")
    return nll * masked


def pretraining_loss(logits: torch.Tensor, targets: torch.LongTensor, masked: torch.BoolTensor,
                     p_mask: torch.Tensor) -> torch.Tensor:
    """LLaDA eq. 3 as implemented in its guidelines: ``Σ_{masked} CE / p_mask  /  (B · L)``."""
    batch, length = targets.shape
    return (masked_token_nll(logits, targets, masked) / p_mask).sum() / (batch * length)


def sft_loss(logits: torch.Tensor, targets: torch.LongTensor, masked: torch.BoolTensor, p_mask: torch.Tensor,
             answer_lengths: torch.Tensor) -> torch.Tensor:
    """LLaDA eq. 5 as in its guidelines: ``Σ_b Σ_{masked} CE / p_mask / answer_length_b  /  B`` — the prompt is
    never masked and each sequence is normalised by its answer length (EOS padding included)."""
    per_token = masked_token_nll(logits, targets, masked) / p_mask / answer_lengths.view(-1, 1).float()
    return per_token.sum() / targets.shape[0]


def prompt_mask_from_lengths(prompt_lengths: torch.Tensor, length: int) -> torch.BoolTensor:
    """Boolean (batch, length) mask that is True on the first ``prompt_lengths[b]`` positions of row ``b``."""
    positions = torch.arange(length, device=prompt_lengths.device).unsqueeze(0)
    return positions < prompt_lengths.view(-1, 1)


__all__ = ["forward_process", "masked_token_nll", "pretraining_loss", "prompt_mask_from_lengths", "sft_loss"]
