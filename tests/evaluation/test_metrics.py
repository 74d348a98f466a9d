"""Text and image metrics against hand-computed values."""

import itertools
import math

import pytest
import torch

from hf_dlm.evaluation.digits import (DigitsSplit, caption, class_consistency, classifier_features, frechet_distance,
                                      image_metrics, load_digits_task, precision_recall)
from hf_dlm.evaluation.oracle import OracleLanguage
from hf_dlm.evaluation.text_metrics import data_reference, distinct_n, oracle_nll, text_metrics, unigram_entropy


def test_exact_nll_on_a_three_state_hmm_against_enumeration():
    oracle = OracleLanguage(num_states=3, num_words=25, seed=2, successors=2, words_per_state=3)
    words = oracle.sample(4, 4, seed=0)
    for row, nll in zip(words, oracle_nll(oracle, words)):
        total = 0.0
        for path in itertools.product(range(3), repeat=4):
            p = oracle.initial[path[0]].item()
            for t in range(4):
                p *= oracle.emission[path[t], row[t]].item()
                if t < 3:
                    p *= oracle.transition[path[t], path[t + 1]].item()
            total += p
        assert nll.item() == pytest.approx(-math.log(total) / 4, rel=1e-10)
    metrics = text_metrics(oracle, words)
    assert metrics.gen_ppl == pytest.approx(math.exp(metrics.nll))
    # continuation scoring: -log p(y3, y4 | y1, y2) / 2
    cont = oracle_nll(oracle, words, prompt_length=2)
    expected = -(oracle.log_prob(words) - oracle.log_prob(words[:, :2])) / 2
    torch.testing.assert_close(cont, expected)


def test_entropy_and_distinct_of_known_strings():
    assert unigram_entropy(torch.tensor([[5, 5, 5, 5]])).item() == 0.0
    assert unigram_entropy(torch.tensor([[1, 2, 3, 4]])).item() == pytest.approx(math.log(4))
    assert unigram_entropy(torch.tensor([[1, 1, 2, 2]])).item() == pytest.approx(math.log(2))
    # [1, 1, 1, 2]: -(3/4 log 3/4 + 1/4 log 1/4)
    assert unigram_entropy(torch.tensor([[1, 1, 1, 2]])).item() == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    seqs = torch.tensor([[1, 2, 1, 2], [1, 2, 3, 4]])
    assert distinct_n(seqs, 1) == pytest.approx(4 / 8)
    assert distinct_n(seqs, 2) == pytest.approx(4 / 6)  # 12, 21, 12 | 12, 23, 34 -> {12, 21, 23, 34}
    with pytest.raises(ValueError, match="2-grams"):
        distinct_n(torch.tensor([[1]]), 2)


def test_data_reference_row():
    oracle = OracleLanguage()
    row = data_reference(oracle, 200, 32)
    assert row.num_sequences == 200 and row.length == 32
    assert 2.0 < row.nll < 4.0 and 2.5 < row.entropy < math.log(32)
    assert row.distinct[1] < row.distinct[2] < row.distinct[3] <= 1.0


def test_digits_task_split_and_captions():
    train, held = load_digits_task()
    assert (len(train), len(held)) == (1347, 450)
    assert train.images.shape[1] == 64 and int(train.images.max()) == 16 and int(train.images.min()) == 0
    assert caption(7) == "a handwritten seven" and caption(7, 1) == "the digit 7"
    assert set(held.labels.tolist()) == set(range(10))
    assert torch.equal(load_digits_task()[0].images, train.images)  # fixed split


@pytest.mark.slow
def test_classifier_accuracy_and_real_images_score_well():
    train, held = load_digits_task()
    assert class_consistency(held.images, held.labels) >= 0.95
    half_a = DigitsSplit(held.images[::2], held.labels[::2], ())
    half_b = DigitsSplit(held.images[1::2], held.labels[1::2], ())
    real = image_metrics(half_a.images, half_a.labels, reference=half_b)
    noise = image_metrics(torch.randint(0, 17, (225, 64), generator=torch.Generator().manual_seed(0)),
                          torch.zeros(225, dtype=torch.long), reference=half_b)
    assert real.class_consistency >= 0.95
    assert real.fd_digits < 0.05 * noise.fd_digits  # near 0 on the scale of a useless generator
    assert real.precision > 0.8 and real.recall > 0.8 and noise.recall < 0.5


def test_frechet_distance_by_hand():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 3, generator=gen, dtype=torch.float64)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    shift = torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64)
    assert frechet_distance(x, x + shift) == pytest.approx(5.0, rel=1e-9)  # same covariance: |shift|^2
    # scaling by 2: |mu - 2 mu|^2 + Tr(S + 4S - 2 * 2S) = |mu|^2 + Tr(S)
    expected = (x.mean(0).pow(2).sum() + torch.cov(x.T).trace()).item()
    assert frechet_distance(x, 2 * x) == pytest.approx(expected, rel=1e-9)
    feats = classifier_features(load_digits_task()[1].images)
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-8)


def test_precision_recall_by_hand():
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(1))
    assert precision_recall(x, x) == (1.0, 1.0)
    far = x + 100.0
    assert precision_recall(x, far) == (0.0, 0.0)
    # generated set = the real set's first half: every generated sample is real (precision 1); real samples of
    # the second half are covered only if they fall inside a first-half ball
    p, r = precision_recall(x, x[:25])
    assert p == 1.0 and 0.5 <= r <= 1.0


def test_bad_images_rejected():
    with pytest.raises(ValueError, match="grey levels"):
        class_consistency(torch.full((2, 64), 17), torch.zeros(2))
    with pytest.raises(ValueError, match="shape"):
        class_consistency(torch.zeros(2, 63, dtype=torch.long), torch.zeros(2))
