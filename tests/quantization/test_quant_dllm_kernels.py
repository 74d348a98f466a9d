"""Issue 26: the compiled CPU kernels of `QuantDLLMLinear` and the faster quantizer, each against a plain
re-implementation written here (the dequantized ``F.linear``; the pre-issue einsum/argmin DAQ)."""

import logging
import math

import pytest
import torch
import torch.nn.functional as F
from transformers.testing_utils import CaptureLogger
from transformers.utils import logging as hf_logging

from hf_dlm.quantization import cpu_kernel as cpu_kernel_module
from hf_dlm.quantization import packed_linear
from hf_dlm.quantization.cpu_kernel import cpu_kernel, cpu_kernel_enabled
from hf_dlm.quantization.daq import binary_rc_init, daq, sign_patterns, update_signs
from hf_dlm.quantization.importance import block_bounds, inverse_hessian_diagonal
from hf_dlm.quantization.packed_linear import QuantDLLMLinear

needs_kernels = pytest.mark.skipif(cpu_kernel() is None, reason="the compiled CPU kernels could not be built here")


def _random_layer(in_features, out_features, block_size, orders, bias=False, seed=0):
    """A packed layer from random factors with the given per-block orders (their mean must be an integer)."""
    g = torch.Generator().manual_seed(seed)
    bounds = block_bounds(in_features, block_size)
    rows = [torch.rand(k, out_features, generator=g) + 0.5 for k in orders]
    cols = [torch.rand(k, e - s, generator=g) + 0.5 for k, (s, e) in zip(orders, bounds)]
    signs = [torch.where(torch.rand(k, out_features, e - s, generator=g) < 0.5, -1.0, 1.0)
             for k, (s, e) in zip(orders, bounds)]
    bits = sum(k * (e - s) for k, (s, e) in zip(orders, bounds)) // in_features
    return QuantDLLMLinear.from_factors(orders, rows, cols, signs, in_features, out_features, bits, block_size,
                                       bias=torch.randn(out_features, generator=g) if bias else None)


# (in, out, block size, orders): odd widths (planes straddling bytes), a ragged last block, every order mix, and
# 32-column-aligned layouts for the register-table kernel
LAYOUTS = [
    (19, 5, 3, [1, 3, 2, 2, 2, 2, 2]),
    (37, 11, 5, [2] * 8),
    (72, 24, 16, [1, 3, 2, 2, 2]),
    (72, 24, 16, [3, 1, 2, 2, 2]),
    (64, 17, 32, [1, 3]),
    (96, 33, 32, [3, 2, 1]),
    (256, 40, 128, [2, 2]),
]


@needs_kernels
@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda v: f"{v[0]}x{v[1]}b{v[2]}k{''.join(map(str, v[3]))}")
@pytest.mark.parametrize("tokens", [1, 3, 9, 20, 130])
def test_cpu_kernels_equal_dense_dequantized_linear(layout, tokens):
    in_features, out_features, block_size, orders = layout
    layer = _random_layer(in_features, out_features, block_size, orders, bias=True)
    layer.kernel = "cpu"
    x = torch.randn(tokens, in_features, generator=torch.Generator().manual_seed(tokens))
    reference = F.linear(x, layer.dequantize(torch.float32), layer.bias)
    scale = reference.abs().max()
    assert torch.allclose(layer(x), reference, atol=2e-6 * scale, rtol=1e-5)
    # 3-D inputs keep their leading dimensions
    assert layer(x.reshape(1, tokens, in_features)).shape == (1, tokens, out_features)


@needs_kernels
@pytest.mark.parametrize("tokens", [2, 20, 130])
def test_cpu_kernels_bf16_inputs(tokens):
    layer = _random_layer(96, 33, 32, [3, 2, 1])
    layer.kernel = "cpu"
    x = torch.randn(tokens, 96, generator=torch.Generator().manual_seed(0)).bfloat16()
    out = layer(x)
    assert out.dtype == torch.bfloat16
    reference = F.linear(x.float(), layer.dequantize(torch.float32))
    assert torch.allclose(out.float(), reference, atol=2e-2 * reference.abs().max(), rtol=2e-2)


@needs_kernels
def test_every_cpu_path_is_reachable_and_named():
    aligned, ragged = _random_layer(96, 33, 32, [3, 2, 1]), _random_layer(72, 24, 16, [1, 3, 2, 2, 2])
    assert ragged.cpu_path(1) == "lut" and ragged.cpu_path(packed_linear.LUT_MAX_TOKENS) == "tile"
    fast = "lut16" if cpu_kernel().lut16_available() else "lut"
    assert aligned.cpu_path(1) == fast and aligned.cpu_path(packed_linear.LUT16_MAX_TOKENS) == "tile"
    if fast == "lut16":
        assert aligned.cpu_path(packed_linear.LUT16_MAX_TOKENS_BF16 - 1, torch.bfloat16) == "lut16"
        assert aligned.cpu_path(packed_linear.LUT16_MAX_TOKENS_BF16, torch.bfloat16) == "tile"


class _Spy:
    """Wraps the compiled module and records which kernel ran."""

    def __init__(self, module):
        self.module, self.calls = module, []

    def __getattr__(self, name):
        attr = getattr(self.module, name)
        if name.endswith("_matmul"):
            def wrapped(*args):
                self.calls.append(name)
                return attr(*args)
            return wrapped
        return attr


@needs_kernels
def test_auto_takes_the_compiled_path_on_cpu_and_the_fallback_agrees(monkeypatch):
    layer = _random_layer(72, 24, 16, [1, 3, 2, 2, 2], bias=True)
    assert layer.kernel == "auto"
    spy = _Spy(cpu_kernel())
    monkeypatch.setattr(packed_linear, "cpu_kernel", lambda: spy)
    x = torch.randn(2, 3, 72)  # 6 tokens < LUT_MAX_TOKENS: the byte table (planes of 16 columns are not 32-aligned)
    fast = layer(x)
    assert spy.calls == ["lut_matmul"]
    layer(torch.randn(40, 72))
    assert spy.calls[-1] == "tile_matmul"
    # inputs that need a gradient take the differentiable torch path
    calls = len(spy.calls)
    layer(torch.randn(2, 72, requires_grad=True)).sum().backward()
    assert len(spy.calls) == calls
    # no compiled kernels (no compiler): the pure-torch path, same values
    monkeypatch.setattr(packed_linear, "cpu_kernel", lambda: None)
    assert torch.allclose(layer(x), fast, atol=1e-5, rtol=1e-5)
    layer.kernel = "torch"
    assert torch.allclose(layer(x), fast, atol=1e-5, rtol=1e-5)
    layer.kernel = "cpu"
    with pytest.raises(RuntimeError, match="kernel='cpu'"):
        layer(x)
    monkeypatch.setattr(packed_linear, "cpu_kernel", lambda: spy)
    with pytest.raises(RuntimeError, match="no backward"):
        layer(torch.randn(2, 72, requires_grad=True))


needs_amx = pytest.mark.skipif(cpu_kernel() is None or not cpu_kernel().amx_available(),
                               reason="no AMX-BF16 here (CPU, OS permission or build)")


@needs_amx
@pytest.mark.parametrize("layout", [(64, 17, 32, [1, 3]), (96, 33, 32, [3, 2, 1]), (256, 40, 128, [2, 2]),
                                    (160, 21, 32, [2, 1, 3, 2, 2])], ids=lambda v: f"{v[0]}x{v[1]}")
@pytest.mark.parametrize("tokens", [1, 15, 16, 40, 70])
def test_amx_kernel_equals_dense_dequantized_linear(layout, tokens):
    """The AMX tile-product kernel: exact bf16 pieces of α_c ⊙ x and α_r, so fp32 accuracy; ragged rows, tokens
    beyond one pass (chunks of 16 and 32 tokens) and bf16 inputs."""
    in_features, out_features, block_size, orders = layout
    layer = _random_layer(in_features, out_features, block_size, orders)
    kernel = cpu_kernel()
    x = torch.randn(tokens, in_features, generator=torch.Generator().manual_seed(tokens))
    reference = F.linear(x, layer.dequantize(torch.float32))
    scale = reference.abs().max()
    args = (layer.weight, layer.row_scale, layer.col_scale.float(), layer.plane_meta())
    for chunk in (16, 32, 256):
        out = kernel.amx_matmul(x, *args, chunk)
        assert torch.allclose(out, reference, atol=2e-6 * scale, rtol=1e-5), chunk
    xb = x.bfloat16()
    out = kernel.amx_matmul(xb, *args, 32)
    assert out.dtype == torch.bfloat16
    reference = F.linear(xb.float(), layer.dequantize(torch.float32))
    assert torch.allclose(out.float(), reference, atol=1e-2 * scale, rtol=1e-2)
    with pytest.raises(RuntimeError, match="chunk_tokens"):
        kernel.amx_matmul(x, *args, 24)


@needs_amx
def test_amx_kernel_refuses_unaligned_planes():
    layer = _random_layer(72, 24, 16, [1, 3, 2, 2, 2])
    with pytest.raises(RuntimeError, match="32-column planes"):
        cpu_kernel().amx_matmul(torch.randn(20, 72), layer.weight, layer.row_scale, layer.col_scale.float(),
                                layer.plane_meta(), 32)


@needs_kernels
def test_path_choice_by_layer_size_and_the_amx_spy(monkeypatch):
    """Small layers (≤ SMALL_LAYER_WEIGHTS) take tiles from SMALL_LAYER_TILE_TOKENS on; larger aligned ones take the
    AMX kernel for float32 inputs from AMX_MIN_TOKENS to AMX_MAX_TOKENS (where available); each gives the dense
    result, and bf16 tiles are narrower than float32 ones."""
    small = _random_layer(96, 33, 32, [3, 2, 1])
    assert small.cpu_path(packed_linear.SMALL_LAYER_TILE_TOKENS) == "tile"
    assert small.cpu_path(packed_linear.SMALL_LAYER_TILE_TOKENS, torch.bfloat16) == "tile"
    large = _random_layer(512, 520, 128, [1, 3, 2, 2])
    assert large.in_features * large.out_features > packed_linear.SMALL_LAYER_WEIGHTS
    amx = cpu_kernel().amx_available()
    expected = "amx" if amx else ("lut16" if cpu_kernel().lut16_available() else "tile")
    assert large.cpu_path(packed_linear.AMX_MIN_TOKENS) == expected
    assert large.cpu_path(packed_linear.AMX_MAX_TOKENS - 1) == expected
    assert large.cpu_path(packed_linear.AMX_MIN_TOKENS, torch.bfloat16) != "amx"
    assert packed_linear.tile_rows(4096, torch.bfloat16) < packed_linear.tile_rows(4096, torch.float32)
    assert packed_linear.amx_chunk_tokens(8192) % 16 == 0 and packed_linear.amx_chunk_tokens(256) == 256
    spy = _Spy(cpu_kernel())
    monkeypatch.setattr(packed_linear, "cpu_kernel", lambda: spy)
    x = torch.randn(2, packed_linear.AMX_MIN_TOKENS, 512)
    with torch.no_grad():
        out = large(x)
    assert spy.calls == [f"{expected}_matmul"]
    reference = F.linear(x, large.dequantize(torch.float32))
    assert torch.allclose(out, reference, atol=2e-6 * reference.abs().max(), rtol=1e-5)
    small(torch.randn(packed_linear.SMALL_LAYER_TILE_TOKENS, 96))
    assert spy.calls[-1] == "tile_matmul"


@needs_kernels
def test_cached_cpu_state_follows_edits_and_copies():
    """The per-layer state of the compiled path is rebuilt when a buffer is edited in place or replaced, and a
    layer with a state deep-copies and pickles (the state is dropped, not copied)."""
    import copy
    import io

    layer = _random_layer(96, 33, 32, [3, 2, 1])
    x = torch.randn(5, 96)
    with torch.no_grad():
        before = layer(x)
        layer.col_scale.mul_(2)  # in place: the version counter moves
        assert torch.allclose(layer(x), F.linear(x, layer.dequantize(torch.float32)), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(layer(x), before)
        layer.row_scale = layer.row_scale * 0.5  # replaced
        assert torch.allclose(layer(x), F.linear(x, layer.dequantize(torch.float32)), atol=1e-5, rtol=1e-5)
        layer.to("cpu")  # .to() and friends drop the state (it would keep replaced buffers alive)
        assert "_cpu_state_cache" not in layer.__dict__
        layer(x)
        assert "_cpu_state_cache" in layer.__dict__
        clone = copy.deepcopy(layer)
        assert torch.equal(clone(x), layer(x))
        buffer = io.BytesIO()
        torch.save(layer, buffer)
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=False)
        assert torch.equal(loaded(x), layer(x))


def test_kernel_argument_is_checked():
    with pytest.raises(ValueError, match="`kernel` must be one of .*'gpu'"):
        QuantDLLMLinear(8, 4, kernel="gpu")
    layer = _random_layer(16, 4, 8, [2, 2])
    with pytest.raises(ValueError, match="in_features=16"):
        layer(torch.randn(3, 15))
    layer.kernel = "triton"
    with pytest.raises(RuntimeError, match="kernel='triton'"):
        layer(torch.randn(3, 16))


def test_cpu_kernel_switch_and_logged_build_failure(monkeypatch):
    monkeypatch.setenv("HF_DLM_CPU_KERNEL", "0")
    assert not cpu_kernel_enabled()
    monkeypatch.setenv("HF_DLM_CPU_KERNEL", "maybe")
    with pytest.raises(ValueError, match="HF_DLM_CPU_KERNEL.*'maybe'"):
        cpu_kernel_enabled()
    monkeypatch.setenv("HF_DLM_CPU_KERNEL", "1")

    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    import torch.utils.cpp_extension

    monkeypatch.setattr(torch.utils.cpp_extension, "load", broken)
    logger = hf_logging.get_logger(cpu_kernel_module.__name__)
    with CaptureLogger(logger) as captured:
        assert cpu_kernel.__wrapped__() is None  # the uncached body: a fresh build attempt
    assert "no compiler here" in captured.out and "pure-torch" in captured.out


# ----------------------------------------------------------------------------------------------- quantizer
def _argmin_signs(w, rows, cols):
    """The pre-issue update_B: all 2^K candidate values, then argmin."""
    patterns = sign_patterns(rows.shape[1], w.dtype)
    values = torch.einsum("pk,gknm->gpnm", patterns, rows.unsqueeze(-1) * cols.unsqueeze(-2))
    return patterns[(w.unsqueeze(1) - values).square().argmin(dim=1)].permute(0, 3, 1, 2)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_sign_search_kernel_fallback_and_reference_agree(order):
    g = torch.Generator().manual_seed(order)
    w = torch.randn(3, 17, 70, generator=g)
    rows, cols = torch.rand(3, order, 17, generator=g), torch.randn(3, order, 70, generator=g)
    fallback = update_signs(w, rows, cols, use_kernel=False, max_elements=300)  # several row chunks
    assert torch.equal(fallback, _argmin_signs(w, rows, cols))
    if cpu_kernel() is not None:
        assert torch.equal(update_signs(w, rows, cols, use_kernel=True), fallback)
    # float64 always takes the torch search
    assert torch.equal(update_signs(w.double(), rows.double(), cols.double()), _argmin_signs(w, rows, cols).double())


def _reference_daq(w, order, iterations, mask):
    """Algorithm 2 as the pre-issue code wrote it: K full terms per order update, einsum updates."""
    weight2 = torch.ones_like(w) if mask is None else mask.square()
    rows, cols, signs, w_hat = [], [], [], torch.zeros_like(w)
    for _ in range(order):
        r, c, b = binary_rc_init(w - w_hat)
        rows.append(r), cols.append(c), signs.append(b)
        w_hat = w_hat + r.unsqueeze(-1) * c.unsqueeze(-2) * b
    rs, cs, bs = torch.stack(rows, 1), torch.stack(cols, 1), torch.stack(signs, 1)
    for _ in range(iterations):
        for k in range(order):
            terms = rs.unsqueeze(-1) * cs.unsqueeze(-2) * bs
            target = w - (terms.sum(1) - terms[:, k])
            rs[:, k] = (torch.einsum("gnm,gm->gn", weight2 * target * bs[:, k], cs[:, k])
                        / (torch.einsum("gnm,gm->gn", weight2, cs[:, k] ** 2) + 1e-12))
            cs[:, k] = (torch.einsum("gnm,gn->gm", weight2 * target * bs[:, k], rs[:, k])
                        / (torch.einsum("gnm,gn->gm", weight2, rs[:, k] ** 2) + 1e-12))
        bs = _argmin_signs(w, rs, cs)
    w_hat = torch.einsum("gkn,gkm,gknm->gnm", rs, cs, bs)
    return float((weight2 * (w - w_hat).square()).sum())


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("masked", [False, True])
def test_faster_daq_reaches_the_reference_objective(order, masked):
    g = torch.Generator().manual_seed(10 * order + masked)
    w = torch.randn(4, 24, 16, generator=g)
    mask = 1 + (torch.rand(w.shape, generator=g) > 0.9).float() if masked else None
    result = daq(w, order=order, iterations=6, importance_mask=mask)
    new = float(result.objective[-1].sum())
    assert math.isclose(new, _reference_daq(w, order, 6, mask), rel_tol=1e-4)
    # the objective it reports is the one its factors give
    weight2 = 1.0 if mask is None else mask.square()
    assert math.isclose(new, float((weight2 * (w - result.reconstruct()).square()).sum()), rel_tol=1e-5)


def test_inverse_hessian_diagonal_float32_and_its_float64_fallback():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 12, generator=g, dtype=torch.float64)
    s = x.T @ x
    exact = torch.diagonal(torch.linalg.inv(s + 0.01 * torch.diagonal(s).mean() * torch.eye(12, dtype=torch.float64)))
    fast = inverse_hessian_diagonal(s.float(), 0.01)
    assert fast.dtype == torch.float64 and torch.allclose(fast, exact, rtol=1e-4)
    assert torch.allclose(inverse_hessian_diagonal(s, 0.01, precision="float64"), exact, rtol=1e-10)
    # one direction 10¹² times stronger than the rest: float32 loses the small eigenvalues and the check catches it
    u = torch.linalg.qr(torch.randn(12, 12, generator=g, dtype=torch.float64))[0]
    eig = torch.ones(12, dtype=torch.float64)
    eig[0] = 1e12
    bad = (u * eig) @ u.T
    damped = bad + 1e-9 * torch.diagonal(bad).mean() * torch.eye(12, dtype=torch.float64)
    exact = torch.diagonal(torch.linalg.inv(damped))
    logger = hf_logging.get_logger("hf_dlm.quantization.importance")
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with CaptureLogger(logger) as captured:
            result = inverse_hessian_diagonal(bad, 1e-9)
    finally:
        logger.setLevel(level)
    assert "needs float64" in captured.out
    assert torch.allclose(result, exact, rtol=1e-6)
    with pytest.raises(ValueError, match="`precision` must be 'auto' or 'float64', got 'half'"):
        inverse_hessian_diagonal(s, 0.01, precision="half")


def test_daq_batches_change_memory_not_result(monkeypatch):
    """quantize_weight runs DAQ on batches of at most DAQ_BATCH_ELEMENTS weights; the blocks are independent, so
    one block per batch packs the same tensors as all blocks in one batch."""
    from hf_dlm.quantization import QuantDLLMConfig, quantize_weight, weight_quantizer

    g = torch.Generator().manual_seed(5)
    w, x = torch.randn(12, 80, generator=g), torch.randn(64, 80, generator=g)
    config = QuantDLLMConfig(block_size=16, abmp_fraction=0.2, rsr_iterations=3)
    whole = quantize_weight(w, config, statistics=x.T @ x)
    monkeypatch.setattr(weight_quantizer, "DAQ_BATCH_ELEMENTS", 1)
    split = quantize_weight(w, config, statistics=x.T @ x)
    assert sorted(set(whole.block_orders)) == [1, 2, 3]
    for name in ("weight", "row_scale", "col_scale", "block_orders"):
        assert torch.equal(getattr(whole.layer, name), getattr(split.layer, name)), name
    assert math.isclose(whole.objective_final, split.objective_final, rel_tol=1e-6)


def test_output_error_equals_the_float64_triple_product():
    from hf_dlm.quantization.weight_quantizer import output_error_of

    g = torch.Generator().manual_seed(6)
    residual, x = torch.randn(37, 24, generator=g), torch.randn(50, 24, generator=g)
    s = x.T @ x
    expected = float(torch.einsum("ij,jk,ik->", residual.double(), s.double(), residual.double()))
    assert math.isclose(output_error_of(residual, s, rows_per_chunk=5), expected, rel_tol=1e-5)
