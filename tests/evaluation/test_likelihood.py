"""The Monte-Carlo ELBO agrees with the exact ELBO obtained by enumerating every mask pattern."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from hf_dlm.evaluation import elbo_log_likelihood
from hf_dlm.evaluation.likelihood import stratified_mask_counts


@torch.no_grad()
def exact_elbo(model, prompt, target, mask_id=95):
    """E_{l ~ U{1..L}} E_{|M| = l} [(L / l) Σ_{i∈M} log p(target_i | prompt, target with M masked)], enumerated."""
    L = len(target)
    total = 0.0
    for l in range(1, L + 1):
        subsets = list(itertools.combinations(range(L), l))
        batch = torch.cat([prompt, target]).repeat(len(subsets), 1)
        for row, subset in enumerate(subsets):
            batch[row, [len(prompt) + i for i in subset]] = mask_id
        logp = F.log_softmax(model(batch).logits.double(), -1)
        inner = 0.0
        for row, subset in enumerate(subsets):
            inner += sum(logp[row, len(prompt) + i, target[i]].item() for i in subset) * L / l
        total += inner / len(subsets) / L
    return total


def test_monte_carlo_elbo_matches_enumeration(tiny_llada):
    prompt, target = torch.tensor([3, 17, 42]), torch.tensor([5, 8, 13, 21, 34])
    exact = exact_elbo(tiny_llada, prompt, target)
    estimate = elbo_log_likelihood(tiny_llada, prompt, target, mc_samples=512, batch_size=64,
                                   generator=torch.Generator().manual_seed(0))
    assert abs(estimate.log_likelihood.item() - exact) < 4 * estimate.stderr.item() + 1e-6
    assert 0 < estimate.stderr.item() < 0.5


def test_batched_pairs_and_reproducibility(tiny_llada):
    prompts, targets = torch.randint(0, 90, (2, 3)), torch.randint(0, 90, (2, 4))
    a = elbo_log_likelihood(tiny_llada, prompts, targets, mc_samples=32, batch_size=16,
                            generator=torch.Generator().manual_seed(1))
    b = elbo_log_likelihood(tiny_llada, prompts, targets, mc_samples=32, batch_size=16,
                            generator=torch.Generator().manual_seed(1))
    assert a.log_likelihood.shape == (2,) and torch.equal(a.log_likelihood, b.log_likelihood)
    assert (a.log_likelihood < 0).all()


def test_stratified_counts_cover_one_to_l():
    counts = stratified_mask_counts(10, 10, torch.Generator().manual_seed(3))
    assert sorted(counts.tolist()) == list(range(1, 11))
    counts = stratified_mask_counts(7, 32, torch.Generator().manual_seed(0))
    assert counts.min() >= 1 and counts.max() <= 7


def test_every_sample_is_exact_for_a_context_free_model():
    """A model that ignores its context and a target of one repeated token: every sample (L/l)·l·log p(t) equals
    the true log-likelihood L·log p(t), so the estimate is exact and its standard error 0."""

    class Unigram(torch.nn.Module):
        predicts_next_token = False

        def __init__(self):
            super().__init__()
            self.config = type("C", (), {"mask_token_id": 9})()
            self.table = torch.nn.Parameter(torch.randn(10))

        def forward(self, input_ids, attention_mask=None):
            return type("O", (), {"logits": self.table.expand(*input_ids.shape, 10)})()

    model = Unigram()
    target = torch.tensor([2, 2, 2, 2])
    estimate = elbo_log_likelihood(model, torch.tensor([], dtype=torch.long), target, mc_samples=64, batch_size=8)
    exact = F.log_softmax(model.table.double(), -1)[target].sum().item()
    assert estimate.log_likelihood.item() == pytest.approx(exact, rel=1e-5)
    assert estimate.stderr.item() == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("kwargs, match", [(dict(mc_samples=30, batch_size=16), "multiple"),
                                           (dict(mc_samples=0), "multiple")])
def test_bad_arguments(tiny_llada, kwargs, match):
    with pytest.raises(ValueError, match=match):
        elbo_log_likelihood(tiny_llada, torch.tensor([1]), torch.tensor([2, 3]), **kwargs)
    with pytest.raises(ValueError, match="empty"):
        elbo_log_likelihood(tiny_llada, torch.tensor([1]), torch.tensor([], dtype=torch.long))
    assert math.isfinite(elbo_log_likelihood(tiny_llada, torch.tensor([1]), torch.tensor([2]), mc_samples=2,
                                             batch_size=2).log_likelihood.item())


def test_heldout_nll_is_the_per_token_negative_elbo(tiny_llada):
    from hf_dlm.evaluation import heldout_nll

    seqs = torch.randint(0, 90, (3, 6))
    est = heldout_nll(tiny_llada, seqs, mc_samples=16, batch_size=16, generator=torch.Generator().manual_seed(0))
    per_pair = elbo_log_likelihood(tiny_llada, seqs[:, :0], seqs, mc_samples=16, batch_size=16,
                                   generator=torch.Generator().manual_seed(0))
    assert est.nll == pytest.approx((-per_pair.log_likelihood / 6).mean().item())
    assert est.nll > 0 and est.stderr > 0
