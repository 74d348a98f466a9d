"""Fast decoding: Fast-dLLM's key/value cache (none / prefix / dual) and parallel decoding (fixed steps / threshold /
factor), as tokens-per-second ratios to uncached decoding measured in the same run.

    python benchmarks/fast_decoding.py                       # every part
    python benchmarks/fast_decoding.py --parts teacher       # the bench teacher only (~3 min)
    python benchmarks/fast_decoding.py --parts confident     # the permuted-copy model (trains once, then cached)
    python benchmarks/fast_decoding.py --parts wide          # the LLaDA-8B-width model only

**teacher** — the bench oracle teacher (0.9 M parameters, trained on 64-word sequences, so its canvas is BOS +
``--teacher-prompt`` + ``--teacher-answer`` words): ``--num-prompts`` oracle prompts decoded at once, LLaDA's
``low_confidence`` rule at temperature 0 (Fast-dLLM's setting), blocks of ``--teacher-block``. Scored by the exact
oracle: NLL of the answer given the prompt (nats/word) and unigram entropy; token agreement with the uncached run of
the same rule. Every configuration is timed ``--repeats`` times, interleaved with the others; medians.

**confident** — parallel decoding where the model is sure: a small LLaDA (d 128, 2 layers) trained on the permuted
copy task of ``_confident_task.py`` (prompt BOS + 255 words, answer 255 mapped words + EOS, so 256 and 256 as the
wide part, in blocks of 32), ``--confident-prompts`` held-out prompts at once, ``low_confidence`` at temperature 0,
fixed steps / thresholds 0.9 and 0.7 / factor 1.0, uncached and cached; token accuracy and exact answers against the
known answers.

**wide** — an LLaDA-8B-width model (d 4096, 32 heads, MLP 12288, vocabulary 126,464) with 2 layers, random weights,
bf16, batch 1, prompt ``--prompt-lengths`` + answer 256 in blocks of 32. Random weights have no confident tokens, so
only fixed-step decoding is meaningful here. Two measurements:
(1) *pass costs* — medians of interleaved repeats of each pass ``generate`` makes (an uncached pass with the head
on the block, ``logits_to_keep``; the same with the head on the whole canvas, as the authors' loops; a cache refresh;
a dual-cache block pass; the prefix-cache pass of every block) — and the decoding time of 256 steps (one token per
pass) and 64 steps composed from them by the exact pass schedule of each mode, as ratios to uncached decoding with
either head;
(2) *end to end* — ``generate(steps=64)`` per mode at prompt 256 (median of ``--end-to-end-repeats`` interleaved
runs), as the check of (1);
(3) *at LLaDA-8B's depth* — every pass kind is also timed with the second layer removed (same weights), which splits
its cost into a per-layer part and a fixed part (embedding, head, per-call overhead); the costs at
``--compose-layers`` (32) layers are fixed + 32 × per-layer, composed into the same tables.

The teacher part also times the fixed and threshold-0.5 rules with compiled passes (``compile_config``), uncached
and with the dual cache; the compilation itself is in the untimed first round (``first_call_seconds``).

Writes benchmarks/results/fast_decoding.json and fast_decoding.png and prints markdown tables.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
from transformers.generation.configuration_utils import CompileConfig

sys.path.insert(0, os.path.dirname(__file__))
import hf_dlm  # noqa: E402,F401
from _common import RESULTS, machine, markdown_table, write_json  # noqa: E402
from _confident_task import evaluation_batch, trained_model  # noqa: E402
from hf_dlm import LLaDAConfig, LLaDAModelLM  # noqa: E402
from hf_dlm.evaluation.text_metrics import text_metrics  # noqa: E402
from hf_dlm.generation.cache import MaskedDiffusionCache  # noqa: E402
from hf_dlm.recipes.reference import get_settings, load_reference, oracle_and_tokenizer  # noqa: E402

CACHES = (None, "prefix", "dual")
RULES = {"fixed": {}, "threshold 0.9": {"threshold": 0.9}, "threshold 0.5": {"threshold": 0.5},
         "factor 1.0": {"factor": 1.0}}


def _name(cache):
    return cache or "none"


def _rule(rule: str, rules: dict = RULES) -> dict:
    """``generate`` settings of a row: a rule of ``rules``, its name + " compiled" for compiled passes."""
    if rule.endswith(" compiled"):
        return {**rules[rule.removesuffix(" compiled")], "compile_config": CompileConfig(dynamic=False)}
    return rules[rule]


def _timed_generations(model, prompts, configs: list, common: dict, repeats: int, rules: dict = RULES) -> tuple:
    """``generate`` once per (cache, rule) configuration per round, the configurations interleaved; the first round
    warms up (compilation included) and is not timed. Returns the times per configuration, the warm-up times, the
    last outputs and the token positions the model encoded over one ``generate`` (the compute, free of timing
    noise)."""
    times: dict = {c: [] for c in configs}
    warm_up, outputs, encoded = {}, {}, {}
    fed = []
    handle = model.register_forward_pre_hook(lambda module, args, kwargs: fed.append(kwargs["input_ids"].numel()),
                                             with_kwargs=True)
    for repeat in range(repeats + 1):
        for cache, rule in configs:
            fed.clear()
            start = time.perf_counter()
            out = model.generate(prompts, cache_implementation=cache, **_rule(rule, rules), **common)
            seconds = time.perf_counter() - start
            if repeat:
                times[(cache, rule)].append(seconds)
            else:
                warm_up[(cache, rule)] = seconds
            outputs[(cache, rule)] = out
            encoded[(cache, rule)] = sum(fed)
    handle.remove()
    return times, warm_up, outputs, encoded


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
    configs += [(cache, rule + " compiled") for rule in ("fixed", "threshold 0.5") for cache in (None, "dual")]
    times, warm_up, outputs, encoded = _timed_generations(teacher, prompts, configs, common, args.repeats)
    rows = []
    base = statistics.median(times[(None, "fixed")])
    for cache, rule in configs:
        out = outputs[(cache, rule)]
        answer = out.sequences[:, 1:]  # drop BOS: prompt words + answer words
        metrics = text_metrics(oracle, answer, prompt_length=args.teacher_prompt)
        reference = outputs[(None, rule.removesuffix(" compiled"))].sequences
        seconds = statistics.median(times[(cache, rule)])
        rows.append({"cache": _name(cache), "rule": rule, "nfe": out.nfe, "seconds": seconds,
                     "tokens_per_s": args.num_prompts * args.teacher_answer / seconds,
                     "speedup": base / seconds, "positions_encoded": encoded[(cache, rule)],
                     "encoded_ratio": encoded[(None, "fixed")] / encoded[(cache, rule)],
                     "nll": metrics.nll, "entropy": metrics.entropy,
                     "agreement_with_uncached": float((out.sequences == reference).float()[:, prompts.shape[1]:].mean()),
                     "times": times[(cache, rule)], "first_call_seconds": warm_up[(cache, rule)]})
    uncached_nll = {r["rule"]: r["nll"] for r in rows if r["cache"] == "none"}
    for row in rows:
        row["nll_change_vs_uncached_same_rule"] = row["nll"] / uncached_nll[row["rule"].removesuffix(" compiled")] - 1
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


CONFIDENT_RULES = {"fixed": {}, "threshold 0.9": {"threshold": 0.9}, "threshold 0.7": {"threshold": 0.7},
                   "factor 1.0": {"factor": 1.0}}


@torch.no_grad()
def confident_part(args) -> dict:
    """Parallel decoding where the model is confident: the permuted-copy task of ``_confident_task``."""
    model, training = trained_model(args.confident_words, args.confident_train_steps)
    torch.set_num_threads(args.threads)
    prompts, answers = evaluation_batch(args.confident_words, args.confident_prompts)
    length = answers.shape[1]
    common = dict(max_new_tokens=length, block_length=args.confident_block, steps=length, remasking="low_confidence",
                  temperature=0.0, stop_at_eos=False, return_dict_in_generate=True)
    configs = [(cache, rule) for rule in CONFIDENT_RULES for cache in CACHES]
    configs += [("dual", "fixed compiled"), ("dual", "threshold 0.9 compiled")]
    times, warm_up, outputs, encoded = _timed_generations(model, prompts, configs, common, args.repeats,
                                                          CONFIDENT_RULES)
    base = statistics.median(times[(None, "fixed")])
    rows = []
    for cache, rule in configs:
        out = outputs[(cache, rule)]
        answer = out.sequences[:, prompts.shape[1]:]
        seconds = statistics.median(times[(cache, rule)])
        rows.append({"cache": _name(cache), "rule": rule, "nfe": out.nfe, "seconds": seconds,
                     "tokens_per_s": prompts.shape[0] * length / seconds, "speedup": base / seconds,
                     "positions_encoded": encoded[(cache, rule)],
                     "encoded_ratio": encoded[(None, "fixed")] / encoded[(cache, rule)],
                     "token_accuracy": float((answer == answers).float().mean()),
                     "exact_answers": float((answer == answers).all(dim=1).float().mean()),
                     "times": times[(cache, rule)], "first_call_seconds": warm_up[(cache, rule)]})
    print(markdown_table(["cache", "rule", "NFE", "× tokens/s", "÷ positions", "token accuracy", "exact answers"],
                         [[r["cache"], r["rule"], r["nfe"], r["speedup"], r["encoded_ratio"], r["token_accuracy"],
                           r["exact_answers"]] for r in rows]))
    return {"task": "permuted copy (benchmarks/_confident_task.py)", "words": args.confident_words,
            "answer": length, "block_length": args.confident_block, "num_prompts": args.confident_prompts,
            "training": training, "rows": rows}


def _wide_passes(model, x, prompt_length: int, block: int, blocks: int) -> dict:
    """Every pass kind ``generate`` makes on this canvas, as callables (a fresh cache, filled by one refresh)."""
    canvas = x.shape[1]
    cache = MaskedDiffusionCache("dual")
    head = torch.arange(prompt_length, prompt_length + block)  # the logits a pass needs: the block's
    passes = {"full": lambda: model(x),  # the authors' pass: the head over the whole canvas
              "full_block": lambda: model(x, logits_to_keep=head),  # generate()'s uncached pass
              "refresh": lambda: model(x, cache=cache, logits_to_keep=head)}
    passes["refresh"]()
    passes["dual"] = lambda: model(x[:, prompt_length:prompt_length + block], cache=cache,
                                   cache_position=torch.arange(prompt_length, prompt_length + block))
    for b in range(blocks):
        start = prompt_length + b * block
        passes[f"prefix{b}"] = (lambda s=start: model(x[:, s:], cache=cache, cache_position=torch.arange(s, canvas),
                                                      logits_to_keep=torch.arange(block)))
    return passes


def _compose(cost: dict, answer: int, blocks: int) -> dict:
    """Tokens per second of 256- and 64-step decoding from pass costs and each mode's exact pass schedule."""
    composed = {}
    for steps in (256, 64):
        per_block = steps // blocks
        composed[steps] = {
            "none (whole-canvas head)": answer / (steps * cost["full"]),
            "none": answer / (steps * cost["full_block"]),
            "prefix": answer / sum(cost["refresh"] + (per_block - 1) * cost[f"prefix{b}"] for b in range(blocks)),
            "dual": answer / (blocks * cost["refresh"] + (steps - blocks) * cost["dual"])}
    return composed


def _speedups(composed: dict, baseline: str) -> dict:
    return {steps: {m: v / c[baseline] for m, v in c.items()} for steps, c in composed.items()}


@torch.no_grad()
def wide_part(args) -> dict:
    torch.set_num_threads(args.threads)
    model = wide_model()
    layers = model.model.transformer.blocks
    answer, block = 256, 32
    blocks = answer // block
    results = []
    for prompt_length in args.prompt_lengths:
        x = torch.randint(0, 100_000, (1, prompt_length + answer), generator=torch.Generator().manual_seed(0))
        passes = {}
        for depth in (2, 1):  # the same weights with the second layer removed: per-layer and fixed costs
            model.model.transformer.blocks = torch.nn.ModuleList(list(layers)[:depth])
            passes[depth] = _wide_passes(model, x, prompt_length, block, blocks)
        times = {depth: {name: [] for name in p} for depth, p in passes.items()}
        for _ in range(args.wide_repeats):  # interleaved
            for depth in (2, 1):
                model.model.transformer.blocks = torch.nn.ModuleList(list(layers)[:depth])
                for name, fn in passes[depth].items():
                    _timed(fn, times[depth][name])
        model.model.transformer.blocks = layers
        cost = {depth: {name: statistics.median(t) for name, t in d.items()} for depth, d in times.items()}
        layer = {name: cost[2][name] - cost[1][name] for name in cost[2]}
        deep = {name: cost[1][name] + (args.compose_layers - 1) * layer[name] for name in cost[2]}
        composed, composed_deep = _compose(cost[2], answer, blocks), _compose(deep, answer, blocks)
        entry = {"prompt": prompt_length, "answer": answer, "block_length": block, "pass_seconds": cost[2],
                 "pass_seconds_1_layer": cost[1], "pass_times": times[2], "pass_times_1_layer": times[1],
                 "composed_tokens_per_s": composed, "composed_speedup": _speedups(composed, "none"),
                 "composed_speedup_vs_whole_canvas_head": _speedups(composed, "none (whole-canvas head)"),
                 f"pass_seconds_{args.compose_layers}_layers_composed": deep,
                 f"composed_speedup_{args.compose_layers}_layers": _speedups(composed_deep, "none"),
                 f"composed_speedup_{args.compose_layers}_layers_vs_whole_canvas_head":
                     _speedups(composed_deep, "none (whole-canvas head)")}
        c = cost[2]
        print(f"\nwide, prompt {prompt_length}: pass seconds full {c['full']:.2f}, block head {c['full_block']:.2f}, "
              f"refresh {c['refresh']:.2f}, dual {c['dual']:.2f}, prefix {c['prefix0']:.2f} … "
              f"{c[f'prefix{blocks - 1}']:.2f}; per layer: full {layer['full_block']:.3f}, dual {layer['dual']:.3f}")
        rows = []
        for label, table in (("2 layers", composed), (f"{args.compose_layers} layers (composed)", composed_deep)):
            for steps, t in table.items():
                rows.append([label, steps, t["none"], t["prefix"] / t["none"], t["dual"] / t["none"],
                             t["dual"] / t["none (whole-canvas head)"]])
        print(markdown_table(["model", "steps", "none tok/s", "prefix ×", "dual ×", "dual × whole-head none"], rows))
        if prompt_length in args.end_to_end:
            e2e = {}
            whole = {"generation_logits_hook_func": lambda step, canvas, logits: logits}  # forces the whole head
            modes = [("none (whole-canvas head)", None, whole)] + [(_name(c), c, {}) for c in CACHES]
            for _ in range(args.end_to_end_repeats):  # interleaved
                for name, cache, extra in modes:
                    start = time.perf_counter()
                    out = model.generate(x[:, :prompt_length], max_new_tokens=answer, block_length=block, steps=64,
                                         cache_implementation=cache, stop_at_eos=False, return_dict_in_generate=True,
                                         **extra)
                    e2e.setdefault(name, {"times": [], "nfe": out.nfe})["times"].append(time.perf_counter() - start)
            for name in e2e:
                e2e[name]["seconds"] = statistics.median(e2e[name]["times"])
            for name in e2e:
                e2e[name]["speedup"] = e2e["none"]["seconds"] / e2e[name]["seconds"]
            entry["end_to_end_steps64"] = e2e
            print("end to end, 64 steps: " + ", ".join(f"{k} {v['seconds']:.1f} s ({v['speedup']:.2f}×)"
                                                        for k, v in e2e.items()))
        results.append(entry)
    return {"model": "LLaDA-8B width (d 4096, MLP 12288, vocab 126464), 2 layers, random weights, bf16, batch 1",
            "compose_layers": args.compose_layers,
            "runs": results}


def plot(payload: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [k for k in ("teacher", "confident", "wide") if k in payload]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels) + (3 if "wide" in panels else 0), 4.5))
    axes = [axes] if len(panels) == 1 else axes
    for ax, key in zip(axes, panels):
        if key == "confident":  # every answer is exact: one row per rule, tokens/s ratio along x
            rows = payload[key]["rows"]
            rules = list(dict.fromkeys(r["rule"] for r in rows))
            for cache, marker in zip(("none", "prefix", "dual"), "os^"):
                sel = [r for r in rows if r["cache"] == cache]
                ax.scatter([r["speedup"] for r in sel], [rules.index(r["rule"]) for r in sel], marker=marker,
                           label=cache)
            ax.set_yticks(range(len(rules)), rules, fontsize=7)
            ax.set_xscale("log")
            ax.set_xlabel("tokens/s ÷ uncached fixed-step")
            worst = min(r["token_accuracy"] for r in rows)
            ax.set_title(f"permuted copy (confident), accuracy ≥ {worst:.3f}", fontsize=10)
        elif key == "teacher":
            rows = payload[key]["rows"]
            for cache, marker in zip(("none", "prefix", "dual"), "os^"):
                sel = [r for r in rows if r["cache"] == cache]
                ax.scatter([r["speedup"] for r in sel], [r["nll"] for r in sel], marker=marker, label=cache)
                for r in sel:
                    ax.annotate(r["rule"], (r["speedup"], r["nll"]), fontsize=7)
            ax.set_xscale("log")
            ax.set_xlabel("tokens/s ÷ uncached fixed-step")
            ax.set_ylabel("oracle NLL of the answer (nats/word)")
            ax.set_title("bench teacher")
        else:
            deep = payload["wide"]["compose_layers"]
            groups, bars = [], {"prefix": [], "dual": []}
            for run in payload["wide"]["runs"]:
                for depth, speed_key in ((2, "composed_speedup"), (deep, f"composed_speedup_{deep}_layers")):
                    for steps, speed in run[speed_key].items():
                        groups.append(f"P{run['prompt']}\nL{depth}\n{steps} st")
                        for mode in bars:
                            bars[mode].append(speed[mode])
            positions = range(len(groups))
            for offset, (mode, values) in zip((-0.2, 0.2), bars.items()):
                ax.bar([p + offset for p in positions], values, width=0.4, label=mode)
            ax.set_xticks(list(positions), groups, fontsize=7)
            ax.axhline(1.0, color="k", lw=0.8)
            ax.set_ylabel("tokens/s ÷ uncached")
            ax.set_title(f"LLaDA-8B width, bf16: 2 layers measured, {deep} composed")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["teacher", "confident", "wide"],
                        choices=["teacher", "confident", "wide"])
    parser.add_argument("--num-prompts", type=int, default=64)
    parser.add_argument("--teacher-prompt", type=int, default=32)
    parser.add_argument("--teacher-answer", type=int, default=32)
    parser.add_argument("--teacher-block", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--confident-words", type=int, default=255,
                        help="prompt words of the permuted-copy task (the answer is as many words + EOS)")
    parser.add_argument("--confident-train-steps", type=int, default=1500)
    parser.add_argument("--confident-prompts", type=int, default=16)
    parser.add_argument("--confident-block", type=int, default=32)
    parser.add_argument("--prompt-lengths", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--end-to-end", type=int, nargs="*", default=[256],
                        help="prompt lengths that also get one end-to-end generate(steps=64) per mode")
    parser.add_argument("--wide-repeats", type=int, default=3)
    parser.add_argument("--end-to-end-repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compose-layers", type=int, default=32,
                        help="depth the wide part's pass costs are composed to (LLaDA-8B: 32) from 1- and 2-layer costs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="fast_decoding")
    args = parser.parse_args()
    payload = {"benchmark": "fast_decoding", "machine": machine()}
    if "teacher" in args.parts:
        payload["teacher"] = teacher_part(args)
    if "confident" in args.parts:
        payload["confident"] = confident_part(args)
    if "wide" in args.parts:
        payload["wide"] = wide_part(args)
    path = write_json(args.output, payload)
    plot(payload, RESULTS / f"{args.output}.png")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
