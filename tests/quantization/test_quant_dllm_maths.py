"""Quant-dLLM maths (seed 001) against hand-derived values and brute force."""

import itertools
import math
import statistics

import pytest
import torch

from hf_dlm.quantization import QuantDLLMConfig, masked_calibration_simulation
from hf_dlm.quantization.calibration import calibration_sequences
from hf_dlm.quantization.daq import (binary_rc_init, daq, daq_objective, update_col_scale, update_row_scale,
                                     update_signs)
from hf_dlm.quantization.importance import (abmp_orders, block_bounds, build_importance_mask, importance_matrix,
                                            inverse_hessian_diagonal)


def test_binary_rc_init_closed_form():
    x = torch.tensor([[[1.0, -2.0, 0.0], [3.0, -4.0, 5.0]]])
    row, col, signs = binary_rc_init(x)
    # α_r = (1/m)|X|1_m
    assert torch.allclose(row, torch.tensor([[1.0, 4.0]]))
    # α_c = (1/n)|X|ᵀ diag(α_r)⁻¹ 1_n
    expected_col = torch.tensor([[(1 / 1 + 3 / 4) / 2, (2 / 1 + 4 / 4) / 2, (0 / 1 + 5 / 4) / 2]])
    assert torch.allclose(col, expected_col)
    # sign(0) = +1
    assert torch.equal(signs, torch.tensor([[[1.0, -1.0, 1.0], [1.0, -1.0, 1.0]]]))


def _random_problem(seed=0, n=6, m=9):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, n, m, generator=g, dtype=torch.float64)
    signs = torch.where(torch.rand(1, n, m, generator=g) < 0.5, -1.0, 1.0).double()
    row = torch.rand(1, n, generator=g, dtype=torch.float64) + 0.5
    col = torch.rand(1, m, generator=g, dtype=torch.float64) + 0.5
    lam = 1 + torch.randint(0, 2, (1, n, m), generator=g).double() * 2.0
    return x, signs, row, col, lam


def test_update_row_scale_is_weighted_least_squares_optimum():
    x, signs, _, col, lam = _random_problem()
    new_row = update_row_scale(x, signs, col, lam.square(), eps=0.0)
    for i in range(x.shape[1]):
        # min_a Σ_j Λ²_ij (X_ij − a α_c,j B_ij)²  ⇔  least squares on Λ-scaled rows
        design = (lam[0, i] * signs[0, i] * col[0]).unsqueeze(-1)
        target = (lam[0, i] * x[0, i]).unsqueeze(-1)
        solution = torch.linalg.lstsq(design, target).solution.item()
        assert new_row[0, i].item() == pytest.approx(solution, rel=1e-10)


def test_update_col_scale_is_weighted_least_squares_optimum():
    x, signs, row, _, lam = _random_problem(seed=1)
    new_col = update_col_scale(x, signs, row, lam.square(), eps=0.0)
    for j in range(x.shape[2]):
        design = (lam[0, :, j] * signs[0, :, j] * row[0]).unsqueeze(-1)
        target = (lam[0, :, j] * x[0, :, j]).unsqueeze(-1)
        solution = torch.linalg.lstsq(design, target).solution.item()
        assert new_col[0, j].item() == pytest.approx(solution, rel=1e-10)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_update_signs_returns_best_pattern(order):
    g = torch.Generator().manual_seed(order)
    w = torch.randn(2, 5, 4, generator=g, dtype=torch.float64)
    rows = torch.rand(2, order, 5, generator=g, dtype=torch.float64)
    cols = torch.rand(2, order, 4, generator=g, dtype=torch.float64)
    signs = update_signs(w, rows, cols)
    for gi, i, j in itertools.product(range(2), range(5), range(4)):
        s = [rows[gi, k, i] * cols[gi, k, j] for k in range(order)]
        best = min(itertools.product((-1.0, 1.0), repeat=order),
                   key=lambda b: (w[gi, i, j] - sum(bk * sk for bk, sk in zip(b, s))) ** 2)
        assert signs[gi, :, i, j].tolist() == list(best)


def test_importance_mask_follows_three_sigma_rule():
    z = torch.ones(10, 10)
    z[2, 3] = 1000.0
    z[7, 1] = 20.0  # large, but inside 3σ
    lam = build_importance_mask(z, factor=4.0)
    values = z.flatten().tolist()
    mu, sigma = statistics.fmean(values), statistics.pstdev(values)
    expected = torch.tensor([[4.0 if abs(v - mu) > 3 * sigma else 1.0 for v in row] for row in z.tolist()])
    assert torch.equal(lam, expected)
    assert lam[2, 3] == 4.0 and lam[7, 1] == 1.0 and int((lam > 1).sum()) == 1


def test_importance_matrix_matches_definition():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(50, 8, generator=g, dtype=torch.float64)
    s = x.T @ x
    w = torch.randn(4, 8, generator=g)
    gamma = 0.01 * torch.diagonal(s).mean()
    d = torch.diagonal(torch.linalg.inv(s + gamma * torch.eye(8, dtype=torch.float64)))
    assert torch.allclose(inverse_hessian_diagonal(s, 0.01), d)
    expected = (w.double() / d).square().float()
    assert torch.allclose(importance_matrix(w, s, 0.01), expected, rtol=1e-5)


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("scale_axes", ["row_column", "row"])
def test_daq_objective_never_increases(order, scale_axes):
    g = torch.Generator().manual_seed(order)
    w = torch.randn(3, 16, 24, generator=g, dtype=torch.float64) * torch.rand(1, 1, 24, generator=g).double()
    lam = 1 + 2.0 * (torch.rand(3, 16, 24, generator=g) < 0.1).double()
    result = daq(w, order=order, iterations=10, importance_mask=lam, scale_axes=scale_axes)
    objective = torch.stack(result.objective)  # (T + 1, G)
    assert (objective[1:] <= objective[:-1] * (1 + 1e-12) + 1e-12).all()
    assert (objective[-1] < objective[0]).all()  # the Λ-weighted re-scaling improves on the unweighted init
    final = daq_objective(w, result.reconstruct(), lam.square())
    assert torch.allclose(final, objective[-1])


def test_daq_more_orders_fit_better():
    w = torch.randn(1, 32, 32, generator=torch.Generator().manual_seed(0))
    errors = [float(daq(w, order=k, iterations=5).objective[-1]) for k in (1, 2, 3)]
    assert errors[0] > errors[1] > errors[2]


def test_abmp_averages_exactly_bits():
    g = torch.Generator().manual_seed(0)
    z = torch.rand(8, 256, generator=g)
    z[:, 32:48] += 10.0  # block 2 is the most important
    z[:, 160:176] *= 0.01  # block 10 the least
    bounds = block_bounds(256, 16)
    orders = abmp_orders(z, bounds, 16, bits=2, orders=(1, 2, 3), fraction=0.25)
    assert len(orders) == 16 and orders.count(3) == 4 and orders.count(1) == 4 and sum(orders) == 2 * 16
    assert orders[2] == 3 and orders[10] == 1
    scores = [float(z[:, s:e].sum()) for s, e in bounds]
    promoted = sorted(range(16), key=lambda i: -scores[i])[:4]
    assert sorted(i for i, o in enumerate(orders) if o == 3) == sorted(promoted)
    # a ragged last block keeps the middle order, so the weight average stays exact
    ragged = block_bounds(250, 16)
    orders = abmp_orders(z[:, :250], ragged, 16, bits=2, orders=(1, 2, 3), fraction=0.25)
    assert orders[-1] == 2
    assert sum(o * (e - s) for o, (s, e) in zip(orders, ragged)) == 2 * 250
    # the paper's 5 % of 20 blocks is one block each way
    assert abmp_orders(torch.rand(4, 320), block_bounds(320, 16), 16, 2, (1, 2, 3), 0.05).count(3) == 1


def test_mcs_keeps_prefix_and_masks_at_scheduled_rate():
    config = QuantDLLMConfig(mcs_timesteps=4, prefix_ratio=0.25, visibility_schedule="cosine")
    sequences = torch.randint(0, 50, (64, 400), generator=torch.Generator().manual_seed(0))
    out = masked_calibration_simulation(sequences, 4, 0.25, config.visibility, mask_token_id=99,
                                        generator=torch.Generator().manual_seed(1))
    assert out.shape == (64 * 4, 400)
    copies = out.view(64, 4, 400)
    assert torch.equal(copies[:, :, :100], sequences[:, None, :100].expand(64, 4, 100))
    kept = copies == sequences[:, None]
    assert ((copies == 99) | kept).all()  # a token is either itself or [MASK]
    for t in range(1, 5):
        masked_rate = (copies[:, t - 1, 100:] == 99).float().mean().item()
        assert masked_rate == pytest.approx(1 - math.cos(math.pi / 2 * t / 4), abs=0.02)
    assert (copies[:, 3, 100:] == 99).all()  # α(T) = 0: everything after the prefix is masked


def test_mcs_and_calibration_errors():
    with pytest.raises(ValueError, match="prefix"):
        masked_calibration_simulation(torch.zeros(2, 4, dtype=torch.long), 2, 1.0, lambda t: 0.5, 9)
    with pytest.raises(ValueError, match="fewer than one sequence"):
        calibration_sequences([[1, 2, 3]], num_sequences=4, seq_len=8)
    with pytest.raises(ValueError, match="tokenizer"):
        calibration_sequences(["some text"], num_sequences=4, seq_len=8)
    with pytest.raises(ValueError, match="calibration_seq_len"):
        calibration_sequences(torch.zeros(2, 4, dtype=torch.long), num_sequences=4, seq_len=8)
    ids = calibration_sequences([list(range(10)), list(range(10, 25))], num_sequences=2, seq_len=6)
    assert ids.shape == (2, 6) and ids[0, 0] in (0, 6, 12, 18)


def test_linear_visibility_schedule():
    config = QuantDLLMConfig(mcs_timesteps=4)
    assert [config.visibility(t) for t in range(1, 5)] == [0.75, 0.5, 0.25, 0.0]
