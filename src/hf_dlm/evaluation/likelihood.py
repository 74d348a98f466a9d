"""Monte-Carlo ELBO estimate of log p(target | prompt) for masked diffusion LMs.

Nie et al. (2025), eq. 6 and Appendix B.6 (the lower-variance form used for evaluation): draw a mask count
l ~ U{1, …, L} for an answer of L tokens, mask l answer tokens uniformly at random and score
``(L / l) · Σ_{masked} log p_θ(target_i | prompt, masked answer)``. Its expectation lower-bounds
log p(target | prompt). The mask counts of one batch are stratified as in LLaDA's ``get_log_likelihood``:
evenly spaced over 1…L from a random offset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..denoiser import get_mask_token_id, guided_denoise


@dataclass(frozen=True)
class ELBOEstimate:
    """Monte-Carlo ELBO (nats) and its standard error; tensors of shape () or (num_pairs,)."""

    log_likelihood: torch.Tensor
    stderr: torch.Tensor


def stratified_mask_counts(target_length: int, batch_size: int, generator: torch.Generator | None = None,
                           device: torch.device | str = "cpu") -> torch.LongTensor:
    """Mask counts for one batch: ``round(linspace(k, k + (b−1)·L/b, b))`` wrapped into 1…L with k ~ U{1…L}
    (LLaDA's stratification: every count of 1…L is equally likely for each sample, the batch covers them evenly)."""
    k = int(torch.randint(1, target_length + 1, (), generator=generator))
    counts = torch.round(torch.linspace(float(k), k + (batch_size - 1) * (target_length / batch_size), batch_size))
    return (((counts.long() - 1) % target_length) + 1).to(device)


def _random_masks(counts: torch.LongTensor, target_length: int, generator: torch.Generator | None) -> torch.BoolTensor:
    """Row b masks ``counts[b]`` positions of ``target_length``, chosen uniformly without replacement."""
    scores = torch.rand(len(counts), target_length, generator=generator)
    ranks = scores.argsort(dim=1).argsort(dim=1)
    return ranks < counts.cpu().unsqueeze(1)


@torch.no_grad()
def _elbo_one(model: nn.Module, prompt: torch.LongTensor, target: torch.LongTensor, mc_samples: int, batch_size: int,
              cfg_scale: float, mask_token_id: int, generator: torch.Generator | None) -> tuple[float, float]:
    device = next(model.parameters()).device
    sequence = torch.cat([prompt, target]).to(device)
    prompt_len, target_len = len(prompt), len(target)
    prompt_index = torch.zeros(len(sequence), dtype=torch.bool, device=device)
    prompt_index[:prompt_len] = True
    estimates = []
    for _ in range(mc_samples // batch_size):
        counts = stratified_mask_counts(target_len, batch_size, generator)
        masked = torch.zeros(batch_size, len(sequence), dtype=torch.bool)
        masked[:, prompt_len:] = _random_masks(counts, target_len, generator)
        masked = masked.to(device)
        batch = sequence.expand(batch_size, -1)
        noisy = batch.masked_fill(masked, mask_token_id)
        logits = guided_denoise(model, noisy, None, prompt_index.expand(batch_size, -1), cfg_scale, mask_token_id)
        nll = F.cross_entropy(logits.float().transpose(1, 2), batch, reduction="none") * masked
        estimates.append(-(nll.sum(dim=1) * target_len / counts.to(device).float()))
    values = torch.cat(estimates).double()
    stderr = float(values.std(unbiased=True) / math.sqrt(len(values))) if len(values) > 1 else float("nan")
    return float(values.mean()), stderr


def elbo_log_likelihood(model: nn.Module, prompt_ids: torch.LongTensor, target_ids: torch.LongTensor,
                        mc_samples: int = 128, batch_size: int = 32, cfg_scale: float = 0.0,
                        generator: torch.Generator | None = None) -> ELBOEstimate:
    """Monte-Carlo ELBO of log p(target | prompt) under a masked diffusion model (LLaDA eq. 6 / Appendix B.6).

    Args:
        model: any model that follows the denoiser contract (LLaDA, Dream, peft-wrapped ...).
        prompt_ids: 1-D prompt (may be empty), or 2-D (num_pairs, prompt_length) for several pairs.
        target_ids: 1-D target, or 2-D (num_pairs, target_length).
        mc_samples: Monte-Carlo samples per pair; a multiple of ``batch_size``.
        batch_size: samples per forward pass (their mask counts are stratified).
        cfg_scale: LLaDA's unsupervised classifier-free guidance on the logits (0 = off).
        generator: for reproducible estimates.

    Returns:
        [`ELBOEstimate`] with the estimate in nats and its standard error (the per-sample standard deviation over
        √mc_samples; stratification only lowers the true error, so this is conservative).
    """
    if mc_samples < 1 or batch_size < 1 or mc_samples % batch_size:
        raise ValueError(f"`mc_samples` ({mc_samples}) must be a positive multiple of `batch_size` ({batch_size}).")
    prompt_ids, target_ids = torch.as_tensor(prompt_ids), torch.as_tensor(target_ids)
    single = target_ids.dim() == 1
    if single:
        prompt_ids, target_ids = prompt_ids.view(1, -1), target_ids.view(1, -1)
    if prompt_ids.dim() != 2 or target_ids.dim() != 2 or prompt_ids.shape[0] != target_ids.shape[0]:
        raise ValueError(f"`prompt_ids` {tuple(prompt_ids.shape)} and `target_ids` {tuple(target_ids.shape)} must "
                         "both be 1-D, or 2-D with the same number of rows.")
    if target_ids.shape[1] == 0:
        raise ValueError("`target_ids` is empty: there is nothing to score.")
    mask_token_id = get_mask_token_id(model)
    results = [_elbo_one(model, p.long(), t.long(), mc_samples, batch_size, cfg_scale, mask_token_id, generator)
               for p, t in zip(prompt_ids, target_ids)]
    ll = torch.tensor([r[0] for r in results], dtype=torch.float64)
    se = torch.tensor([r[1] for r in results], dtype=torch.float64)
    return ELBOEstimate(ll[0], se[0]) if single else ELBOEstimate(ll, se)


@dataclass(frozen=True)
class NLLEstimate:
    """Negative log-likelihood per token (nats) and its standard error over sequences."""

    nll: float
    stderr: float


def heldout_nll(model: nn.Module, sequences: torch.LongTensor, mc_samples: int = 32, batch_size: int = 32,
                generator: torch.Generator | None = None) -> NLLEstimate:
    """Model-side held-out negative log-likelihood per token through the ELBO: the mean over ``sequences`` of
    −ELBO(sequence) / length, an upper bound on the model's true NLL per token, with its standard error."""
    sequences = torch.as_tensor(sequences)
    empty = sequences[:, :0]
    est = elbo_log_likelihood(model, empty, sequences, mc_samples=mc_samples, batch_size=batch_size,
                              generator=generator)
    per_token = -est.log_likelihood / sequences.shape[1]
    stderr = (per_token.var(unbiased=True) / len(per_token)).sqrt() if len(per_token) > 1 else est.stderr[0]
    return NLLEstimate(float(per_token.mean()), float(stderr))


__all__ = ["ELBOEstimate", "NLLEstimate", "elbo_log_likelihood", "heldout_nll", "stratified_mask_counts"]
