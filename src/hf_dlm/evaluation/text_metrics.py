"""Quality and diversity of generated text, scored exactly under the oracle language.

Quality: the oracle's negative log-likelihood per word and the generative perplexity exp(NLL) — exact, where the
papers (MDLM, Duo, Di[M]O) use a proxy model (GPT-2, Llama-2) that repetitive text can fool. Diversity: the mean
per-sample unigram entropy in nats (as MDLM and Duo report it) and distinct-n. Every table gets a "data" row: the
same metrics on fresh oracle samples of the same length (:func:`data_reference`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from .oracle import OracleLanguage


@dataclass(frozen=True)
class TextMetrics:
    """Metrics of a batch of word sequences.

    Attributes:
        nll: mean oracle negative log-likelihood per word (nats), over every word of every sequence.
        gen_ppl: generative perplexity ``exp(nll)``.
        entropy: mean over sequences of the entropy of the sequence's own word histogram (nats).
        distinct: ``{n: distinct-n}``, unique n-grams / all n-grams over the whole batch.
        num_sequences, length: the batch's shape.
    """

    nll: float
    gen_ppl: float
    entropy: float
    distinct: dict[int, float]
    num_sequences: int
    length: int

    def as_dict(self) -> dict:
        return asdict(self)


def oracle_nll(oracle: OracleLanguage, word_ids: torch.Tensor, prompt_length: int = 0) -> torch.Tensor:
    """Exact −log p per word of each sequence (float64, shape (num_sequences,)). With ``prompt_length > 0`` only
    the continuation is scored, given the prompt: −log p(y_{>P} | y_{≤P}) / (L − P)."""
    word_ids = torch.as_tensor(word_ids)
    if not 0 <= prompt_length < word_ids.shape[-1]:
        raise ValueError(f"`prompt_length` must lie in [0, {word_ids.shape[-1]}), got {prompt_length}.")
    conditional = oracle.conditional_log_prob(word_ids)
    return -conditional[:, prompt_length:].mean(dim=1)


def unigram_entropy(word_ids: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of each sequence's own unigram distribution, shape (num_sequences,).

    A sequence repeating one word scores 0; L distinct words score log L."""
    word_ids = torch.as_tensor(word_ids)
    if word_ids.dim() == 1:
        word_ids = word_ids.unsqueeze(0)
    values = []
    for row in word_ids:
        counts = torch.unique(row, return_counts=True)[1].double()
        p = counts / counts.sum()
        values.append(float(-(p * p.log()).sum()))
    return torch.tensor(values, dtype=torch.float64)


def distinct_n(word_ids: torch.Tensor, n: int) -> float:
    """Unique n-grams divided by the number of n-grams, pooled over all sequences (Li et al., 2016)."""
    word_ids = torch.as_tensor(word_ids)
    if n < 1:
        raise ValueError(f"`n` must be >= 1, got {n}.")
    if word_ids.shape[-1] < n:
        raise ValueError(f"sequences of length {word_ids.shape[-1]} have no {n}-grams.")
    grams = word_ids.unfold(-1, n, 1).reshape(-1, n)
    return len(torch.unique(grams, dim=0)) / len(grams)


def text_metrics(oracle: OracleLanguage, word_ids: torch.Tensor, prompt_length: int = 0,
                 distinct: tuple[int, ...] = (1, 2, 3)) -> TextMetrics:
    """All text metrics of a batch of word-id sequences (shape (num_sequences, length)).

    ``prompt_length`` excludes a given prompt from every metric: the NLL is that of the continuation given the
    prompt, and diversity is measured on the continuation only.
    """
    word_ids = torch.as_tensor(word_ids)
    if word_ids.dim() != 2:
        raise ValueError(f"`word_ids` must have shape (num_sequences, length), got {tuple(word_ids.shape)}.")
    nll = float(oracle_nll(oracle, word_ids, prompt_length).mean())
    continuation = word_ids[:, prompt_length:]
    return TextMetrics(
        nll=nll, gen_ppl=math.exp(nll), entropy=float(unigram_entropy(continuation).mean()),
        distinct={n: distinct_n(continuation, n) for n in distinct},
        num_sequences=word_ids.shape[0], length=continuation.shape[1],
    )


def data_reference(oracle: OracleLanguage, num_sequences: int, length: int, seed: int = 12345,
                   prompt_length: int = 0) -> TextMetrics:
    """The "data" row: the same metrics on ``num_sequences`` fresh oracle samples of the same length."""
    return text_metrics(oracle, oracle.sample(num_sequences, length, seed=seed), prompt_length=prompt_length)


__all__ = ["TextMetrics", "data_reference", "distinct_n", "oracle_nll", "text_metrics", "unigram_entropy"]
