"""Quality and diversity of the reference masked-diffusion teacher against the number of denoising steps, with the
autoregressive baseline and the data measured in the same run.

    python benchmarks/quality_vs_steps.py                 # the bench build (trains it on first use, minutes)
    python benchmarks/quality_vs_steps.py --size tiny     # seconds, for a smoke run

Writes benchmarks/results/quality_vs_steps[_SIZE].json and .png and prints a markdown table. Wall times are the
median of --repeats runs; the AR row is measured in the same run, and every MDM time is also given as a ratio to it.
"""

from __future__ import annotations

import argparse
import os
import sys


sys.path.insert(0, os.path.dirname(__file__))
import hf_dlm  # noqa: E402,F401
from _common import markdown_table, machine, median_seconds, sample_ar, sample_mdm, write_json, RESULTS  # noqa: E402
from hf_dlm.recipes.reference import REFERENCE_TOP_P, get_settings, load_reference  # noqa: E402
from hf_dlm.evaluation.oracle import OracleLanguage  # noqa: E402
from hf_dlm.evaluation.text_metrics import data_reference, text_metrics  # noqa: E402

STEPS = (1, 2, 4, 8, 16, 32, 64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="bench", help="reference build: tiny | bench")
    parser.add_argument("--num-samples", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--remasking", default="random")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=REFERENCE_TOP_P, help="nucleus, for both models")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    settings = get_settings(args.size)
    length = settings.seq_len
    oracle = OracleLanguage(seed=settings.oracle_seed)
    teacher, tokenizer, teacher_info = load_reference("teacher", args.size)
    ar, _, ar_info = load_reference("ar", args.size)
    rows = []
    data = data_reference(oracle, args.num_samples, length, seed=args.seed + 777)
    rows.append({"model": "data", "steps": None, "nfe": None, **_metrics(data), "seconds": None, "ratio_to_ar": None})

    ar_seconds, ar_times, (ar_words, ar_nfe) = median_seconds(
        lambda: sample_ar(ar, tokenizer, args.num_samples, length, args.temperature, args.top_p, args.batch_size,
                          args.seed),
        args.repeats)
    rows.append({"model": "autoregressive", "steps": length, "nfe": ar_nfe,
                 **_metrics(text_metrics(oracle, ar_words)), "seconds": ar_seconds, "ratio_to_ar": 1.0})
    for steps in [s for s in STEPS if s <= length]:
        seconds, _, (words, nfe) = median_seconds(
            lambda: sample_mdm(teacher, tokenizer, args.num_samples, length, steps, args.remasking,
                               args.temperature, args.top_p, args.batch_size, args.seed), args.repeats)
        rows.append({"model": "masked diffusion", "steps": steps, "nfe": nfe,
                     **_metrics(text_metrics(oracle, words)), "seconds": seconds,
                     "ratio_to_ar": seconds / ar_seconds})
        print(f"steps {steps:3d}: gen-PPL {rows[-1]['gen_ppl']:.2f}  entropy {rows[-1]['entropy']:.3f}", flush=True)

    suffix = "" if args.size == "bench" else f"_{args.size}"
    payload = {"benchmark": "quality_vs_steps", "size": args.size, "settings": teacher_info["settings"],
               "teacher": teacher_info, "ar": ar_info, "sampler": {"remasking": args.remasking,
                                                                    "temperature": args.temperature,
                                                                    "top_p": args.top_p},
               "num_samples": args.num_samples, "repeats": args.repeats, "machine": machine(), "rows": rows}
    write_json(f"quality_vs_steps{suffix}", payload)
    _plot(rows, RESULTS / f"quality_vs_steps{suffix}.png", args)
    header = ["model", "steps", "NFE", "gen-PPL", "NLL", "entropy", "distinct-2", "seconds", "× AR time"]
    table = [[r["model"], r["steps"] or "—", r["nfe"] or "—", r["gen_ppl"], r["nll"], r["entropy"], r["distinct_2"],
              "—" if r["seconds"] is None else round(r["seconds"], 2),
              "—" if r["ratio_to_ar"] is None else round(r["ratio_to_ar"], 2)] for r in rows]
    print(markdown_table(header, table))


def _metrics(m) -> dict:
    return {"gen_ppl": m.gen_ppl, "nll": m.nll, "entropy": m.entropy, "distinct_2": m.distinct[2]}


def _plot(rows: list[dict], path, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mdm = [r for r in rows if r["model"] == "masked diffusion"]
    data = next(r for r in rows if r["model"] == "data")
    ar = next(r for r in rows if r["model"] == "autoregressive")
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    steps = [r["steps"] for r in mdm]
    left.plot(steps, [r["gen_ppl"] for r in mdm], "o-", label=f"masked diffusion ({args.remasking}, T={args.temperature}, top-p {args.top_p})")
    left.axhline(ar["gen_ppl"], color="tab:orange", ls="--", label=f"autoregressive ({ar['nfe'] // max(1, (args.num_samples + args.batch_size - 1) // args.batch_size)} NFE)")
    left.axhline(data["gen_ppl"], color="k", ls=":", label="data")
    left.set(xscale="log", yscale="log", xlabel="denoising steps", ylabel="oracle generative perplexity",
             title="quality (lower is better)")
    left.set_xticks(steps, [str(s) for s in steps])
    left.legend(fontsize=8)
    right.plot(steps, [r["entropy"] for r in mdm], "o-")
    right.axhline(ar["entropy"], color="tab:orange", ls="--")
    right.axhline(data["entropy"], color="k", ls=":")
    right.set(xscale="log", xlabel="denoising steps", ylabel="unigram entropy (nats)", title="diversity")
    right.set_xticks(steps, [str(s) for s in steps])
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
