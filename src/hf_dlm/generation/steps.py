"""One denoising pass of each sampler family: which masked positions to commit, and with which tokens.

LLaDA family (Nie et al., 2025, arXiv 2502.09992, Algorithms 4–5, as its ``generate.py``) and Dream family
(Ye et al., 2025, arXiv 2508.15487, as its ``_sample``). Both work only on the positions that can be committed
(``candidates``: masks left of the current block's end) — the random draws are still made in the authors' shapes
and order, so a seed gives the authors' tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .configuration import MaskedDiffusionGenerationConfig
from .dream_sampling import dream_origin_reveal, dream_sample_tokens, dream_transfer_count
from .sampling import (add_gumbel_noise, confidence_scores, filter_logits, gumbel_uniforms, random_scores,
                       select_above_threshold, select_by_factor, select_top)


@dataclass
class ProposalMasks:
    """What may be proposed, per candidate position: ids never proposed anywhere (``suppressed``), ids from
    ``vocab_limit`` on (padded embedding rows), and EOS ids at positions before ``min_new_tokens``."""

    suppressed: list[int]
    vocab_limit: int | None
    eos_ids: list[int]
    early_end: int  # canvas positions < early_end may not hold EOS (prompt + min_new_tokens)

    def apply(self, logits: torch.Tensor, positions: torch.LongTensor) -> torch.Tensor:
        """``logits`` (..., vocab) at canvas ``positions`` (broadcastable to ``logits.shape[:-1]``), masked."""
        if not self.suppressed and self.vocab_limit is None and not (self.eos_ids and self.early_end > 0):
            return logits
        logits = logits.clone()
        if self.suppressed:
            logits[..., self.suppressed] = float("-inf")
        if self.vocab_limit is not None:
            logits[..., self.vocab_limit:] = float("-inf")
        if self.eos_ids and self.early_end > 0:
            early = (positions < self.early_end).expand(logits.shape[:-1])
            eos = logits[..., self.eos_ids]
            eos[early] = float("-inf")
            logits[..., self.eos_ids] = eos
        return logits


def _refuse_nan(logits: torch.Tensor) -> None:
    """NaN or +inf logits never become tokens (−inf is a legitimate "never propose")."""
    if bool(torch.isnan(logits).any()) or bool(torch.isposinf(logits).any()):
        raise ValueError("The denoiser returned NaN or +inf logits at positions to be decoded: refusing to turn them "
                         "into tokens (check the weights and the inputs).")


def _check_covered(columns: torch.LongTensor, offset: int, rows: int) -> None:
    """Every candidate column lies in the logits' window ``[offset, offset + rows)`` (a library invariant)."""
    if len(columns) and (int(columns[0]) < offset or int(columns[-1]) >= offset + rows):
        raise RuntimeError(f"logits cover canvas positions [{offset}, {offset + rows}) but positions "
                           f"{int(columns[0])}…{int(columns[-1])} are to be decoded.")


def llada_step(logits: torch.Tensor, x: torch.LongTensor, candidates: torch.BoolTensor, counts: torch.LongTensor | None,
               config: MaskedDiffusionGenerationConfig, masks: ProposalMasks, generator: torch.Generator | None,
               offset: int = 0) -> tuple[torch.BoolTensor, torch.LongTensor]:
    """LLaDA's step: Gumbel-max proposals on the (filtered) raw logits, scores by ``config.remasking``, then the
    ``counts`` best per row (or every score ≥ ``threshold``). Returns ``(transfer, proposals)`` over the canvas.
    ``logits`` hold canvas positions ``offset, offset + 1, …`` (the whole canvas by default) and must cover every
    candidate.

    Only the columns holding a candidate are soft-maxed. The float64 Gumbel uniforms (T > 0) are drawn over the
    whole (batch, length, vocab) canvas and the ``random`` scores over (batch, length), as LLaDA draws them, unless
    ``block_noise`` is set.
    """
    (batch, length), vocab = x.shape, logits.shape[-1]
    temperature = config.sampling_temperature
    columns = candidates.any(dim=0).nonzero().squeeze(1)
    _check_covered(columns, offset, logits.shape[1])
    uniforms = None
    if temperature > 0:
        if config.block_noise:
            uniforms = gumbel_uniforms((batch, len(columns), vocab), logits.device, generator)
        else:
            uniforms = gumbel_uniforms((batch, length, vocab), logits.device, generator)[:, columns]
    random = random_scores(batch, length, logits.device, generator) if config.remasking == "random" else None
    sub = logits[:, columns - offset]
    _refuse_nan(sub)
    sub = masks.apply(sub, columns)
    sub = filter_logits(sub, config.top_k, config.top_p, temperature)
    proposal = torch.argmax(add_gumbel_noise(sub, temperature, uniforms=uniforms), dim=-1)
    scores = random[:, columns] if random is not None else confidence_scores(sub, proposal, config.remasking)
    confidence = torch.full((batch, length), float("-inf"), dtype=scores.dtype, device=logits.device)
    confidence[:, columns] = scores
    confidence = confidence.masked_fill(~candidates, float("-inf"))
    if config.threshold is not None:
        transfer = select_above_threshold(confidence, config.threshold)
    elif config.factor is not None:
        transfer = select_by_factor(confidence, config.factor)
    else:
        transfer = select_top(confidence, counts, config.alg_temp, generator)
    proposals = x.clone()
    proposals[:, columns] = proposal
    return transfer & candidates, proposals


def dream_step(logits: torch.Tensor, x: torch.LongTensor, candidates: torch.BoolTensor, timesteps: torch.Tensor,
               step: int, steps: int, config: MaskedDiffusionGenerationConfig, masks: ProposalMasks,
               generator: torch.Generator | None, offset: int = 0) -> tuple[torch.BoolTensor, torch.LongTensor]:
    """Dream's step over the masked positions (row-major, as ``logits[mask_index]``): ``origin`` reveals each with
    probability ``1 − s/t``; the confidence rules commit the ``⌊M·(1 − s/t)⌋`` best (all at the last step), or
    every score ≥ ``threshold``. Returns ``(transfer, proposals)`` over the canvas. ``logits`` hold canvas positions
    ``offset, offset + 1, …`` (the whole canvas by default) and must cover every candidate."""
    temperature = config.sampling_temperature
    positions = candidates.nonzero()[:, 1]
    _check_covered(candidates.any(dim=0).nonzero().squeeze(1), offset, logits.shape[1])
    mask_logits = logits[candidates[:, offset:offset + logits.shape[1]]]
    _refuse_nan(mask_logits)
    mask_logits = masks.apply(mask_logits, positions)
    proposals = x.clone()
    if config.remasking == "origin":
        reveal = dream_origin_reveal(len(mask_logits), timesteps, step, steps, logits.device, generator)
        x0 = torch.full((len(mask_logits),), config.mask_token_id, dtype=torch.long, device=x.device)
        x0[reveal] = dream_sample_tokens(mask_logits[reveal], temperature, config.top_p, config.top_k,
                                         generator=generator)[1]
        proposals[candidates] = x0
        return candidates & (proposals != config.mask_token_id), proposals
    confidence_masked, x0 = dream_sample_tokens(mask_logits, temperature, config.top_p, config.top_k,
                                                config.remasking, generator)
    proposals[candidates] = x0
    confidence = torch.full(x.shape, float("-inf"), dtype=confidence_masked.dtype, device=x.device)
    confidence[candidates] = confidence_masked
    if config.threshold is not None:
        return select_above_threshold(confidence, config.threshold) & candidates, proposals
    if config.factor is not None:
        return select_by_factor(confidence, config.factor) & candidates, proposals
    k = dream_transfer_count(candidates, timesteps, step, steps)
    transfer = torch.zeros_like(candidates)
    if k <= 0:
        return transfer, proposals
    if bool((candidates.sum(dim=1) >= k).all()):  # Dream's batched selection
        if config.alg_temp:
            index = torch.multinomial(torch.softmax(confidence / config.alg_temp, dim=-1), num_samples=k,
                                      generator=generator)
        else:
            index = torch.topk(confidence, k).indices
        transfer.scatter_(1, index, True)
    else:  # a row with fewer masks than k (a committed mask id): Dream would re-mask tokens; commit them all
        transfer = select_top(confidence, torch.full((x.shape[0],), k), config.alg_temp, generator)
    return transfer & candidates, proposals


__all__ = ["ProposalMasks", "dream_step", "llada_step"]
