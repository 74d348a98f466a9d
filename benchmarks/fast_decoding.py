"""Fast decoding: Fast-dLLM's key/value cache (none / prefix / dual) and parallel decoding (fixed steps / threshold /
factor), as tokens-per-second ratios to uncached decoding measured in the same run.

    python benchmarks/fast_decoding.py                       # both parts (~25 min on 2 cores)
    python benchmarks/fast_decoding.py --parts teacher       # the bench teacher only (~3 min)
    python benchmarks/fast_decoding.py --parts wide          # the LLaDA-8B-width model only

**teacher** — the bench oracle teacher (0.9 M parameters, trained on 64-word sequences, so its canvas is BOS +
``--teacher-prompt`` + ``--teacher-answer`` words): ``--num-prompts`` oracle prompts decoded at once, LLaDA's
``low_confidence`` rule at temperature 0 (Fast-dLLM's setting), blocks of ``--teacher-block``. Scored by the exact
oracle: NLL of the answer given the prompt (nats/word) and unigram entropy; token agreement with the uncached run of
the same rule. Every configuration is timed ``--repeats`` times, interleaved with the others; medians.

**wide** — an LLaDA-8B-width model (d 4096, 32 heads, MLP 12288, vocabulary 126,464) with 2 layers, random weights,
bf16, batch 1, prompt ``--prompt-lengths`` + answer 256 in blocks of 32. Random weights have no confident tokens, so
only fixed-step decoding is meaningful here. Two measurements:
(1) *pass costs* — medians of interleaved repeats of each pass ``generate`` makes (a full canvas pass, a dual-cache
block pass, the prefix-cache pass of every block) — and the decoding time of 256 steps (one token per pass) and
64 steps composed from them by the exact pass schedule of each mode;
(2) *end to end* — one ``generate(steps=64)`` per mode at prompt 256, as the check of (1).

Writes benchmarks/results/fast_decoding.json and fast_decoding.png and prints markdown tables.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
import hf_dlm  # noqa: E402,F401
from _common import RESULTS, machine, markdown_table, write_json  # noqa: E402
from hf_dlm import LLaDAConfig, LLaDAModelLM  # noqa: E402
from hf_dlm.evaluation.text_metrics import text_metrics  # noqa: E402
from hf_dlm.generation.cache import MaskedDiffusionCache  # noqa: E402
from hf_dlm.recipes.reference import get_settings, load_reference, oracle_and_tokenizer  # noqa: E402

CACHES = (None, "prefix", "dual")
RULES = {"fixed": {}, "threshold 0.9": {"threshold": 0.9}, "threshold 0.5": {"threshold": 0.5},
         "factor 1.0": {"factor": 1.0}}


def _name(cache):
    return cache or "none"


@torch.no_grad()
def teacher_part(args) -> dict:
    settings = get_settings("bench")
    oracle, tokenizer = oracle_and_tokenizer(settings)
    teacher, _, _ = load_reference("teacher", "bench")
    torch.set_num_threads(args.threads)
    words = oracle.sample(args.num_prompts, args.teacher_prompt + args.teacher_answer, seed=args.seed + 4242)
    bos = torch.full((args.num_prompts, 1), tokenizer.bos_token_id)
    prompts = torch.cat([bos, words[:, :args.teacher_prompt]], dim=1)
    common = dict(max_new_tokens=args.teacher_answer, block_length=args.teacher_block, steps=args.teacher_answer,
                  remasking="low_confidence", temperature=0.0, suppress_tokens=list(tokenizer.all_special_ids),
                  stop_at_eos=False, return_dict_in_generate=True)
    configs = [(cache, rule) for rule in RULES for cache in CACHES]
    times: dict = {c: [] for c in configs}
    outputs: dict = {}
    encoded: dict = {}  # token positions the model encodes over one generate(): the compute, free of timing noise
    fed = []
    teacher.register_forward_pre_hook(lambda module, args, kwargs: fed.append(kwargs["input_ids"].numel()),
                                      with_kwargs=True)
    for repeat in range(args.repeats + 1):  # the first round warms up and is not timed
        for cache, rule in configs:
            fed.clear()
            start = time.perf_counter()
            out = teacher.generate(prompts, cache_implementation=cache, **RULES[rule], **common)
            seconds = time.perf_counter() - start
            if repeat:
                times[(cache, rule)].append(seconds)
            outputs[(cache, rule)] = out
            encoded[(cache, rule)] = sum(fed)
    rows = []
    base = statistics.median(times[(None, "fixed")])
    for cache, rule in configs:
        out = outputs[(cache, rule)]
        answer = out.sequences[:, 1:]  # drop BOS: prompt words + answer words
        metrics = text_metrics(oracle, answer, prompt_length=args.teacher_prompt)
        reference = outputs[(None, rule)].sequences
        seconds = statistics.median(times[(cache, rule)])
        rows.append({"cache": _name(cache), "rule": rule, "nfe": out.nfe, "seconds": seconds,
                     "tokens_per_s": args.num_prompts * args.teacher_answer / seconds,
                     "speedup": base / seconds, "positions_encoded": encoded[(cache, rule)],
                     "encoded_ratio": encoded[(None, "fixed")] / encoded[(cache, rule)],
                     "nll": metrics.nll, "entropy": metrics.entropy,
                     "agreement_with_uncached": float((out.sequences == reference).float()[:, prompts.shape[1]:].mean()),
                     "times": times[(cache, rule)]})
    uncached_nll = {r["rule"]: r["nll"] for r in rows if r["cache"] == "none"}
    for row in rows:
        row["nll_change_vs_uncached_same_rule"] = row["nll"] / uncached_nll[row["rule"]] - 1
        row["nll_change_vs_uncached_fixed"] = row["nll"] / uncached_nll["fixed"] - 1
    print(markdown_table(["cache", "rule", "NFE", "× tokens/s", "÷ positions", "NLL", "ΔNLL vs fixed", "entropy",
                          "agreement"],
                         [[r["cache"], r["rule"], r["nfe"], r["speedup"], r["encoded_ratio"], r["nll"],
                           f"{100 * r['nll_change_vs_uncached_fixed']:+.1f} %", r["entropy"],
                           r["agreement_with_uncached"]] for r in rows]))
    return {"num_prompts": args.num_prompts, "prompt_words": args.teacher_prompt, "answer": args.teacher_answer,
            "block_length": args.teacher_block, "rows": rows}


def wide_model() -> LLaDAModelLM:
    config = LLaDAConfig(d_model=4096, n_heads=32, n_kv_heads=32, n_layers=2, mlp_hidden_size=12288,
                         vocab_size=126464, embedding_size=126464, mask_token_id=126336, max_sequence_length=4096,
                         rope_theta=500000.0)
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        model = LLaDAModelLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def _timed(fn, times: list) -> None:
    """Run ``fn`` once and append its wall time to ``times`` (the medians are taken later)."""
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)


@torch.no_grad()
def wide_part(args) -> dict:
    torch.set_num_threads(args.threads)
    model = wide_model()
    answer, block = 256, 32
    blocks = answer // block
    results = []
    for prompt_length in args.prompt_lengths:
        canvas = prompt_length + answer
        x = torch.randint(0, 100_000, (1, canvas), generator=torch.Generator().manual_seed(0))
        cache = MaskedDiffusionCache("dual")
        model(x, cache=cache)
        passes = {"full": lambda: model(x)}
        passes["dual"] = lambda: model(x[:, prompt_length:prompt_length + block], cache=cache,
                                       cache_position=torch.arange(prompt_length, prompt_length + block))
        for b in range(blocks):
            start = prompt_length + b * block
            passes[f"prefix{b}"] = (lambda s=start: model(x[:, s:], cache=cache,
                                                          cache_position=torch.arange(s, canvas)))
        times = {name: [] for name in passes}
        for _ in range(args.wide_repeats):  # interleaved
            for name, fn in passes.items():
                _timed(fn, times[name])
        cost = {name: statistics.median(t) for name, t in times.items()}
        composed = {}
        for steps in (256, 64):
            per_block = steps // blocks
            none = steps * cost["full"]
            dual = blocks * cost["full"] + (steps - blocks) * cost["dual"]
            prefix = sum(cost["full"] + (per_block - 1) * cost[f"prefix{b}"] for b in range(blocks))
            composed[steps] = {"none": answer / none, "prefix": answer / prefix, "dual": answer / dual}
        entry = {"prompt": prompt_length, "answer": answer, "block_length": block, "pass_seconds": cost,
                 "pass_times": times, "composed_tokens_per_s": composed,
                 "composed_speedup": {steps: {m: v / c["none"] for m, v in c.items()} for steps, c in composed.items()}}
        print(f"\nwide, prompt {prompt_length}: pass seconds full {cost['full']:.2f}, dual {cost['dual']:.2f}, "
              f"prefix {cost['prefix0']:.2f} … {cost[f'prefix{blocks - 1}']:.2f}")
        print(markdown_table(["steps", "none tok/s", "prefix ×", "dual ×"],
                             [[s, c["none"], c["prefix"] / c["none"], c["dual"] / c["none"]]
                              for s, c in composed.items()]))
        if prompt_length in args.end_to_end:
            e2e = {}
            for cache in CACHES:
                start = time.perf_counter()
                out = model.generate(x[:, :prompt_length], max_new_tokens=answer, block_length=block, steps=64,
                                     cache_implementation=cache, stop_at_eos=False, return_dict_in_generate=True)
                e2e[_name(cache)] = {"seconds": time.perf_counter() - start, "nfe": out.nfe}
            for name in e2e:
                e2e[name]["speedup"] = e2e["none"]["seconds"] / e2e[name]["seconds"]
            entry["end_to_end_steps64"] = e2e
            print("end to end, 64 steps: " + ", ".join(f"{k} {v['seconds']:.1f} s ({v['speedup']:.2f}×)"
                                                        for k, v in e2e.items()))
        results.append(entry)
    return {"model": "LLaDA-8B width (d 4096, MLP 12288, vocab 126464), 2 layers, random weights, bf16, batch 1",
            "runs": results}


def plot(payload: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [k for k in ("teacher", "wide") if k in payload]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4))
    axes = [axes] if len(panels) == 1 else axes
    for ax, key in zip(axes, panels):
        if key == "teacher":
            rows = payload["teacher"]["rows"]
            for cache, marker in zip(("none", "prefix", "dual"), "os^"):
                sel = [r for r in rows if r["cache"] == cache]
                ax.scatter([r["speedup"] for r in sel], [r["nll"] for r in sel], marker=marker, label=cache)
                for r in sel:
                    ax.annotate(r["rule"], (r["speedup"], r["nll"]), fontsize=7)
            ax.set_xlabel("tokens/s ÷ uncached fixed-step")
            ax.set_ylabel("oracle NLL of the answer (nats/word)")
            ax.set_title("bench teacher")
        else:
            labels, values = [], []
            for run in payload["wide"]["runs"]:
                for steps, speed in run["composed_speedup"].items():
                    for mode in ("prefix", "dual"):
                        labels.append(f"P{run['prompt']}\n{steps} st\n{mode}")
                        values.append(speed[mode])
            ax.bar(range(len(values)), values)
            ax.set_xticks(range(len(values)), labels, fontsize=7)
            ax.axhline(1.0, color="k", lw=0.8)
            ax.set_ylabel("tokens/s ÷ uncached")
            ax.set_title("LLaDA-8B width, 2 layers, bf16")
        ax.legend(fontsize=8) if key == "teacher" else None
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["teacher", "wide"], choices=["teacher", "wide"])
    parser.add_argument("--num-prompts", type=int, default=64)
    parser.add_argument("--teacher-prompt", type=int, default=32)
    parser.add_argument("--teacher-answer", type=int, default=32)
    parser.add_argument("--teacher-block", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--prompt-lengths", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--end-to-end", type=int, nargs="*", default=[256],
                        help="prompt lengths that also get one end-to-end generate(steps=64) per mode")
    parser.add_argument("--wide-repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="fast_decoding")
    args = parser.parse_args()
    payload = {"benchmark": "fast_decoding", "machine": machine()}
    if "teacher" in args.parts:
        payload["teacher"] = teacher_part(args)
    if "wide" in args.parts:
        payload["wide"] = wide_part(args)
    path = write_json(args.output, payload)
    plot(payload, RESULTS / f"{args.output}.png")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
