"""Pure functions of one step of Dream's sampler (Ye et al., "Dream 7B", 2025, arXiv 2508.15487), as Dream's
``DreamGenerationMixin._sample`` computes it: the time grid ``linspace(1, eps, steps + 1)``, the per-step commit
count ``⌊M·(1 − s/t)⌋`` recomputed from the current number of masks ``M`` (all of them at the last step), proposals
and confidences from the tempered then nucleus- then top-k-filtered distribution, and the ``origin`` reveal drawn
over the masked positions only.

Computed in the logits' dtype, as Dream does. One deliberate difference: Dream samples through
``torch.distributions.Categorical`` inside a bare ``try``/``except`` that silently falls back to greedy when the
distribution rejects its probabilities (NaN, or a sum off by more than 1e-6, which happens at large vocabularies and
in bf16); here the same draw is made with ``torch.multinomial`` (identical random stream) and NaN raises.
"""

from __future__ import annotations

import torch

DREAM_ALGORITHMS = {"origin": "origin", "maskgit_plus": "low_confidence", "topk_margin": "margin",
                    "entropy": "entropy"}


def dream_timesteps(steps: int, eps: float, device: torch.device) -> torch.Tensor:
    """Dream's time grid ``linspace(1, eps, steps + 1)`` (float32): step *i* moves from ``t = ts[i]`` to
    ``s = ts[i + 1]``."""
    return torch.linspace(1, eps, steps + 1, device=device)


def dream_transfer_count(mask_index: torch.Tensor, timesteps: torch.Tensor, step: int, steps: int) -> int:
    """Tokens every row commits at ``step``: ``int(M · (1 − s/t))`` with ``M`` the masked count averaged over the
    batch (float32, as Dream), and all of them at the last step."""
    num_mask = mask_index.sum() / mask_index.shape[0]
    if step >= steps - 1:
        return int(num_mask)
    t, s = timesteps[step], timesteps[step + 1]
    return int(num_mask * (1 - s / t))


def _filter(logits: torch.Tensor, top_p: float | None, top_k: int | None) -> torch.Tensor:
    """Dream's nucleus then top-k filters, filling with ``finfo(dtype).min`` (not −inf)."""
    lowest = torch.finfo(logits.dtype).min
    if top_p is not None and top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = torch.cumsum(torch.softmax(sorted_logits, dim=-1), dim=-1)
        drop_sorted = cumulative > top_p
        drop_sorted[..., 1:] = drop_sorted[..., :-1].clone()  # keep the token that crosses top_p
        drop_sorted[..., 0] = False
        drop = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, lowest)
    if top_k is not None:
        k = min(top_k, logits.size(-1))
        logits = logits.masked_fill(logits < torch.topk(logits, k)[0][..., -1, None], lowest)
    return logits


def categorical_sample(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.LongTensor:
    """``torch.distributions.Categorical(probs=probs).sample()`` without its argument check: the same
    normalisation and the same ``torch.multinomial`` call, so the draws are the same for a seed."""
    if torch.isnan(probs).any():
        raise ValueError("The denoiser's probabilities contain NaN: refusing to sample tokens from them.")
    normalised = probs / probs.sum(-1, keepdim=True)
    flat = normalised.reshape(-1, normalised.shape[-1])
    return torch.multinomial(flat, 1, True, generator=generator).T.reshape(normalised.shape[:-1])


def dream_sample_tokens(logits: torch.Tensor, temperature: float, top_p: float | None, top_k: int | None,
                        rule: str = "low_confidence", generator: torch.Generator | None = None
                        ) -> tuple[torch.Tensor, torch.LongTensor]:
    """Dream's ``sample_tokens`` over rows of ``logits`` (N, vocab): ``logits / T`` (T > 0), top-p, top-k,
    ``probs = softmax``; the proposal is a categorical draw (T > 0) or the argmax. Returns ``(confidence, x0)``
    where the confidence is p(x0) (``low_confidence`` = Dream's ``maskgit_plus``), p₁ − p₂ (``margin`` =
    ``topk_margin``) or Σ p log(p + 1e-10) (``entropy``)."""
    if temperature > 0:
        logits = logits / temperature
    probs = torch.softmax(_filter(logits, top_p, top_k), dim=-1)
    if temperature > 0:
        x0 = categorical_sample(probs, generator)
        confidence = torch.gather(probs, -1, x0.unsqueeze(-1)).squeeze(-1)
    else:
        confidence, x0 = probs.max(dim=-1)
    if rule == "margin":
        top2 = torch.sort(probs, dim=-1, descending=True).values
        confidence = top2[:, 0] - top2[:, 1]
    elif rule == "entropy":
        confidence = torch.sum(probs * torch.log(probs + 1e-10), dim=-1)
    elif rule != "low_confidence":
        raise ValueError(f"Dream's sampler has no confidence rule {rule!r}; expected 'low_confidence' "
                         "(maskgit_plus), 'margin' (topk_margin) or 'entropy'.")
    return confidence, x0


def dream_origin_reveal(num_masked: int, timesteps: torch.Tensor, step: int, steps: int, device: torch.device,
                        generator: torch.Generator | None = None) -> torch.BoolTensor:
    """Dream's ``origin`` reveal over the ``num_masked`` masked positions (in row-major order): each is revealed
    with probability ``1 − s/t`` (all of them at the last step); one float32 uniform per masked position."""
    p_transfer = 1 - timesteps[step + 1] / timesteps[step] if step < steps - 1 else 1
    return torch.rand(num_masked, device=device, generator=generator) < p_transfer


__all__ = [
    "DREAM_ALGORITHMS",
    "categorical_sample",
    "dream_origin_reveal",
    "dream_sample_tokens",
    "dream_timesteps",
    "dream_transfer_count",
]
