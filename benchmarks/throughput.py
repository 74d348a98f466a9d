"""Generation throughput (tokens/s) and peak memory against batch size and sequence length, for masked-diffusion
decoding (at one token per step and at 4 tokens per step) and the autoregressive baseline (with its KV cache).

    python benchmarks/throughput.py               # bench-build architecture, random weights (speed only)
    python benchmarks/throughput.py --quick       # fewer configurations

Each configuration runs in a fresh subprocess so its peak resident memory (CPU) or peak allocated memory (CUDA)
is its own. Writes benchmarks/results/throughput.json and .png and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from _common import RESULTS, machine, markdown_table, write_json  # noqa: E402


def _measure(kind: str, batch: int, length: int, tokens_per_step: int, repeats: int) -> dict:
    """Runs inside the subprocess."""
    import torch
    from transformers import GPT2LMHeadModel

    import hf_dlm  # noqa: F401
    from _common import median_seconds
    from hf_dlm import LLaDAModelLM
    from hf_dlm.recipes.reference import REFERENCE_SETTINGS, ar_config, count_parameters, oracle_and_tokenizer, \
        teacher_config

    settings = REFERENCE_SETTINGS["bench"]
    _, tokenizer = oracle_and_tokenizer(settings)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    teacher = LLaDAModelLM(teacher_config(settings, tokenizer))
    teacher.config.max_sequence_length = max(teacher.config.max_sequence_length, length + 1)
    if kind == "mdm":
        model = teacher.to(device).eval()

        def run():
            empty = torch.empty(batch, 0, dtype=torch.long, device=device)
            return model.generate(empty, max_new_tokens=length, steps=length // tokens_per_step,
                                  stop_at_eos=False, suppress_mask_token=True)
    else:
        settings_long = type(settings)(**{**settings.__dict__, "seq_len": length})
        model = GPT2LMHeadModel(ar_config(settings_long, tokenizer, count_parameters(teacher))).to(device).eval()

        def run():
            bos = torch.full((batch, 1), tokenizer.bos_token_id, device=device)
            return model.generate(bos, attention_mask=torch.ones_like(bos), do_sample=False, max_new_tokens=length,
                                  min_new_tokens=length, pad_token_id=tokenizer.pad_token_id)
    baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        run()  # warm-up
        seconds, times, _ = median_seconds(run, repeats)
    if device == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline_rss) / 1024
    return {"kind": kind, "batch": batch, "length": length, "tokens_per_step": tokens_per_step,
            "seconds": seconds, "times": times, "tokens_per_second": batch * length / seconds,
            "peak_memory_mb": peak_mb, "device": device}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_measure(**json.loads(args.child), repeats=args.repeats)))
        return
    batches = (1, 16) if args.quick else (1, 8, 64)
    lengths = (32,) if args.quick else (32, 64)
    configs = [dict(kind=k, batch=b, length=n, tokens_per_step=t) for n in lengths for b in batches
               for k, t in (("mdm", 1), ("mdm", 4), ("ar", 1))]
    rows = []
    for config in configs:
        out = subprocess.run([sys.executable, __file__, "--child", json.dumps(config), "--repeats", str(args.repeats)],
                             capture_output=True, text=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{r['kind']:4s} x{r['tokens_per_step']} batch {r['batch']:4d} length {r['length']:4d}: "
              f"{r['tokens_per_second']:9.0f} tok/s  peak {r['peak_memory_mb']:7.1f} MB", flush=True)
    write_json("throughput", {"benchmark": "throughput", "machine": machine(), "rows": rows})
    _plot(rows)
    label = {("mdm", 1): "MDM, 1 token/step", ("mdm", 4): "MDM, 4 tokens/step", ("ar", 1): "AR (KV cache)"}
    print(markdown_table(["model", "batch", "length", "tokens/s", "peak MB"],
                         [[label[(r["kind"], r["tokens_per_step"])], r["batch"], r["length"],
                           round(r["tokens_per_second"]), round(r["peak_memory_mb"], 1)] for r in rows]))


def _plot(rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = sorted({r["length"] for r in rows})
    fig, axes = plt.subplots(1, len(lengths), figsize=(4 * len(lengths), 3.6), sharey=True)
    for ax, length in zip(list(axes) if len(lengths) > 1 else [axes], lengths):
        for (kind, tps), style in {("mdm", 1): "o-", ("mdm", 4): "s-", ("ar", 1): "^--"}.items():
            sel = sorted((r for r in rows if r["length"] == length and r["kind"] == kind and r["tokens_per_step"] == tps),
                         key=lambda r: r["batch"])
            ax.plot([r["batch"] for r in sel], [r["tokens_per_second"] for r in sel], style,
                    label=f"{'MDM' if kind == 'mdm' else 'AR'}{f', {tps} tok/step' if kind == 'mdm' else ''}")
        ax.set(xscale="log", yscale="log", xlabel="batch size", title=f"length {length}")
    (axes[0] if len(lengths) > 1 else axes).set_ylabel("generated tokens / s")
    (axes[0] if len(lengths) > 1 else axes).legend(fontsize=8)
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / "throughput.png", dpi=120)


if __name__ == "__main__":
    main()
