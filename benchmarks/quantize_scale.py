"""Quant-dLLM quantization at LLaDA-8B widths on CPU: CPU-seconds and peak memory (issue 26).

    python benchmarks/quantize_scale.py                 # 4096×4096 + 12288-wide layers, the pre-issue reference on
                                                        # 4096×4096, one 8B-width block: ~15 min on a shared 2-core CPU
    python benchmarks/quantize_scale.py --quick         # 1024 widths, a smoke run (about a minute)
    python benchmarks/quantize_scale.py --skip-reference --skip-block

**Layers**: ``quantize_weight`` with the default `QuantDLLMConfig` (2 bits, 128-column blocks, ABMP 0.05, DOR on,
15 RSR rounds) on a 4096×4096 layer (attention projection) and a 12288-wide layer (4096 outputs, 12288 inputs:
LLaDA's MLP down-projection ``ff_out``, whose 12288² Hessian dominated the old cost), with S_MCS from 2,048
calibration tokens. Weights are N(0, 0.02²); activations are Gaussian with log-normal per-channel scales (σ = 1,
the outlier channels DOR is about) plus a rank-16 shared component, so S is neither diagonal nor white.

**Objective**: the held-out reconstruction error ``Tr(R S_h Rᵀ) / Tr(W S_h Wᵀ)`` with R = W − Ŵ and S_h the Gram
matrix of 2,048 other tokens of the same distribution — the relative error of the layer's outputs on tokens the
quantizer never saw. ``--reference`` rows run a plain re-implementation of the pre-issue-26 pipeline (float64
Cholesky, the einsum/argmin sign search over a (G, 2^K, n, m) tensor, K full (G, n, m) terms per order update,
a float64 output-error triple product), kept in this file as the baseline; same seed, same inputs.

**Block**: a one-block LLaDA model at 8B widths (d 4096, 32 heads, MLP 12288, vocabulary 512) through
``QuantDLLMQuantizer.quantize_model`` with 2,048 calibration tokens (4 sequences × 128 tokens × 4 MCS timesteps):
its `BlockReport` (wall and CPU seconds, peak RSS during the block).

``--threads`` (default 1) sets torch's threads; the compiled kernels are loaded before anything is measured.
CPU-seconds are ``time.process_time()`` (all threads); peak memory is the process's ``VmHWM`` after resetting it
before the measured call (``/proc/self/clear_refs``), minus the RSS just before. Targets (issue 26, CPU):
≤ 15 CPU-s for the 4096×4096 layer with the same held-out objective as the reference; a whole 8B-width block within
10 minutes and 8 GB. Writes benchmarks/results/quantize_scale[_quick].json and .png.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from _common import RESULTS, machine, markdown_table, write_json  # noqa: E402
from packed_linear import reset_peak, status_kb  # noqa: E402
from hf_dlm.quantization import QuantDLLMConfig, QuantDLLMQuantizer, quantize_weight  # noqa: E402
from hf_dlm.quantization.cpu_kernel import cpu_kernel  # noqa: E402
from hf_dlm.quantization.daq import binary_rc_init, sign_patterns  # noqa: E402
from hf_dlm.quantization.importance import (abmp_orders, block_bounds, build_importance_mask,  # noqa: E402
                                            inverse_hessian_diagonal)
from hf_dlm.quantization.packed_linear import QuantDLLMLinear  # noqa: E402


def activations(tokens: int, width: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scales = torch.exp(torch.randn(width, generator=torch.Generator().manual_seed(1234)))
    shared = torch.randn(16, width, generator=torch.Generator().manual_seed(4321))
    return torch.randn(tokens, width, generator=g) * scales + torch.randn(tokens, 16, generator=g) @ shared


def gram(x: torch.Tensor) -> torch.Tensor:
    return x.T @ x


def heldout_error(w: torch.Tensor, w_hat: torch.Tensor, s_heldout: torch.Tensor) -> float:
    r = (w - w_hat).double()
    wd = w.double()
    s = s_heldout.double()
    return float(((r @ s) * r).sum() / ((wd @ s) * wd).sum())


# ------------------------------------------------------------------- the pre-issue-26 pipeline, as it was
def _reference_daq(w, order, iterations, mask):
    weight2 = torch.ones_like(w) if mask is None else mask.square()
    rows, cols, signs, w_hat = [], [], [], torch.zeros_like(w)
    for _ in range(order):
        r, c, b = binary_rc_init(w - w_hat)
        rows.append(r), cols.append(c), signs.append(b)
        w_hat = w_hat + r.unsqueeze(-1) * c.unsqueeze(-2) * b
    rs, cs, bs = torch.stack(rows, 1), torch.stack(cols, 1), torch.stack(signs, 1)
    patterns = sign_patterns(order, w.dtype)
    for _ in range(iterations):
        for k in range(order):
            terms = rs.unsqueeze(-1) * cs.unsqueeze(-2) * bs
            target = w - (terms.sum(1) - terms[:, k])
            b_k = bs[:, k]
            u = torch.einsum("gnm,gm->gn", weight2 * target * b_k, cs[:, k])
            rs[:, k] = u / (torch.einsum("gnm,gm->gn", weight2, cs[:, k] ** 2) + 1e-12)
            u = torch.einsum("gnm,gn->gm", weight2 * target * b_k, rs[:, k])
            cs[:, k] = u / (torch.einsum("gnm,gn->gm", weight2, rs[:, k] ** 2) + 1e-12)
        chunk = max(1, (1 << 25) // ((2 ** order) * w.shape[1] * w.shape[2]))
        new = torch.empty_like(bs)
        for start in range(0, w.shape[0], chunk):
            sl = slice(start, start + chunk)
            values = torch.einsum("pk,gknm->gpnm", patterns, rs[sl].unsqueeze(-1) * cs[sl].unsqueeze(-2))
            best = (w[sl].unsqueeze(1) - values).square().argmin(dim=1)
            new[sl] = patterns[best].permute(0, 3, 1, 2)
        bs = new
    return rs, cs, bs


def reference_quantize_weight(w: torch.Tensor, config: QuantDLLMConfig, statistics: torch.Tensor) -> torch.Tensor:
    """Ŵ of the pre-issue-26 pipeline (float64 Cholesky, einsum/argmin DAQ, float64 output error)."""
    d = inverse_hessian_diagonal(statistics, config.damping, precision="float64")
    importance = (w.double() / d).square().float()
    mask = build_importance_mask(importance, config.importance_factor, config.outlier_sigma)
    bounds = block_bounds(w.shape[1], config.block_size)
    orders = abmp_orders(importance, bounds, config.block_size, config.bits, config.orders, config.abmp_fraction)
    factors = [None] * len(bounds)
    for key in sorted({(e - s, orders[g]) for g, (s, e) in enumerate(bounds)}):
        members = [g for g, (s, e) in enumerate(bounds) if (e - s, orders[g]) == key]
        blocks = torch.stack([w[:, bounds[g][0]:bounds[g][1]] for g in members])
        lam = torch.stack([mask[:, bounds[g][0]:bounds[g][1]] for g in members])
        rs, cs, bs = _reference_daq(blocks, key[1], config.rsr_iterations, lam)
        for i, g in enumerate(members):
            factors[g] = (rs[i], cs[i], bs[i])
    layer = QuantDLLMLinear.from_factors(orders, [f[0] for f in factors], [f[1] for f in factors],
                                         [f[2] for f in factors], w.shape[1], w.shape[0], config.bits,
                                         config.block_size, kernel="torch")
    residual = (w - layer.dequantize()).double()
    torch.einsum("ij,jk,ik->", residual, statistics.double(), residual)  # the old output-error cost
    return layer.dequantize()


# ------------------------------------------------------------------------------------------------- runs
def measured(fn):
    """(result, wall s, CPU s, extra peak RSS bytes or None)."""
    gc.collect()
    exact = reset_peak()
    before = status_kb("VmRSS")
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = status_kb("VmHWM")
    return result, wall, cpu, ((peak - before) * 1024 if exact else None)


def layer_rows(out_features: int, in_features: int, tokens: int, reference: bool, seed: int) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out_features, in_features, generator=g) * 0.02
    s = gram(activations(tokens, in_features, seed + 1))
    s_heldout = gram(activations(tokens, in_features, seed + 2))
    config = QuantDLLMConfig()
    rows = []
    result, wall, cpu, peak = measured(lambda: quantize_weight(w, config, statistics=s))
    rows.append({"pipeline": "issue 26", "out_features": out_features, "in_features": in_features,
                 "calibration_tokens": tokens, "wall_seconds": wall, "cpu_seconds": cpu, "extra_peak_bytes": peak,
                 "heldout_relative_error": heldout_error(w, result.layer.dequantize(), s_heldout),
                 "objective_final": result.objective_final, "block_orders": result.block_orders})
    print(f"{out_features}x{in_features} issue 26: {cpu:.1f} CPU-s ({wall:.1f} s wall), peak +"
          f"{(peak or 0) / 2**30:.2f} GiB, held-out error {rows[-1]['heldout_relative_error']:.5f}", flush=True)
    del result
    if reference:
        w_hat, wall, cpu, peak = measured(lambda: reference_quantize_weight(w, config, s))
        rows.append({"pipeline": "reference (pre-issue 26)", "out_features": out_features,
                     "in_features": in_features, "calibration_tokens": tokens, "wall_seconds": wall,
                     "cpu_seconds": cpu, "extra_peak_bytes": peak,
                     "heldout_relative_error": heldout_error(w, w_hat, s_heldout)})
        print(f"{out_features}x{in_features} reference: {cpu:.1f} CPU-s ({wall:.1f} s wall), peak +"
              f"{(peak or 0) / 2**30:.2f} GiB, held-out error {rows[-1]['heldout_relative_error']:.5f}", flush=True)
    return rows


def block_row(width: int, mlp: int, heads: int, seed: int) -> dict:
    from hf_dlm import LLaDAConfig, LLaDAModelLM  # the benchmark's model; imported late to keep --help fast

    config = LLaDAConfig(vocab_size=512, embedding_size=512, d_model=width, n_layers=1, n_heads=heads,
                         n_kv_heads=heads, mlp_hidden_size=mlp, max_sequence_length=256, rope_theta=500000.0,
                         mask_token_id=511, pad_token_id=510, eos_token_id=509, bos_token_id=508)
    torch.manual_seed(seed)
    model = LLaDAModelLM(config).eval()
    calibration = torch.randint(0, 508, (4, 128), generator=torch.Generator().manual_seed(seed))
    quant = QuantDLLMConfig(num_calibration_sequences=4, calibration_seq_len=128, mcs_timesteps=4)
    quantizer = QuantDLLMQuantizer(quant)
    _, wall, cpu, peak = measured(lambda: quantizer.quantize_model(model, calibration_data=calibration,
                                                                   show_progress=False))
    report = quantizer.block_reports[0]
    row = {"d_model": width, "mlp_hidden_size": mlp, "calibration_tokens": 4 * 128 * 4, "wall_seconds": wall,
           "cpu_seconds": cpu, "extra_peak_bytes": peak, "block_seconds": report.seconds,
           "block_cpu_seconds": report.cpu_seconds, "block_peak_rss_bytes": report.peak_rss_bytes,
           "statistics_seconds": report.statistics_seconds,
           "layer_seconds": {name: layer["seconds"] for name, layer in report.layers.items()}}
    print(f"block d={width}: {wall:.1f} s wall, {cpu:.1f} CPU-s, peak RSS {(report.peak_rss_bytes or 0) / 2**30:.2f} "
          f"GiB", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1024 widths: a smoke run")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on the shared 2-core machine a 2-thread region waits whenever "
                             "another process holds a core, which inflates every number)")
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--skip-block", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--replot", action="store_true")
    args = parser.parse_args()
    name = "quantize_scale_quick" if args.quick else "quantize_scale"
    if args.replot:
        _plot(json.loads((RESULTS / f"{name}.json").read_text()), RESULTS / f"{name}.png")
        return
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    kernels_built = cpu_kernel() is not None  # load (or build) the compiled kernels outside the measurements
    kernel_load_seconds = time.perf_counter() - start
    width = 1024 if args.quick else 4096
    layers = layer_rows(width, width, args.tokens, not args.skip_reference, args.seed)
    layers += layer_rows(width, 3 * width, args.tokens, False, args.seed + 10)
    block = None if args.skip_block else block_row(width, 3 * width, 8 if args.quick else 32, args.seed)
    new = next(r for r in layers if r["pipeline"] == "issue 26" and r["in_features"] == width)
    ref = next((r for r in layers if r["pipeline"] != "issue 26"), None)
    targets = {
        "layer_4096_cpu_seconds": new["cpu_seconds"], "layer_4096_target_15s_met": new["cpu_seconds"] <= 15,
        "heldout_error_new": new["heldout_relative_error"],
        "heldout_error_reference": None if ref is None else ref["heldout_relative_error"],
        "heldout_error_relative_change": None if ref is None else
        new["heldout_relative_error"] / ref["heldout_relative_error"] - 1,
        "speedup_vs_reference_cpu": None if ref is None else ref["cpu_seconds"] / new["cpu_seconds"],
        "block_wall_seconds": None if block is None else block["wall_seconds"],
        "block_peak_gib": None if block is None or block["block_peak_rss_bytes"] is None else
        block["block_peak_rss_bytes"] / 2**30,
        "block_target_10min_8gb_met": None if block is None or block["block_peak_rss_bytes"] is None else
        block["wall_seconds"] <= 600 and block["block_peak_rss_bytes"] <= 8 * 2**30,
    }
    if args.quick:
        targets = {k.replace("4096", "quick"): v for k, v in targets.items()}
    payload = {"benchmark": "quantize_scale", "args": vars(args), "machine": machine(),
               "compiled_kernels": kernels_built, "kernel_load_seconds": kernel_load_seconds, "layers": layers,
               "block": block, "targets": targets}
    path = write_json(name, payload)
    _plot(payload, RESULTS / f"{name}.png")
    header = ["layer", "pipeline", "CPU s", "wall s", "extra peak GiB", "held-out rel. error"]
    print(markdown_table(header, [[f"{r['out_features']}×{r['in_features']}", r["pipeline"],
                                   round(r["cpu_seconds"], 1), round(r["wall_seconds"], 1),
                                   "—" if r["extra_peak_bytes"] is None else round(r["extra_peak_bytes"] / 2**30, 3),
                                   f"{r['heldout_relative_error']:.5f}"] for r in layers]))
    print(json.dumps(targets, indent=1))
    print(f"wrote {path}")


def _plot(payload: dict, path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    rows = payload["layers"]
    labels = [f"{r['out_features']}×{r['in_features']} (out×in)\n{r['pipeline']}" for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].bar(labels, [r["cpu_seconds"] for r in rows], color=["tab:blue" if r["pipeline"] == "issue 26" else
                                                                  "tab:gray" for r in rows])
    axes[0].axhline(15, color="black", lw=0.8, ls="--")
    axes[0].set_ylabel("CPU-seconds per layer")
    axes[0].set_title("dashed: the 15 CPU-s target (4096×4096)", fontsize=9)
    axes[1].bar(labels, [r["heldout_relative_error"] for r in rows], color="tab:orange")
    axes[1].set_ylabel("held-out relative output error")
    for ax in axes:
        ax.tick_params(axis="x", labelsize=7)
    block = payload.get("block")
    title = "Quant-dLLM quantization cost on CPU"
    if block:
        title += (f" — one {block['d_model']}-wide block: {block['wall_seconds']:.0f} s, peak "
                  f"{(block['block_peak_rss_bytes'] or 0) / 2**30:.2f} GiB")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
