"""Datasets and metrics of the oracle-language tasks, built in-process from hf-dlm's oracle language (a hidden Markov
model whose exact likelihood is known; ``hf_dlm.evaluation.OracleLanguage``, seed 0 — the language ``make demo`` and
the reference models train on). Nothing is downloaded; the same items come out on every machine.

* ``oracle_mc``: a context of 12 words, four 4-word continuations — the one the oracle drew after the context and
  three drawn after other contexts; the answer is the drawn one (the exact oracle is right on ~70 % of items).
* ``oracle_mc_ranked``: the same items, the answer being the choice the exact oracle ranks highest (the oracle scores
  1.0; a model's accuracy is its agreement with the oracle's ranking).
* ``oracle_ppl``: 48-word documents for perplexity (``loglikelihood_rolling``).
* ``oracle_continuation``: continue a 12-word context up to 8 words or the first "."; scored by the exact oracle's
  negative log-likelihood per word of the continuation given the context.
"""

from __future__ import annotations

import functools
import math

import datasets
import torch

from hf_dlm.evaluation.oracle import OracleLanguage

NUM_ITEMS = 100
CONTEXT_WORDS, ANSWER_WORDS, NUM_CHOICES, DOCUMENT_WORDS = 12, 4, 4, 48


@functools.lru_cache(maxsize=1)
def oracle() -> OracleLanguage:
    return OracleLanguage(seed=0)


@functools.lru_cache(maxsize=1)
def _mc_items() -> list[dict]:
    language = oracle()
    words = language.sample(NUM_ITEMS * NUM_CHOICES, CONTEXT_WORDS + ANSWER_WORDS, seed=2026)
    generator = torch.Generator().manual_seed(7)
    items = []
    for i in range(NUM_ITEMS):
        rows = words[i * NUM_CHOICES:(i + 1) * NUM_CHOICES]
        context = rows[0, :CONTEXT_WORDS]
        answers = rows[:, CONTEXT_WORDS:]  # row 0 follows this context; rows 1-3 followed other contexts
        order = torch.randperm(NUM_CHOICES, generator=generator)
        answers = answers[order]
        gold = int((order == 0).nonzero())
        joint = language.log_prob(torch.cat([context.expand(NUM_CHOICES, -1), answers], dim=1))
        items.append({
            "context": language.decode(context)[0],
            "choices": language.decode(answers),
            "gold": gold,
            "oracle_gold": int(joint.argmax()),
            "oracle_log_probs": (joint - language.log_prob(context)[0]).tolist(),
        })
    return items


def oracle_mc(**kwargs) -> dict[str, datasets.Dataset]:
    """The multiple-choice items (``kwargs``: the harness's metadata, unused)."""
    return {"test": datasets.Dataset.from_list(_mc_items())}


def oracle_documents(**kwargs) -> dict[str, datasets.Dataset]:
    language = oracle()
    words = language.sample(NUM_ITEMS, DOCUMENT_WORDS, seed=2027)
    text, log_probs = language.decode(words), language.log_prob(words).tolist()
    return {"test": datasets.Dataset.from_list([{"text": t, "oracle_log_prob": lp}
                                                for t, lp in zip(text, log_probs)])}


def oracle_contexts(**kwargs) -> dict[str, datasets.Dataset]:
    language = oracle()
    contexts = language.decode(language.sample(NUM_ITEMS, CONTEXT_WORDS, seed=2028))
    return {"test": datasets.Dataset.from_list([{"context": c} for c in contexts])}


def ppl_results(doc: dict, results: list) -> dict:
    """The harness's perplexity metrics (words are the oracle's words; bytes of the text)."""
    (log_likelihood,) = results
    words, size = len(doc["text"].split()), len(doc["text"].encode("utf-8"))
    return {"word_perplexity": (log_likelihood, words), "byte_perplexity": (log_likelihood, size),
            "bits_per_byte": (log_likelihood, size)}


def continuation_results(doc: dict, results: list) -> dict:
    """Exact oracle NLL per word of the generated continuation given the context.

    The words before the first word the oracle does not know are scored (``valid`` is 0 when there is such a word);
    an empty continuation (the model's first word was the stop ".") scores the word ".". ``words``: words scored."""
    (text,) = results
    language = oracle()
    index = {word: i for i, word in enumerate(language.words)}
    generated = text.split() or ["."]
    known = []
    for word in generated:
        if word not in index:
            break
        known.append(index[word])
    valid = float(len(known) == len(generated))
    if not known:
        return {"oracle_nll": math.nan, "valid": valid, "words": 0.0}
    context = [index[w] for w in doc["context"].split()]
    conditional = language.conditional_log_prob(torch.tensor([context + known]))[0, len(context):]
    return {"oracle_nll": float(-conditional.mean()), "valid": valid, "words": float(len(known))}


def nanmean(values: list[float]) -> float:
    """Mean over the items that have a value (continuations with at least one known word)."""
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan
