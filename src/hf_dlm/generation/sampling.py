"""Pure functions of one masked-diffusion decoding step (LLaDA Algorithm 4/5, Dream's samplers, Fast-dLLM).

Each function takes tensors and returns tensors, so tests can check them against hand-derived values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def num_transfer_tokens(mask_index: torch.Tensor, steps: int) -> torch.LongTensor:
    """Tokens to commit at each of ``steps`` steps, per row: the masked count split as evenly as possible,
    the remainder going to the first steps (LLaDA's ``get_num_transfer_tokens``; the linear schedule makes the
    expected count per step constant). Returns shape (batch, steps)."""
    masked = mask_index.sum(dim=1, keepdim=True)
    base, remainder = masked // steps, masked % steps
    counts = base.expand(-1, steps).clone()
    counts += (torch.arange(steps, device=mask_index.device).unsqueeze(0) < remainder).long()
    return counts


def add_gumbel_noise(logits: torch.Tensor, temperature: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gumbel-max perturbation in float64: ``argmax`` of the result is a sample of ``softmax(logits / τ)``.

    Written as LLaDA does, ``exp(logits) / (−log u)^τ`` with ``u ~ U(0, 1)``, which is monotone in
    ``logits + τ·g`` with ``g`` standard Gumbel; float64 because low-precision Gumbel noise degrades samples.
    At τ = 0 the logits are returned unchanged (greedy).
    """
    if temperature == 0:
        return logits
    logits = logits.to(torch.float64)
    noise = torch.rand(logits.shape, dtype=torch.float64, device=logits.device, generator=generator)
    return logits.exp() / (-torch.log(noise)) ** temperature


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set to −inf every logit outside the ``top_k`` largest and outside the smallest set whose probability
    reaches ``top_p`` (nucleus). The most likely token always survives."""
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = cumulative - sorted_logits.softmax(-1) >= top_p  # mass before this token already ≥ p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def confidence_scores(logits: torch.Tensor, proposal: torch.LongTensor, remasking: str,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Score of every proposed token; the highest scores are committed first.

    ``low_confidence``: p(proposal) under ``softmax(logits)`` (LLaDA); ``random``: u ~ U(0, 1) (LLaDA);
    ``margin``: p₁ − p₂, the gap between the two most likely tokens; ``entropy``: Σ p log p (negative entropy,
    Dream's ``entropy`` algorithm). Computed in float32 or wider.
    """
    if remasking == "random":
        return torch.rand(proposal.shape, device=proposal.device, generator=generator, dtype=torch.float64)
    probs = F.softmax(logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits, dim=-1)
    if remasking == "low_confidence":
        return torch.gather(probs, -1, proposal.unsqueeze(-1)).squeeze(-1)
    if remasking == "margin":
        top2 = torch.topk(probs, 2, dim=-1).values
        return top2[..., 0] - top2[..., 1]
    if remasking == "entropy":
        return torch.sum(probs * torch.log(probs.clamp_min(1e-30)), dim=-1)
    raise ValueError(f"`remasking` has no confidence score for {remasking!r}; expected 'low_confidence', 'random', "
                     "'margin' or 'entropy'.")


def select_top(confidence: torch.Tensor, counts: torch.LongTensor, alg_temp: float | None = None,
               generator: torch.Generator | None = None) -> torch.BoolTensor:
    """Positions to commit: per row the ``counts[row]`` best scores (−inf marks positions that may not be
    committed), or, with ``alg_temp > 0``, that many positions drawn without replacement from
    ``softmax(confidence / alg_temp)`` (Dream)."""
    transfer = torch.zeros_like(confidence, dtype=torch.bool)
    for row in range(confidence.shape[0]):
        k = int(counts[row])
        if k == 0:
            continue
        if alg_temp:
            weights = F.softmax(confidence[row].double() / alg_temp, dim=-1)
            index = torch.multinomial(weights, k, replacement=False, generator=generator)
        else:
            index = torch.topk(confidence[row], k).indices
        transfer[row, index] = True
    return transfer


def select_above_threshold(confidence: torch.Tensor, threshold: float) -> torch.BoolTensor:
    """Confidence-threshold parallel decoding (Fast-dLLM): every position scoring ≥ ``threshold``, and in each
    row that has a committable position at least its best one."""
    transfer = confidence >= threshold
    best = confidence.argmax(dim=-1, keepdim=True)
    has_candidate = torch.isfinite(confidence).any(dim=-1, keepdim=True)
    return transfer | (torch.zeros_like(transfer).scatter(-1, best, True) & has_candidate)


def origin_reveal(eligible: torch.BoolTensor, t: float, s: float, last_step: bool,
                  generator: torch.Generator | None = None) -> torch.BoolTensor:
    """Dream's ``origin`` reveal: each eligible masked position is unmasked independently with probability
    ``1 − s/t`` when moving from time ``t`` to ``s < t`` (all of them at the last step) — the exact reverse
    transition of the linear masking schedule."""
    if last_step:
        return eligible.clone()
    u = torch.rand(eligible.shape, device=eligible.device, generator=generator)
    return eligible & (u < 1.0 - s / t)


def trim_after_eos(sequences: torch.LongTensor, prompt_length: int, eos_token_ids: list[int],
                   pad_token_id: int) -> torch.LongTensor:
    """Replace every generated token after a row's first EOS by ``pad_token_id`` and drop trailing columns that
    are padding in every row (the way autoregressive ``generate`` reports finished rows)."""
    generated = sequences[:, prompt_length:]
    is_eos = torch.isin(generated, torch.tensor(eos_token_ids, device=sequences.device))
    after = (is_eos.long().cumsum(-1) - is_eos.long()) > 0
    generated = generated.masked_fill(after, pad_token_id)
    keep = (~after).any(dim=0)
    length = int(keep.nonzero().max()) + 1 if keep.any() else 0
    return torch.cat([sequences[:, :prompt_length], generated[:, :length]], dim=1)


__all__ = [
    "add_gumbel_noise",
    "confidence_scores",
    "filter_logits",
    "num_transfer_tokens",
    "origin_reveal",
    "select_above_threshold",
    "select_top",
    "trim_after_eos",
]
