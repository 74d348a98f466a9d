"""The oracle language: a hidden Markov model over an English-looking vocabulary whose exact likelihood is known.

Every benchmark of this project trains on its samples and scores generated text with :meth:`OracleLanguage.log_prob`,
so quality is measured exactly instead of through a proxy model. Transitions and emissions are sparse (each state
has a few likely successors and a dozen likely words) and then mixed with a small uniform floor, so every sequence
has a finite likelihood (a sample that used a floor-only transition is merely improbable, not impossible).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

FUNCTION_WORDS = (
    ".", ",", "the", "a", "and", "of", "to", "in", "is", "was", "on", "with",
    "it", "he", "she", "they", "we", "that", "this", "by", "for", "at", "from", "not",
)
_ONSETS = ("b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
           "br", "dr", "gr", "kl", "pl", "sk", "st", "tr", "sh", "ch")
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "i", "o", "ai", "ou", "ee")
_CODAS = ("", "", "", "n", "r", "s", "l", "m", "t", "nd", "st")
SPECIAL_TOKENS = ("<pad>", "<mask>", "<eos>", "<bos>", "<unk>")
_SPACE = "\u2581"  # sentencepiece's word-boundary marker


def _made_up_words(count: int, generator: torch.Generator, taken: set[str]) -> list[str]:
    """``count`` distinct pronounceable words of 1–2 consonant-vowel syllables and an optional coda."""
    words: list[str] = []
    seen = set(taken)

    def pick(options: tuple[str, ...]) -> str:
        return options[int(torch.randint(len(options), (1,), generator=generator))]

    while len(words) < count:
        syllables = 1 + int(torch.rand((), generator=generator) < 0.6)
        word = "".join(pick(_ONSETS) + pick(_VOWELS) for _ in range(syllables)) + pick(_CODAS)
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def _sparse_rows(rows: int, support_pool: list[torch.Tensor], support: int, floor: float, size: int,
                 generator: torch.Generator) -> torch.Tensor:
    """Row-stochastic matrix: each row puts (1 − floor) on ``support`` random columns from its pool with random
    (softmax of standard normal) weights, and ``floor`` uniformly on all ``size`` columns."""
    matrix = torch.full((rows, size), floor / size, dtype=torch.float64)
    for r in range(rows):
        pool = support_pool[r]
        chosen = pool[torch.randperm(len(pool), generator=generator)[:support]]
        weights = torch.randn(len(chosen), generator=generator, dtype=torch.float64).mul(1.5).softmax(0)
        matrix[r, chosen] += (1.0 - floor) * weights
    return matrix


@dataclass(frozen=True)
class EntropyRate:
    """Entropy rate in nats per word, with its Monte-Carlo standard error."""

    value: float
    stderr: float


class OracleLanguage:
    """A hidden Markov model over words with exact likelihoods.

    Args:
        num_states: hidden states (a quarter of them emit function words such as "the", "." — the rest emit
            made-up content words — so samples read like simple sentences).
        num_words: vocabulary size (≥ 24 + 1: the function words plus at least one made-up word).
        seed: everything (words, transitions, emissions) is a deterministic function of the seed.
        successors: likely next states per state; words_per_state: likely words per state.
        floor: probability mass spread uniformly over all states / words (keeps every probability > 0).
    """

    def __init__(self, num_states: int = 32, num_words: int = 256, seed: int = 0, successors: int = 4,
                 words_per_state: int = 12, floor: float = 0.01) -> None:
        if num_states < 1:
            raise ValueError(f"`num_states` must be >= 1, got {num_states}.")
        if num_words <= len(FUNCTION_WORDS):
            raise ValueError(f"`num_words` must be > {len(FUNCTION_WORDS)}, got {num_words}.")
        if not 0 < floor < 1:
            raise ValueError(f"`floor` must lie in (0, 1), got {floor}.")
        if not 1 <= successors <= num_states:
            raise ValueError(f"`successors` must lie in [1, num_states={num_states}], got {successors}.")
        self.num_states, self.num_words, self.seed, self.floor = num_states, num_words, seed, floor
        generator = torch.Generator().manual_seed(seed)
        self.words: list[str] = list(FUNCTION_WORDS) + _made_up_words(
            num_words - len(FUNCTION_WORDS), generator, set(FUNCTION_WORDS) | set(SPECIAL_TOKENS))
        function_ids = torch.arange(len(FUNCTION_WORDS))
        content_ids = torch.arange(len(FUNCTION_WORDS), num_words)
        emits_function = [s % 4 == 0 for s in range(num_states)]
        all_states = torch.arange(num_states)
        self.transition = _sparse_rows(num_states, [all_states] * num_states, successors, floor, num_states, generator)
        pools = [function_ids if f else content_ids for f in emits_function]
        self.emission = _sparse_rows(num_states, pools, words_per_state, floor, num_words, generator)
        self.initial = self._stationary(self.transition)
        self.log_initial, self.log_transition, self.log_emission = (
            self.initial.log(), self.transition.log(), self.emission.log())

    @staticmethod
    def _stationary(transition: torch.Tensor) -> torch.Tensor:
        """Stationary distribution of the state chain (left eigenvector for eigenvalue 1), so samples of any
        length are windows of one stationary process."""
        pi = torch.full((transition.shape[0],), 1.0 / transition.shape[0], dtype=torch.float64)
        for _ in range(10_000):
            nxt = pi @ transition
            if torch.allclose(nxt, pi, atol=1e-15, rtol=0):
                break
            pi = nxt
        return nxt / nxt.sum()

    # ------------------------------------------------------------------ sampling and scoring
    def sample(self, num_sequences: int, seq_len: int, seed: int = 0) -> torch.LongTensor:
        """Draw ``num_sequences`` word-id sequences of length ``seq_len`` (shape (num_sequences, seq_len))."""
        if num_sequences < 1 or seq_len < 1:
            raise ValueError(f"`num_sequences` and `seq_len` must be >= 1, got {num_sequences}, {seq_len}.")
        generator = torch.Generator().manual_seed(seed)
        words = torch.empty(num_sequences, seq_len, dtype=torch.long)
        state = torch.multinomial(self.initial.expand(num_sequences, -1), 1, generator=generator).squeeze(1)
        for t in range(seq_len):
            words[:, t] = torch.multinomial(self.emission[state], 1, generator=generator).squeeze(1)
            state = torch.multinomial(self.transition[state], 1, generator=generator).squeeze(1)
        return words

    def _check_ids(self, word_ids: torch.Tensor) -> torch.LongTensor:
        word_ids = torch.as_tensor(word_ids, dtype=torch.long)
        if word_ids.dim() == 1:
            word_ids = word_ids.unsqueeze(0)
        if word_ids.dim() != 2 or word_ids.shape[1] == 0:
            raise ValueError(f"`word_ids` must have shape (num_sequences, length >= 1), got {tuple(word_ids.shape)}.")
        bad = (word_ids < 0) | (word_ids >= self.num_words)
        if bad.any():
            raise ValueError(f"`word_ids` holds ids outside [0, {self.num_words}): "
                             f"{word_ids[bad].unique()[:10].tolist()} (special tokens cannot be scored).")
        return word_ids

    def _filter(self, word_ids: torch.LongTensor) -> torch.Tensor:
        """Forward algorithm in log space: log p(y_1..t) for every prefix, shape (num_sequences, length)."""
        alpha = self.log_initial + self.log_emission[:, word_ids[:, 0]].T
        prefix = [torch.logsumexp(alpha, dim=-1)]
        for t in range(1, word_ids.shape[1]):
            alpha = torch.logsumexp(alpha.unsqueeze(-1) + self.log_transition, dim=1)
            alpha = alpha + self.log_emission[:, word_ids[:, t]].T
            prefix.append(torch.logsumexp(alpha, dim=-1))
        return torch.stack(prefix, dim=1)

    def log_prob(self, word_ids: torch.Tensor) -> torch.Tensor:
        """Exact log-likelihood (nats) of each sequence, shape (num_sequences,), float64."""
        return self._filter(self._check_ids(word_ids))[:, -1]

    def conditional_log_prob(self, word_ids: torch.Tensor) -> torch.Tensor:
        """log p(y_t | y_<t) for every position, shape (num_sequences, length), float64."""
        prefix = self._filter(self._check_ids(word_ids))
        return torch.cat([prefix[:, :1], prefix[:, 1:] - prefix[:, :-1]], dim=1)

    @functools.lru_cache(maxsize=4)  # noqa: B019 - instances are few and long-lived
    def entropy_rate(self, num_chains: int = 64, length: int = 2048, burn_in: int = 256,
                     seed: int = 1_000_003) -> EntropyRate:
        """Entropy rate h = lim H(Y_t | Y_<t) in nats per word.

        The entropy rate of a hidden Markov process has no closed form; by the Shannon–McMillan–Breiman theorem
        the mean of −log p(y_t | y_<t) over a long stationary trajectory converges to it. This averages the
        positions after ``burn_in`` (where the conditional entropy has converged) of ``num_chains`` independent
        chains; the standard error comes from the spread of the per-chain means.
        """
        words = self.sample(num_chains, length, seed=seed)
        per_chain = -self.conditional_log_prob(words)[:, burn_in:].mean(dim=1)
        return EntropyRate(value=float(per_chain.mean()),
                           stderr=float(per_chain.std(unbiased=True) / math.sqrt(num_chains)))

    # ------------------------------------------------------------------ text
    @property
    def special_token_ids(self) -> dict[str, int]:
        return {token: self.num_words + i for i, token in enumerate(SPECIAL_TOKENS)}

    def decode(self, word_ids: torch.Tensor) -> list[str]:
        """Word ids to space-separated text, one string per sequence."""
        word_ids = self._check_ids(word_ids)
        return [" ".join(self.words[i] for i in row.tolist()) for row in word_ids]

    def tokenizer(self, model_max_length: int = 512):
        """A word-level ``PreTrainedTokenizerFast`` built in-process: word *i* has token id *i*, then the special
        tokens ``<pad> <mask> <eos> <bos> <unk>`` (ids ``num_words`` … ``num_words + 4``). Decoded text starts with
        a space (each word token carries the space before it)."""
        vocab = {_SPACE + word: i for i, word in enumerate(self.words)}
        vocab.update(self.special_token_ids)
        backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
        # every word carries its leading space (as GPT-2's byte-level tokens do), so decoding only the new tokens
        # of a continuation — what pipeline("text-generation") does — keeps the space between prompt and answer
        backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement=_SPACE, prepend_scheme="always", split=True)
        backend.decoder = decoders.Replace(_SPACE, " ")
        # special tokens swallow the space before them ("the <mask> of" is three tokens)
        special = {name: AddedToken(token, lstrip=True, special=True, normalized=False)
                   for name, token in zip(("pad_token", "mask_token", "eos_token", "bos_token", "unk_token"),
                                          SPECIAL_TOKENS)}
        return PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=model_max_length,
                                       clean_up_tokenization_spaces=False, **special)


__all__ = ["EntropyRate", "FUNCTION_WORDS", "OracleLanguage", "SPECIAL_TOKENS"]
