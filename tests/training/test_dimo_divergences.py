"""Di[M]O's token-level divergence gradients against the seed's closed forms and against autograd."""

import math

import pytest
import torch

from hf_dlm.training.dimo import DIVERGENCES, divergence_f, divergence_gradient, surrogate_loss, token_divergence


def _case(seed: int = 0, batch: int = 3, length: int = 5, vocab: int = 7):
    gen = torch.Generator().manual_seed(seed)
    teacher = torch.randn(batch, length, vocab, generator=gen, dtype=torch.float64) * 2
    student = torch.randn(batch, length, vocab, generator=gen, dtype=torch.float64) * 2
    masked = torch.rand(batch, length, generator=gen) < 0.5
    masked[:, 0] = True
    return teacher, student, masked


def test_fkl_and_rkl_closed_forms_by_hand():
    teacher, student, _ = _case()
    p, q = teacher.softmax(-1), student.softmax(-1)
    torch.testing.assert_close(divergence_gradient(teacher, student, "fkl"), (q - p).float())
    rkl = (q * (q.log() - p.log())).sum(-1, keepdim=True)
    torch.testing.assert_close(divergence_gradient(teacher, student, "rkl"), (q * (q.log() - p.log() - rkl)).float())


def test_jeffreys_interpolates_fkl_and_rkl():
    teacher, student, _ = _case(1)
    fkl, rkl = divergence_gradient(teacher, student, "fkl"), divergence_gradient(teacher, student, "rkl")
    torch.testing.assert_close(divergence_gradient(teacher, student, "jeffreys", beta=0.0), fkl)
    torch.testing.assert_close(divergence_gradient(teacher, student, "jeffreys", beta=1.0), rkl)
    torch.testing.assert_close(divergence_gradient(teacher, student, "jeffreys", beta=0.3), 0.7 * fkl + 0.3 * rkl)


@pytest.mark.parametrize("name", DIVERGENCES)
def test_general_f_formula_matches_each_named_closed_form(name):
    teacher, student, _ = _case(2)
    named = divergence_gradient(teacher, student, name, beta=0.25)
    general = divergence_gradient(teacher, student, divergence_f(name, beta=0.25), beta=0.25)
    torch.testing.assert_close(general, named, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("divergence", [*DIVERGENCES, "custom"])
@pytest.mark.parametrize("normalization", ["sum", "mean"])
def test_surrogate_gradient_equals_autograd_of_the_divergence_when_psi_is_theta(divergence, normalization):
    """∂(surrogate)/∂z_θ = c_b w_b ∇_z D(p_φ‖softmax(z_θ)) at masked positions, 0 elsewhere (seed eq. 7)."""
    teacher, student, masked = _case(3)
    f = (lambda u: u * torch.log(u) - (u - 1)) if divergence == "custom" else divergence  # a KL variant, f(1)=0
    weights = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)
    z = student.clone().float().requires_grad_(True)
    gradient = divergence_gradient(teacher.float(), z.detach(), f, beta=0.4)
    surrogate_loss(z, gradient, masked, weights, normalization).backward()

    z_ref = student.clone().requires_grad_(True)
    per_token = token_divergence(teacher, z_ref, f, beta=0.4)
    counts = masked.sum(1).double()
    scale = weights / 3 / (counts if normalization == "mean" else 1)
    ((per_token * masked).sum(1) * scale).sum().backward()

    torch.testing.assert_close(z.grad.double(), z_ref.grad, atol=2e-6, rtol=1e-4)
    assert torch.all(z.grad[~masked] == 0)
    assert torch.all(z.grad[masked].abs().sum(-1) > 0)


def test_token_divergence_values_by_hand():
    p = torch.tensor([[0.5, 0.25, 0.25]], dtype=torch.float64)
    q = torch.tensor([[0.25, 0.25, 0.5]], dtype=torch.float64)
    fkl = 0.5 * math.log(2) + 0.25 * math.log(0.5)
    rkl = 0.25 * math.log(0.5) + 0.5 * math.log(2)
    m = (p + q) / 2
    js = 0.5 * float((p * (p / m).log()).sum() + (q * (q / m).log()).sum())
    hellinger = float(((p.sqrt() - q.sqrt()) ** 2).sum())
    expected = {"fkl": fkl, "rkl": rkl, "jeffreys": 0.5 * fkl + 0.5 * rkl, "js": js, "hellinger": hellinger}
    for name, value in expected.items():
        assert float(token_divergence(p.log(), q.log(), name)) == pytest.approx(value, rel=1e-6), name
        assert float(token_divergence(p.log(), q.log(), divergence_f(name))) == pytest.approx(value, rel=1e-6), name


def test_zero_gradient_when_student_matches_teacher():
    teacher, _, _ = _case(4)
    for name in DIVERGENCES:
        assert divergence_gradient(teacher, teacher + 3.0, name).abs().max() < 1e-6  # logits shift: same softmax


def test_unknown_divergence_is_rejected():
    teacher, student, _ = _case()
    with pytest.raises(ValueError, match="divergence.*'tv'"):
        divergence_gradient(teacher, student, "tv")
    with pytest.raises(ValueError, match="loss_normalization"):
        surrogate_loss(student, student, torch.ones(3, 5, dtype=torch.bool), normalization="median")
