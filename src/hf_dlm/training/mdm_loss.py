"""The masked-diffusion training objective (Nie et al., 2025, "Large Language Diffusion Models", eq. 3 and the
SFT objective eq. 5; LLaDA's guidelines for the ``eps`` floor on the mask probability)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
"""The label of a position that is never trained (the transformers convention)."""


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


def trainable_positions(input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None,
                        prompt_lengths: torch.Tensor | None = None, labels: torch.LongTensor | None = None,
                        ) -> torch.BoolTensor:
    """The (batch, length) positions a masked-diffusion step may mask and score, after checking the batch.

    A position is trained when it is not padding (``attention_mask`` 1), lies at or after its row's prompt
    (``prompt_lengths``) and is not labelled ``IGNORE_INDEX`` (−100) in ``labels``. Everything else is
    conditioning: never masked, never scored, and not counted in eq. 5's answer length. ``labels``, where not −100,
    must equal ``input_ids`` (the denoiser's target is the clean token itself).

    Raises:
        TypeError: ``input_ids`` / ``prompt_lengths`` / ``labels`` not integer tensors.
        ValueError: a shape that does not match ``input_ids``, a negative prompt length, a label that is neither −100
            nor the token, or a row with no trainable position (``prompt_lengths[b]`` ≥ the row length, every label
            −100, all padding) — such a row would contribute a loss of exactly 0 and train nothing.
    """
    for name, tensor in (("input_ids", input_ids), ("prompt_lengths", prompt_lengths), ("labels", labels)):
        if tensor is not None and (not isinstance(tensor, torch.Tensor) or tensor.dtype.is_floating_point
                                   or tensor.dtype == torch.bool):
            kind = tensor.dtype if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise TypeError(f"`{name}` must be an integer tensor, got {kind}.")
    if input_ids.dim() != 2:
        raise ValueError(f"`input_ids` must have shape (batch, length), got {tuple(input_ids.shape)}.")
    batch, length = input_ids.shape
    trained = torch.ones_like(input_ids, dtype=torch.bool)
    if attention_mask is not None:
        if tuple(attention_mask.shape) != (batch, length):
            raise ValueError(f"`attention_mask` must have the shape of `input_ids` {(batch, length)}, "
                             f"got {tuple(attention_mask.shape)}.")
        trained &= attention_mask.bool()
    if prompt_lengths is not None:
        if prompt_lengths.numel() != batch:
            raise ValueError(f"`prompt_lengths` must hold one length per row ({batch}), got shape "
                             f"{tuple(prompt_lengths.shape)}.")
        prompt_lengths = prompt_lengths.reshape(batch)
        if bool((prompt_lengths < 0).any()):
            raise ValueError(f"`prompt_lengths` must be >= 0, got {prompt_lengths.tolist()}.")
        long = (prompt_lengths >= length).nonzero().flatten().tolist()
        if long:
            raise ValueError(f"`prompt_lengths`[{long[0]}] = {int(prompt_lengths[long[0]])} leaves no answer position "
                             f"in a row of length {length}: that row would train nothing.")
        trained &= ~prompt_mask_from_lengths(prompt_lengths, length)
    if labels is not None:
        if tuple(labels.shape) != (batch, length):
            raise ValueError(f"`labels` must have the shape of `input_ids` {(batch, length)}, "
                             f"got {tuple(labels.shape)}.")
        labelled = labels != IGNORE_INDEX
        wrong = labelled & (labels != input_ids)
        if bool(wrong.any()):
            row, col = wrong.nonzero()[0].tolist()
            raise ValueError(f"`labels`[{row}, {col}] = {int(labels[row, col])} is neither {IGNORE_INDEX} nor the "
                             f"token {int(input_ids[row, col])}: a masked diffusion model's target is the clean "
                             f"token itself; label a position with {IGNORE_INDEX} to exclude it from training.")
        trained &= labelled
    empty = (~trained.any(dim=1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"row {empty[0]} of the batch has no position to train on (every position is prompt, "
                         f"padding or labelled {IGNORE_INDEX}): its loss would be exactly 0. Check `prompt_lengths`, "
                         f"`labels` and `attention_mask`.")
    return trained


__all__ = ["IGNORE_INDEX", "forward_process", "masked_token_nll", "pretraining_loss", "prompt_mask_from_lengths",
           "sft_loss", "trainable_positions"]
