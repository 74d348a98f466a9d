"""The oracle language: exact likelihood by brute force, entropy rate vs samples and exact bounds, tokenizer."""

import itertools
import math

import pytest
import torch

from hf_dlm.evaluation.oracle import OracleLanguage


@pytest.fixture(scope="module")
def tiny_hmm():
    return OracleLanguage(num_states=3, num_words=26, seed=4, successors=2, words_per_state=2, floor=0.05)


def brute_force_prob(oracle, words):
    """Σ over every hidden-state path of π(s1) Π E(s_t, w_t) Π A(s_t, s_t+1)."""
    total = 0.0
    for path in itertools.product(range(oracle.num_states), repeat=len(words)):
        p = oracle.initial[path[0]].item()
        for t, (s, w) in enumerate(zip(path, words)):
            p *= oracle.emission[s, w].item()
            if t + 1 < len(words):
                p *= oracle.transition[s, path[t + 1]].item()
        total += p
    return total


def test_log_prob_equals_brute_force(tiny_hmm):
    words = tiny_hmm.sample(5, 5, seed=1)
    for row, lp in zip(words, tiny_hmm.log_prob(words)):
        assert lp.item() == pytest.approx(math.log(brute_force_prob(tiny_hmm, row.tolist())), rel=1e-10)


def test_probabilities_sum_to_one_over_all_sequences():
    oracle = OracleLanguage(num_states=2, num_words=25, seed=1, successors=1, words_per_state=2)
    everything = torch.tensor(list(itertools.product(range(25), repeat=2)))
    assert oracle.log_prob(everything).exp().sum().item() == pytest.approx(1.0, rel=1e-10)
    assert (oracle.transition > 0).all() and (oracle.emission > 0).all()  # the floor keeps every path possible


@pytest.mark.slow
def test_entropy_rate_within_exact_bounds():
    """Cover & Thomas Thm 4.5.1: H(Y_n | Y_<n, X_1) <= h <= H(Y_n | Y_<n); both computed by enumeration."""
    oracle = OracleLanguage(num_states=2, num_words=25, seed=2, successors=1, words_per_state=1, floor=0.3)
    n = 4
    seqs = torch.tensor(list(itertools.product(range(25), repeat=n)))
    cond = oracle.conditional_log_prob(seqs)
    p = oracle.log_prob(seqs).exp()
    upper = -(p * cond[:, -1]).sum().item()
    lower = 0.0
    for s1 in range(oracle.num_states):  # condition on the first hidden state
        start = torch.zeros(oracle.num_states, dtype=torch.float64)
        start[s1] = 1.0
        fixed = OracleLanguage(num_states=2, num_words=25, seed=2, successors=1, words_per_state=1, floor=0.3)
        fixed.initial, fixed.log_initial = start, start.log()
        cond1 = fixed.conditional_log_prob(seqs)
        p1 = fixed.log_prob(seqs).exp()
        lower += oracle.initial[s1].item() * -(p1 * cond1[:, -1]).sum().item()
    rate = oracle.entropy_rate()
    assert lower - 4 * rate.stderr <= rate.value <= upper + 4 * rate.stderr
    assert upper - lower < 0.05  # the bounds are tight enough to make this a real check


@pytest.mark.slow
def test_samples_have_the_claimed_entropy_rate():
    oracle = OracleLanguage()
    rate = oracle.entropy_rate()
    words = oracle.sample(100, 600, seed=123)  # fresh samples, a different seed from the estimate
    per_seq = -oracle.conditional_log_prob(words)[:, 100:].mean(dim=1)
    stderr = math.hypot(per_seq.std().item() / math.sqrt(len(per_seq)), rate.stderr)
    assert abs(per_seq.mean().item() - rate.value) < 4 * stderr
    assert 2.0 < rate.value < 4.0


def test_deterministic_and_readable():
    a, b = OracleLanguage(seed=3), OracleLanguage(seed=3)
    assert a.words == b.words and torch.equal(a.transition, b.transition)
    assert torch.equal(a.sample(4, 8, seed=1), b.sample(4, 8, seed=1))
    assert len(set(a.words)) == 256 and "the" in a.words and "." in a.words
    assert all(w.isalpha() and len(w) <= 12 for w in a.words[24:])


def test_tokenizer_round_trip():
    oracle = OracleLanguage()
    tok = oracle.tokenizer()
    words = oracle.sample(3, 10, seed=5)
    texts = oracle.decode(words)
    assert torch.equal(torch.tensor(tok(texts)["input_ids"]), words)
    assert tok.decode(words[0]) == " " + texts[0]
    assert tok.decode(words[0, 4:]).startswith(" ")  # continuations keep their separating space
    assert (tok.pad_token_id, tok.mask_token_id, tok.eos_token_id, tok.bos_token_id) == (256, 257, 258, 259)
    assert len(tok) == 261 and tok.pad_token_id != tok.mask_token_id


def test_bad_ids_are_rejected():
    oracle = OracleLanguage()
    with pytest.raises(ValueError, match="outside"):
        oracle.log_prob(torch.tensor([[1, 2, 257]]))
    with pytest.raises(ValueError, match="num_words"):
        OracleLanguage(num_words=10)
