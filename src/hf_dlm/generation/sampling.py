"""Pure functions of one masked-diffusion decoding step, LLaDA family (Nie et al., 2025, arXiv 2502.09992,
Algorithm 4 with semi-autoregressive blocks, Algorithm 5 low-confidence remasking) and the rules both families
share (Fast-dLLM's confidence threshold, Wu et al., 2025, arXiv 2505.22618; nucleus / top-k filtering).

Each function takes tensors and returns tensors, so tests can check them against hand-derived values. Dream's own
step lives in ``dream_sampling.py``.
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


def gumbel_uniforms(shape: tuple[int, ...], device: torch.device,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """The float64 uniforms LLaDA's Gumbel-max draws, one per logit (``torch.rand_like(logits, float64)``)."""
    return torch.rand(shape, dtype=torch.float64, device=device, generator=generator)


def add_gumbel_noise(logits: torch.Tensor, temperature: float, generator: torch.Generator | None = None,
                     uniforms: torch.Tensor | None = None) -> torch.Tensor:
    """Gumbel-max perturbation in float64: ``argmax`` of the result is a sample of ``softmax(logits / τ)``.

    Written as LLaDA does, ``exp(logits) / (−log u)^τ`` with ``u ~ U(0, 1)``, which is monotone in
    ``logits + τ·g`` with ``g`` standard Gumbel; float64 because low-precision Gumbel noise degrades samples
    (arXiv 2409.02908). ``uniforms`` (same shape as ``logits``) are drawn here when not given. At τ = 0 the logits
    are returned unchanged (greedy) and nothing is drawn, as in LLaDA.
    """
    if temperature == 0:
        return logits
    if uniforms is None:
        uniforms = gumbel_uniforms(tuple(logits.shape), logits.device, generator)
    return logits.to(torch.float64).exp() / (-torch.log(uniforms)) ** temperature


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None,
                  temperature: float = 0.0) -> torch.Tensor:
    """Set to −inf every logit outside the ``top_k`` largest and outside the smallest set whose probability under
    ``softmax(logits / temperature)`` reaches ``top_p`` (nucleus; the untempered distribution at temperature 0).
    Filtering the tempered distribution is transformers' order (temperature, then top-k / top-p). The most likely
    token always survives."""
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        scaled = logits / temperature if temperature > 0 else logits
        sorted_logits, order = torch.sort(scaled, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        drop_sorted = probs.cumsum(-1) - probs >= top_p  # mass before this token already ≥ p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def confidence_scores(logits: torch.Tensor, proposal: torch.LongTensor, remasking: str) -> torch.Tensor:
    """Score of every proposed token; the highest scores are committed first. Computed in the logits' dtype, as
    LLaDA's ``generate.py`` does (bf16 logits give bf16 scores, whose ties ``topk`` breaks by position).

    ``low_confidence``: p(proposal) under ``softmax(logits)`` (LLaDA Algorithm 5); ``margin``: p₁ − p₂, the gap
    between the two most likely tokens; ``entropy``: Σ p log p (negative entropy). ``random`` scores are uniforms
    drawn over the whole canvas by the caller ([`random_scores`]).
    """
    probs = F.softmax(logits, dim=-1)
    if remasking == "low_confidence":
        return torch.gather(probs, -1, proposal.unsqueeze(-1)).squeeze(-1)
    if remasking == "margin":
        top2 = torch.topk(probs, 2, dim=-1).values
        return top2[..., 0] - top2[..., 1]
    if remasking == "entropy":
        return torch.sum(probs * torch.log(probs.clamp_min(1e-30)), dim=-1)
    raise ValueError(f"`remasking` has no confidence score for {remasking!r}; expected 'low_confidence', 'margin' "
                     "or 'entropy'.")


def random_scores(batch: int, length: int, device: torch.device,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """LLaDA's ``random`` remasking scores: float32 uniforms over the whole (batch, length) canvas."""
    return torch.rand((batch, length), device=device, generator=generator)


def select_top(confidence: torch.Tensor, counts: torch.LongTensor, alg_temp: float | None = None,
               generator: torch.Generator | None = None) -> torch.BoolTensor:
    """Positions to commit: per row the ``counts[row]`` best scores (−inf marks positions that may not be
    committed; never more than the row has), or, with ``alg_temp > 0``, that many positions drawn without
    replacement from ``softmax(confidence / alg_temp)`` (Dream's ``alg_temp``)."""
    transfer = torch.zeros_like(confidence, dtype=torch.bool)
    available = torch.isfinite(confidence).sum(dim=-1)
    for row in range(confidence.shape[0]):
        k = min(int(counts[row]), int(available[row]))
        if k == 0:
            continue
        if alg_temp:
            weights = F.softmax(confidence[row] / alg_temp, dim=-1)
            index = torch.multinomial(weights, k, replacement=False, generator=generator)
        else:
            index = torch.topk(confidence[row], k).indices
        transfer[row, index] = True
    return transfer


def select_above_threshold(confidence: torch.Tensor, threshold: float) -> torch.BoolTensor:
    """Confidence-threshold parallel decoding (Fast-dLLM): every position scoring ≥ ``threshold``, and in each
    row that has a committable position at least its best one — so every pass commits something."""
    transfer = confidence >= threshold
    best = confidence.argmax(dim=-1, keepdim=True)
    has_candidate = torch.isfinite(confidence).any(dim=-1, keepdim=True)
    return transfer | (torch.zeros_like(transfer).scatter(-1, best, True) & has_candidate)


def select_by_factor(confidence: torch.Tensor, factor: float) -> torch.BoolTensor:
    """Fast-dLLM's factor-based parallel decoding (Wu et al., 2025, arXiv 2505.22618, Sec. 3.3, as its
    ``get_transfer_index_dynamic``). Per row, with the committable scores (the finite ones) sorted c₁ ≥ c₂ ≥ … ≥ c_M:
    commit the top n, where n is the first index whose cₙ₊₁ < 1 − factor / (n + 2) (the bound of the (n+1)-th
    token; c₁ is always committed), and n = M when none fails or only the last one does — the authors' code
    commits the last token in that case too."""
    transfer = torch.zeros_like(confidence, dtype=torch.bool)
    available = torch.isfinite(confidence).sum(dim=-1)
    for row in range(confidence.shape[0]):
        count = int(available[row])
        if count == 0:
            continue
        values, index = torch.sort(confidence[row], descending=True)
        values = values[:count]
        bounds = 1.0 - factor / (torch.arange(1, count + 1, device=values.device, dtype=values.dtype) + 1.0)
        bounds[0] = float("-inf")
        failing = (values < bounds).nonzero()
        taken = count if len(failing) == 0 else int(failing[0])
        if taken == count - 1:
            taken = count
        transfer[row, index[:taken]] = True
    return transfer


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
    "gumbel_uniforms",
    "num_transfer_tokens",
    "random_scores",
    "select_above_threshold",
    "select_by_factor",
    "select_top",
    "trim_after_eos",
]
