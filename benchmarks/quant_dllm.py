"""Quant-dLLM on the oracle teacher: 2-bit quantization against same-bit baselines, bitsandbytes NF4 and the
paper's ablations (Table 2), measured on quality the oracle knows exactly.

    python benchmarks/quant_dllm.py                 # the bench teacher (trained on first use, minutes)
    python benchmarks/quant_dllm.py --size tiny     # seconds, a smoke run

For every variant: held-out ELBO NLL per token (model side, 32 Monte-Carlo masks per sequence), oracle gen-PPL of
unconditional samples at --steps steps (the reference sampler: random order, top-p 0.9), bits per weight (sign
planes only and with the fp16 scales), bytes of the quantized linears and of the whole model, and the time of
``quantize_model``. Also the time and memory of each block of the full method. Writes
benchmarks/results/quant_dllm[_SIZE].json and .png and prints a markdown table.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
import hf_dlm  # noqa: E402,F401
from _common import RESULTS, machine, markdown_table, sample_mdm, write_json  # noqa: E402
from hf_dlm.evaluation.likelihood import elbo_log_likelihood  # noqa: E402
from hf_dlm.evaluation.oracle import OracleLanguage  # noqa: E402
from hf_dlm.recipes.reference import REFERENCE_TOP_P, get_settings, load_reference  # noqa: E402
from hf_dlm.evaluation.text_metrics import text_metrics  # noqa: E402
from hf_dlm.quantization import QuantDLLMConfig, QuantDLLMQuantizer, quantization_report  # noqa: E402
from hf_dlm.quantization.quantizer import default_modules_to_not_convert  # noqa: E402


def variants(block_size: int, abmp_fraction: float, importance_factor: float, iterations: int) -> dict:
    """name → (kind, config overrides). Same-bit baselines and ablations share the block partition."""
    full = dict(bits=2, orders=(1, 2, 3), block_size=block_size, abmp_fraction=abmp_fraction,
                importance_factor=importance_factor, rsr_iterations=iterations)
    return {
        "Quant-dLLM": ("same-bit", full),
        "ablation: MCS off": ("ablation", {**full, "use_mcs": False}),
        "ablation: DOR off": ("ablation", {**full, "use_dor": False}),
        "ablation: RSR off": ("ablation", {**full, "rsr_iterations": 0}),
        "ablation: ABMP off": ("ablation", {**full, "abmp_fraction": 0.0}),
        "RTN sign binarization (row scales)": ("same-bit", {**full, "scale_axes": "row", "rsr_iterations": 0,
                                                              "use_dor": False, "abmp_fraction": 0.0}),
        "ARB-style row-column (no data)": ("same-bit", {**full, "use_dor": False, "abmp_fraction": 0.0}),
    }


def nf4_model(teacher, folder: str):
    """bitsandbytes 4-bit NF4 of the same linears (head and embeddings kept), through ``from_pretrained``."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    teacher.save_pretrained(folder)
    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32,
                                llm_int8_skip_modules=["model.transformer.ff_out", "model.transformer.wte"])
    return AutoModelForCausalLM.from_pretrained(folder, quantization_config=config, device_map="cpu").eval()


def nf4_bits(model) -> dict:
    import bitsandbytes as bnb

    weights, stored = 0, 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            weights += module.in_features * module.out_features
            state = module.weight.quant_state
            stored += module.weight.numel() * module.weight.element_size()
            stored += state.absmax.numel() * state.absmax.element_size()
    total = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    return {"sign_bits_per_weight": None, "bits_per_weight": 8 * stored / weights, "quantized_bytes": stored,
            "model_bytes": total}


def evaluate(model, tokenizer, oracle, heldout, args) -> dict:
    """Held-out NLL per token (same masks for every variant: the seed is fixed, so differences are paired),
    its per-sequence values, and gen-PPL."""
    generator = torch.Generator().manual_seed(args.seed)
    est = elbo_log_likelihood(model, heldout[:, :0], heldout, mc_samples=args.mc_samples,
                              batch_size=args.mc_samples, generator=generator)
    per_sequence = -est.log_likelihood / heldout.shape[1]
    words, _ = sample_mdm(model, tokenizer, args.num_samples, heldout.shape[1], args.steps, "random", 1.0,
                          REFERENCE_TOP_P, args.num_samples, args.seed)
    return {"heldout_nll": float(per_sequence.mean()),
            "heldout_nll_stderr": float(per_sequence.std() / len(per_sequence) ** 0.5),
            "per_sequence_nll": per_sequence.tolist(), "gen_ppl": text_metrics(oracle, words).gen_ppl}


def add_paired_differences(rows: list[dict], reference: str = "Quant-dLLM") -> None:
    """NLL(variant) − NLL(Quant-dLLM) with the paired standard error over held-out sequences."""
    base = torch.tensor(next(r for r in rows if r["variant"] == reference)["per_sequence_nll"])
    for row in rows:
        diff = torch.tensor(row.pop("per_sequence_nll")) - base
        row["nll_minus_quant_dllm"] = float(diff.mean())
        row["nll_minus_quant_dllm_stderr"] = float(diff.std() / len(diff) ** 0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="bench", help="reference build: tiny | bench")
    parser.add_argument("--block-size", type=int, default=32)
    parser.add_argument("--abmp-fraction", type=float, default=0.125,
                        help="the paper's 0.05 promotes no block of a 4-12 block layer; see docs/quant_dllm.md")
    parser.add_argument("--importance-factor", type=float, default=2.0)
    parser.add_argument("--rsr-iterations", type=int, default=15)
    parser.add_argument("--calibration-sequences", type=int, default=128)
    parser.add_argument("--heldout", type=int, default=1024)
    parser.add_argument("--mc-samples", type=int, default=32)
    parser.add_argument("--num-samples", type=int, default=512)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-nf4", action="store_true", help="skip the bitsandbytes row")
    parser.add_argument("--replot", action="store_true", help="redraw the plot from the saved JSON and stop")
    args = parser.parse_args()
    if args.replot:
        suffix = "" if args.size == "bench" else f"_{args.size}"
        saved = json.loads((RESULTS / f"quant_dllm{suffix}.json").read_text())
        _plot(saved["rows"], RESULTS / f"quant_dllm{suffix}.png")
        return

    settings = get_settings(args.size)
    oracle = OracleLanguage(seed=settings.oracle_seed)
    teacher, tokenizer, info = load_reference("teacher", args.size)
    length = settings.seq_len
    calibration = oracle.sample(args.calibration_sequences, length, seed=args.seed + 4242)
    heldout = oracle.sample(args.heldout, length, seed=args.seed + 777)

    rows = []
    fp = {"variant": "full precision (fp32)", "kind": "reference", **quantization_report(teacher),
          "bits_per_weight": 32.0, "sign_bits_per_weight": None, "quantize_seconds": None}
    kept = default_modules_to_not_convert(teacher)  # the same head/embedding rule the quantizer applies
    fp["quantized_bytes"] = sum(m.weight.numel() * m.weight.element_size() for n, m in teacher.named_modules()
                                if isinstance(m, torch.nn.Linear) and n not in kept)
    rows.append({**fp, **evaluate(teacher, tokenizer, oracle, heldout, args)})
    print(rows[-1]["variant"], round(rows[-1]["heldout_nll"], 4), round(rows[-1]["gen_ppl"], 2), flush=True)
    block_reports = None
    for name, (kind, overrides) in variants(args.block_size, args.abmp_fraction, args.importance_factor,
                                            args.rsr_iterations).items():
        config = QuantDLLMConfig(**overrides, calibration_seq_len=length,
                                 num_calibration_sequences=args.calibration_sequences, seed=args.seed)
        model = copy.deepcopy(teacher)
        quantizer = QuantDLLMQuantizer(config)
        start = time.perf_counter()
        quantizer.quantize_model(model, calibration_data=calibration, show_progress=False)
        seconds = time.perf_counter() - start
        report = quantization_report(model)
        report.pop("modules")
        rows.append({"variant": name, "kind": kind, **report, "quantize_seconds": seconds,
                     "config": config.to_diff_dict(), **evaluate(model, tokenizer, oracle, heldout, args)})
        if name == "Quant-dLLM":
            block_reports = [{"block": r.index, "seconds": r.seconds, "rss_bytes": r.rss_bytes,
                              "peak_device_bytes": r.peak_device_bytes} for r in quantizer.block_reports]
        print(name, round(rows[-1]["heldout_nll"], 4), round(rows[-1]["gen_ppl"], 2), flush=True)
    narrow = min(m.in_features for m in teacher.modules() if isinstance(m, torch.nn.Linear))
    if narrow < 64 and not args.no_nf4:
        print(f"skipping NF4: bitsandbytes' CPU 4-bit path fails on layers narrower than 64 (found {narrow})")
    if not args.no_nf4 and narrow >= 64:
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            model = nf4_model(teacher, folder)
            seconds = time.perf_counter() - start
            rows.append({"variant": "bitsandbytes NF4 (4-bit)", "kind": "reference", **nf4_bits(model),
                         "quantize_seconds": seconds, **evaluate(model, tokenizer, oracle, heldout, args)})
        print(rows[-1]["variant"], round(rows[-1]["heldout_nll"], 4), round(rows[-1]["gen_ppl"], 2), flush=True)

    add_paired_differences(rows)
    suffix = "" if args.size == "bench" else f"_{args.size}"
    payload = {"benchmark": "quant_dllm", "size": args.size, "teacher": info, "args": vars(args),
               "machine": machine(), "rows": rows, "quantize_blocks": block_reports}
    write_json(f"quant_dllm{suffix}", payload)
    _plot(rows, RESULTS / f"quant_dllm{suffix}.png")
    header = ["variant", "kind", "held-out NLL", "± se", "Δ vs Quant-dLLM (paired se)", f"gen-PPL @{args.steps}",
              "sign bits/w", "bits/w", "linear bytes", "model bytes", "quantize s"]
    table = [[r["variant"], r["kind"], round(r["heldout_nll"], 4), round(r["heldout_nll_stderr"], 4),
              f"{r['nll_minus_quant_dllm']:+.4f} ({r['nll_minus_quant_dllm_stderr']:.4f})",
              round(r["gen_ppl"], 2), r["sign_bits_per_weight"] if r["sign_bits_per_weight"] is not None else "—",
              round(r["bits_per_weight"], 2), r["quantized_bytes"], r["model_bytes"],
              "—" if r["quantize_seconds"] is None else round(r["quantize_seconds"], 2)] for r in rows]
    print(markdown_table(header, table))


def _plot(rows: list[dict], path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    names = [r["variant"] for r in rows]
    colors = [{"reference": "tab:gray", "same-bit": "tab:blue", "ablation": "tab:orange"}[r["kind"]] for r in rows]
    axes[0].barh(names, [r["nll_minus_quant_dllm"] for r in rows],
                 xerr=[r["nll_minus_quant_dllm_stderr"] for r in rows], color=colors)
    axes[0].axvline(0, color="black", lw=0.8)
    axes[0].set_xlabel("held-out NLL − Quant-dLLM's (nats/token, paired s.e.)")
    ppl = [r["gen_ppl"] for r in rows]
    axes[1].barh(names, ppl, color=colors)
    axes[1].set_xlim(min(ppl) * 0.9, max(ppl) * 1.02)
    axes[1].set_xlabel("oracle gen-PPL")
    axes[1].set_yticklabels([])
    for ax in axes:
        ax.invert_yaxis()
    fig.suptitle("Quant-dLLM on the oracle teacher (blue: 2-bit methods, orange: ablations, grey: references)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
