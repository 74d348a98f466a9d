"""lm-evaluation-harness on the oracle-language tasks: hf-dlm's ``hf-dlm`` model against the exact oracle, the GPT-2
AR baseline and the harness's plain ``hf`` backend pointed at a diffusion LM.

    python benchmarks/lm_eval_oracle.py                      # bench models, --limit 40, 3 interleaved repeats
    python benchmarks/lm_eval_oracle.py --limit 100 --repeats 2   # every item of the tasks
    python benchmarks/lm_eval_oracle.py --size tiny --limit 8 --repeats 1 --dimo-steps 20   # smoke run, ~1 min

The bench reference models are trained on first use and cached (``load_reference``; the bench teacher trained in
341 s on 2 idle cores for results/quant_dllm.json, and ran 2-16x slower on a shared machine).

Tasks (``integrations/lm_eval/tasks/oracle``, loaded with ``TaskManager(include_path=...)``; the same ``--limit``
items for every row): ``oracle_mc`` (acc: gold = the continuation the oracle drew), ``oracle_mc_ranked`` (acc:
gold = the oracle's top choice), ``oracle_ppl`` (word perplexity, ``loglikelihood_rolling``),
``oracle_continuation`` (``generate_until``, scored by the exact oracle's NLL per generated word). Rows:

1. exact oracle: accuracy from the stored ``oracle_log_probs``, word perplexity from the stored
   ``oracle_log_prob`` of each document, and, for the continuation task, the oracle's own greedy continuation (the
   most probable next word, up to 8 words or the stop "."), scored by the task's own ``continuation_results``;
2. the diffusion teacher through ``hf-dlm`` (fp32), ``mc_num`` 32 in one forward pass of 32 (``batch_size`` 32);
3. the same teacher quantized to 2 bits by Quant-dLLM (the configuration of ``benchmarks/quant_dllm.py``);
4. a Di[M]O one-step student of the teacher (distilled here, on oracle contexts, ``--dimo-steps``) through
   ``hf-dlm`` on the generation task; its refusal of the likelihood tasks is recorded;
5. the GPT-2 AR baseline through the harness's ``hf`` backend (``HFLM(..., backend="causal")``);
6. the diffusion teacher through the same ``hf`` backend: the harness scores the bidirectional denoiser as a causal
   LM (reads next-token predictions off an unmasked input) and reports the numbers without a complaint;
7. the exact denoiser (``hf_dlm.recipes.oracle_denoiser``: the oracle's exact conditionals by forward-backward)
   through ``hf-dlm`` and through the ``hf`` backend, on the likelihood tasks: the ELBO of exact conditionals is the
   exact log-likelihood in expectation, so ``hf-dlm`` must land on the oracle's figures within Monte-Carlo error,
   whatever the training of the teacher; the ``hf`` backend shows what its causal reading does to a perfect model.

``is_check_greedy=False`` for every ``hf-dlm`` row (no metric of these tasks reads ``is_greedy``). Seconds per task
are wall times of ``simple_evaluate`` for that one task (building the task's documents included), reported as the
median over ``--repeats`` of the ratio to the AR baseline's time for the same task in the same repeat; the rows run
interleaved, their order rotated every repeat. An ``mc_num`` sweep (8, 32, 128) of the fp32 teacher on ``oracle_mc``
runs inside the same repeats. Monte-Carlo error: the teacher's per-choice adapter log-likelihoods on ``oracle_mc``
against an independent ``elbo_log_likelihood`` at another seed (mean |difference| against the estimator's own
standard error; answers that flip). Torch runs on ``--threads`` threads (default 1: on a shared 2-core machine two
processes with two threads each slow each other down many times over).

Writes benchmarks/results/lm_eval_oracle[_SIZE].json and .png and prints markdown tables.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import hf_dlm  # noqa: E402,F401
import lm_eval  # noqa: E402
from _common import RESULTS, machine, markdown_table, write_json  # noqa: E402
from hf_dlm.evaluation.likelihood import elbo_log_likelihood  # noqa: E402
from hf_dlm.evaluation.oracle import OracleLanguage  # noqa: E402
from hf_dlm.recipes.oracle_denoiser import OracleDenoiser, OracleDenoiserConfig  # noqa: E402
from hf_dlm.recipes.reference import ReferenceSettings, get_settings, load_reference  # noqa: E402
from hf_dlm.integrations._lm_eval_requests import encode_pair, fit_context  # noqa: E402
from hf_dlm.integrations.lm_eval_harness import DiffusionLM, LikelihoodUnavailableError  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TASKS_DIR = REPO / "integrations" / "lm_eval" / "tasks"
TASKS = ("oracle_mc", "oracle_mc_ranked", "oracle_ppl", "oracle_continuation")
LIKELIHOOD_TASKS = TASKS[:3]
METRICS = {"oracle_mc": ("acc", "acc_norm"), "oracle_mc_ranked": ("acc", "acc_norm"),
           "oracle_ppl": ("word_perplexity", "byte_perplexity", "bits_per_byte"),
           "oracle_continuation": ("oracle_nll", "valid", "words")}
MC_SWEEP = (8, 32, 128)
# A smaller build than "bench" (d_model 96, 3 layers, half the batch, 1200 steps; trains in ~2 + 3 minutes on one
# core). Beware: this recipe's teacher does not get past the unigram plateau (its oracle_mc accuracy is chance);
# the AR baseline of the same recipe does. Kept to show that, and as a fast plumbing check.
SIZES = {"lmeval": ReferenceSettings(name="lmeval", seq_len=64, d_model=96, n_layers=3, n_heads=4,
                                     mlp_hidden_size=288, batch_size=32, max_steps=1200, learning_rate=2e-3,
                                     warmup_steps=60, train_sequences=38_400)}


def settings_for(size: str) -> ReferenceSettings:
    return SIZES[size] if size in SIZES else get_settings(size)


def task_utils():
    """The task folder's ``utils.py`` (datasets, the oracle, the metrics) as a module."""
    spec = importlib.util.spec_from_file_location("oracle_task_utils", TASKS_DIR / "oracle" / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------------ models
def quantize(teacher, settings: ReferenceSettings, seed: int) -> tuple[torch.nn.Module, dict]:
    """Quant-dLLM 2-bit, the full method with benchmarks/quant_dllm.py's defaults."""
    from hf_dlm.quantization import QuantDLLMConfig, QuantDLLMQuantizer, quantization_report

    oracle = OracleLanguage(seed=settings.oracle_seed)
    calibration = oracle.sample(128, settings.seq_len, seed=seed + 4242)
    config = QuantDLLMConfig(bits=2, orders=(1, 2, 3), block_size=32, abmp_fraction=0.125, importance_factor=2.0,
                             rsr_iterations=15, calibration_seq_len=settings.seq_len, num_calibration_sequences=128,
                             seed=seed)
    model = copy.deepcopy(teacher)
    start = time.perf_counter()
    QuantDLLMQuantizer(config).quantize_model(model, calibration_data=calibration, show_progress=False)
    seconds = time.perf_counter() - start
    report = quantization_report(model)
    report.pop("modules", None)
    return model.eval(), {"quantize_seconds": seconds, "config": config.to_diff_dict(), **report}


def distill_student(teacher, tokenizer, settings: ReferenceSettings, steps: int, seed: int
                    ) -> tuple[torch.nn.Module, dict]:
    """A Di[M]O one-step student conditioned on oracle contexts (12 words, other draws than the task's), writing the
    task's 8 new tokens: the cheapest recipe of benchmarks/dimo.py (full mode, forward KL, its learning rates, EMA),
    ``steps`` steps, no evaluation (the last EMA generator is kept)."""
    from hf_dlm.training.dimo import ConditionDataset, DiMOConfig, DiMOTrainer

    oracle = OracleLanguage(seed=settings.oracle_seed)
    contexts = oracle.decode(oracle.sample(4096, 12, seed=seed + 31_337))
    prompts = [tokenizer(text)["input_ids"] for text in contexts]  # as the adapter tokenizes a context
    config = dict(per_device_train_batch_size=32, max_steps=steps, learning_rate=8e-5, auxiliary_learning_rate=1.6e-4,
                  auxiliary_updates_per_step=2, warmup_steps=min(20, steps // 2),
                  lr_scheduler_type="constant_with_warmup",
                  ema_decay=0.98, r_init=0.6, embedding_noise_std=0.1, memory_mode="full", generation_length=8,
                  divergence="fkl", eval_strategy="no", save_strategy="no", logging_steps=max(steps // 4, 1),
                  report_to=[], use_cpu=True, disable_tqdm=True, seed=seed, max_grad_norm=1.0)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = DiMOTrainer(copy.deepcopy(teacher), DiMOConfig(output_dir=scratch, **config),
                              train_dataset=ConditionDataset.from_prompts(prompts), processing_class=tokenizer)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        student = trainer.get_generator(use_ema=True)
    history = [(h["step"], h["divergence_per_token"]) for h in trainer.state.log_history
               if "divergence_per_token" in h]
    return student, {"steps": steps, "seconds": seconds, "prompts": len(prompts), "divergence_curve": history,
                     "config": config}


def hf_backend(model, tokenizer, batch_size: int, told: list[str]):
    """The harness's ``hf`` backend on a loaded model; what it logs or warns while it is built goes to ``told``."""
    from lm_eval.models.huggingface import HFLM

    with _told() as messages:
        lm = HFLM(pretrained=model, tokenizer=tokenizer, backend="causal", batch_size=batch_size, device="cpu")
    told.extend(messages)
    return lm


# ------------------------------------------------------------------------------------------------ harness runs
class _Records(logging.Handler):
    """Collects WARNING+ log records (of any logger) while a row runs: what the harness told the user."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()}"[:300])


@contextlib.contextmanager
def _told():
    """Collects what is logged (WARNING+, any logger) or warned inside the block: what the harness told the user."""
    handler, messages = _Records(), []
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield messages
    finally:
        root.removeHandler(handler)
        messages.extend(handler.messages + [f"{w.category.__name__}: {w.message}"[:300] for w in caught])


def run_task(lm, task: str, limit: int, manager: TaskManager) -> tuple[dict, float, list[str]]:
    """One ``simple_evaluate`` of one task; returns (metrics, seconds, warnings logged)."""
    with _told() as told:
        start = time.perf_counter()
        out = lm_eval.simple_evaluate(model=lm, tasks=[task], task_manager=manager, limit=limit,
                                      log_samples=True, bootstrap_iters=0, verbosity="ERROR")
        seconds = time.perf_counter() - start
    return summarize(task, out), seconds, told


def _stderr(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return float(statistics.stdev(values) / math.sqrt(len(values))) if len(values) > 1 else math.nan


def summarize(task: str, out: dict) -> dict:
    results, samples = out["results"][task], out["samples"][task]
    metrics = {name: results.get(f"{name},none") for name in METRICS[task]}
    metrics["n"] = len(samples)
    if task.startswith("oracle_mc"):
        metrics["acc_stderr"] = _stderr([float(s["acc"]) for s in samples])
        metrics["per_item_loglikelihoods"] = [[float(r[0][0]) for r in s["resps"]] for s in samples]
        metrics["doc_ids"] = [s["doc_id"] for s in samples]
        metrics["requests"] = [_request_args(s) for s in samples]
    elif task == "oracle_continuation":
        metrics["oracle_nll_stderr"] = _stderr([float(s["oracle_nll"]) for s in samples])
        metrics["examples"] = [{"context": s["doc"]["context"], "generated": s["filtered_resps"][0]}
                               for s in samples[:3]]
    return metrics


def _request_args(sample: dict) -> list[list[str]]:
    """The (context, continuation) pairs the harness sent for one multiple-choice document."""
    arguments = sample["arguments"]
    if isinstance(arguments, dict):  # {"gen_args_0": {"arg_0": context, "arg_1": continuation}, ...}
        return [[a["arg_0"], a["arg_1"]] for a in arguments.values()]
    return [[a[0], a[1]] for a in arguments]


# ------------------------------------------------------------------------------------------------ exact oracle
def oracle_row(utils, limit: int) -> dict:
    """The exact oracle on the same items, no model and no harness."""
    start = time.perf_counter()
    items = utils._mc_items()[:limit]
    top = [max(range(len(i["oracle_log_probs"])), key=i["oracle_log_probs"].__getitem__) for i in items]
    correct = [float(t == i["gold"]) for t, i in zip(top, items)]
    ranked = [float(t == i["oracle_gold"]) for t, i in zip(top, items)]
    docs = utils.oracle_documents()["test"].select(range(limit))
    words = sum(len(d["text"].split()) for d in docs)
    word_ppl = math.exp(-sum(d["oracle_log_prob"] for d in docs) / words)
    language = utils.oracle()
    index = {word: i for i, word in enumerate(language.words)}
    stop = index["."]
    scores = []
    for doc in utils.oracle_contexts()["test"].select(range(limit)):
        prefix = [index[w] for w in doc["context"].split()]
        generated = []
        for _ in range(8):  # the task's max_gen_toks; stop at "." as the task's `until`
            candidates = torch.tensor([prefix + generated + [w] for w in range(language.num_words)])
            best = int(language.conditional_log_prob(candidates)[:, -1].argmax())
            if best == stop:
                break
            generated.append(best)
        text = " " + " ".join(language.words[w] for w in generated)
        scores.append(utils.continuation_results(doc, [text]))
    seconds = time.perf_counter() - start
    nll = [s["oracle_nll"] for s in scores]
    return {"row": "exact oracle", "backend": "none (stored oracle log-probs)", "tasks": {
        "oracle_mc": {"acc": statistics.mean(correct), "acc_stderr": _stderr(correct), "n": limit},
        "oracle_mc_ranked": {"acc": statistics.mean(ranked), "acc_stderr": _stderr(ranked), "n": limit},
        "oracle_ppl": {"word_perplexity": word_ppl, "n": limit},
        "oracle_continuation": {"oracle_nll": utils.nanmean(nll), "oracle_nll_stderr": _stderr(nll),
                                "valid": statistics.mean(s["valid"] for s in scores),
                                "words": statistics.mean(s["words"] for s in scores), "n": limit,
                                "decoding": "the oracle's greedy next word, 8 words or up to '.'"}},
        "seconds_all_tasks": seconds}


# ------------------------------------------------------------------------------------------------ Monte-Carlo error
def monte_carlo_error(model, tokenizer, lm: DiffusionLM, mc: dict, seed: int) -> dict:
    """Per-choice adapter log-likelihoods on oracle_mc against an independent ``elbo_log_likelihood`` of the same
    pairs at another seed (same mc_num and batch). Two independent estimates with standard deviation σ differ by
    2σ/√π ≈ 1.13σ on average: ``mean_abs_diff / mean_stderr`` near 1.13 means the reported standard error is
    right, below it that it is conservative (the stratified mask counts lower the true error)."""
    diffs, stderrs, flips = [], [], 0
    independent_scores = []
    for pairs, adapter in zip(mc["requests"], mc["per_item_loglikelihoods"]):
        generator = torch.Generator().manual_seed(seed)
        scores = []
        for (context_text, continuation_text), ll in zip(pairs, adapter):
            context, target = encode_pair(tokenizer, context_text, continuation_text)
            context, _ = fit_context(context, target, lm.max_length)
            estimate = elbo_log_likelihood(model, torch.tensor(context, dtype=torch.long),
                                           torch.tensor(target, dtype=torch.long), mc_samples=lm.mc_num,
                                           batch_size=lm.batch_size, generator=generator)
            scores.append(float(estimate.log_likelihood))
            diffs.append(abs(scores[-1] - ll))
            stderrs.append(float(estimate.stderr))
        independent_scores.append(scores)
        same = max(range(len(scores)), key=scores.__getitem__) == max(range(len(adapter)), key=adapter.__getitem__)
        flips += not same
    mean_abs, mean_se = statistics.mean(diffs), statistics.mean(stderrs)
    return {"pairs": len(diffs), "items": len(mc["requests"]), "mc_num": lm.mc_num, "batch_size": lm.batch_size,
            "adapter_seed": lm.seed, "independent_seed": seed, "mean_abs_diff_nats": mean_abs,
            "median_abs_diff_nats": statistics.median(diffs), "max_abs_diff_nats": max(diffs),
            "mean_reported_stderr_nats": mean_se, "ratio_mean_abs_diff_to_stderr": mean_abs / mean_se,
            "ratio_if_stderr_exact": 2 / math.sqrt(math.pi), "argmax_choice_flips": flips,
            "flip_fraction": flips / len(mc["requests"]), "independent_per_item_loglikelihoods": independent_scores}


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="bench",
                        help="reference build: bench | tiny | lmeval (a smaller build defined here)")
    parser.add_argument("--limit", type=int, default=40, help="items per task, the same for every row")
    parser.add_argument("--mc-num", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32, help="hf-dlm's MC samples per forward pass")
    parser.add_argument("--hf-batch-size", type=int, default=1, help="requests per forward of the `hf` backend")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dimo-steps", type=int, default=200)
    parser.add_argument("--mc-check-seed", type=int, default=4321, help="seed of the independent ELBO estimates")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=None, help="results name (default lm_eval_oracle[_SIZE])")
    parser.add_argument("--replot", action="store_true", help="redraw the plot from the saved JSON and stop")
    args = parser.parse_args()
    name = args.output or ("lm_eval_oracle" if args.size == "bench" else f"lm_eval_oracle_{args.size}")
    if args.replot:
        plot(json.loads((RESULTS / f"{name}.json").read_text()), RESULTS / f"{name}.png")
        return
    torch.set_num_threads(args.threads)
    logging.getLogger("lm_eval").setLevel(logging.WARNING)
    settings = settings_for(args.size)

    start = time.perf_counter()
    teacher, tokenizer, teacher_info = load_reference("teacher", settings)
    print(f"teacher ready ({time.perf_counter() - start:.0f} s)", flush=True)
    quantized, quant_info = quantize(teacher, settings, args.seed)
    print(f"Quant-dLLM 2-bit: {quant_info['quantize_seconds']:.0f} s", flush=True)
    student, dimo_info = distill_student(teacher, tokenizer, settings, args.dimo_steps, args.seed)
    print(f"Di[M]O student: {dimo_info['steps']} steps, {dimo_info['seconds']:.0f} s", flush=True)
    start = time.perf_counter()
    ar, ar_tokenizer, ar_info = load_reference("ar", settings)
    print(f"AR baseline ready ({time.perf_counter() - start:.0f} s)", flush=True)

    def dlm(model, mc_num=args.mc_num):
        return DiffusionLM(pretrained=model, tokenizer=tokenizer, mc_num=mc_num,
                           batch_size=min(args.batch_size, mc_num), is_check_greedy=False, show_progress=False)

    exact_denoiser = OracleDenoiser(OracleDenoiserConfig(oracle_seed=settings.oracle_seed, vocab_size=len(tokenizer),
                                                         mask_token_id=tokenizer.mask_token_id)).eval()
    built_told = {"AR baseline (GPT-2), hf": [], "teacher (diffusion), hf backend": [],
                  "exact denoiser, hf backend": []}
    rows = {  # name → (backend, lm, tasks)
        "AR baseline (GPT-2), hf": ("hf", hf_backend(ar, ar_tokenizer, args.hf_batch_size,
                                                     built_told["AR baseline (GPT-2), hf"]), TASKS),
        f"teacher fp32, hf-dlm mc {args.mc_num}": ("hf-dlm", dlm(teacher), TASKS),
        f"teacher Quant-dLLM 2-bit, hf-dlm mc {args.mc_num}": ("hf-dlm", dlm(quantized), TASKS),
        "Di[M]O student, hf-dlm": ("hf-dlm", dlm(student), ("oracle_continuation",)),
        "teacher (diffusion), hf backend": ("hf", hf_backend(teacher, tokenizer, args.hf_batch_size,
                                                             built_told["teacher (diffusion), hf backend"]), TASKS),
        # the oracle's exact conditionals as a denoiser: what hf-dlm should recover, and what the hf backend makes of it
        f"exact denoiser, hf-dlm mc {args.mc_num}": ("hf-dlm", dlm(exact_denoiser), LIKELIHOOD_TASKS),
        "exact denoiser, hf backend": ("hf", hf_backend(exact_denoiser, tokenizer, args.hf_batch_size,
                                                        built_told["exact denoiser, hf backend"]), LIKELIHOOD_TASKS),
    }
    for mc_num in MC_SWEEP:
        if mc_num != args.mc_num:
            rows[f"sweep: teacher fp32, hf-dlm mc {mc_num}"] = ("hf-dlm", dlm(teacher, mc_num), ("oracle_mc",))
    teacher_row, ar_row = f"teacher fp32, hf-dlm mc {args.mc_num}", "AR baseline (GPT-2), hf"
    manager = TaskManager(include_path=str(TASKS_DIR))

    utils = task_utils()
    exact = oracle_row(utils, args.limit)
    refusals = {}
    for task in LIKELIHOOD_TASKS:  # the student's refusals, recorded (not timed)
        try:
            run_task(rows["Di[M]O student, hf-dlm"][1], task, min(args.limit, 2), manager)
            refusals[task] = None
        except LikelihoodUnavailableError as error:
            refusals[task] = f"{type(error).__name__}: {error}"

    measured: dict = {row: {task: {"seconds": [], "metrics": None, "same_every_repeat": True, "error": None,
                                   "told": []} for task in tasks} for row, (_, _, tasks) in rows.items()}
    names = list(rows)
    for repeat in range(args.repeats):
        order = names[repeat % len(names):] + names[:repeat % len(names)]
        for row in order:
            backend, lm, tasks = rows[row]
            for task in tasks:
                record = measured[row][task]
                if record["error"] is not None:
                    continue
                try:
                    metrics, seconds, told = run_task(lm, task, args.limit, manager)
                except Exception as error:  # noqa: BLE001 - what a backend does with a task is the result
                    record["error"] = f"{type(error).__name__}: {str(error)[:500]}"
                    print(f"[{repeat}] {row} / {task}: {record['error']}", flush=True)
                    continue
                record["seconds"].append(seconds)
                if record["metrics"] is None:
                    record["metrics"], record["told"] = metrics, told
                else:
                    keys = [k for k in METRICS[task] if metrics.get(k) is not None]
                    record["same_every_repeat"] &= all(
                        metrics[k] == record["metrics"][k] or (math.isnan(metrics[k]) and math.isnan(
                            record["metrics"][k])) for k in keys)
                shown = {k: round(v, 4) for k, v in metrics.items() if k in METRICS[task] and v is not None}
                print(f"[{repeat}] {row} / {task}: {shown} {seconds:.1f} s", flush=True)

    for row, tasks in measured.items():
        for task, record in tasks.items():
            base = measured[ar_row][task]["seconds"]
            if record["seconds"] and len(base) == len(record["seconds"]):
                record["seconds_median"] = statistics.median(record["seconds"])
                record["ratio_to_ar"] = statistics.median(s / b for s, b in zip(record["seconds"], base))
                record["ratio_of_medians"] = record["seconds_median"] / statistics.median(base)
    mc_error = monte_carlo_error(teacher, tokenizer, rows[teacher_row][1],
                                 measured[teacher_row]["oracle_mc"]["metrics"], args.mc_check_seed)
    sweep = []
    for mc_num in MC_SWEEP:
        row = teacher_row if mc_num == args.mc_num else f"sweep: teacher fp32, hf-dlm mc {mc_num}"
        record = measured[row]["oracle_mc"]
        sweep.append({"mc_num": mc_num, "batch_size": min(args.batch_size, mc_num),
                      "acc": record["metrics"]["acc"], "acc_stderr": record["metrics"]["acc_stderr"],
                      "seconds_median": record.get("seconds_median"), "ratio_to_ar": record.get("ratio_to_ar"),
                      "per_item_loglikelihoods": record["metrics"]["per_item_loglikelihoods"]})
    # how the teacher's answers at mc_num 8 / 32 agree with those at 128
    ref_answers = [max(range(len(x)), key=x.__getitem__) for x in sweep[-1]["per_item_loglikelihoods"]]
    for entry in sweep:
        answers = [max(range(len(x)), key=x.__getitem__) for x in entry.pop("per_item_loglikelihoods")]
        entry["answers_equal_to_mc_128"] = statistics.mean(float(a == b) for a, b in zip(answers, ref_answers))

    for tasks in measured.values():  # keep the JSON readable: the request texts only for the MC-error check
        for record in tasks.values():
            if record["metrics"]:
                record["metrics"].pop("requests", None)
                record["metrics"].pop("doc_ids", None)
    payload = {"benchmark": "lm_eval_oracle", "size": args.size, "settings": settings.__dict__,
               "args": vars(args), "machine": machine(), "lm_eval_version": lm_eval.__version__,
               "teacher": teacher_info, "ar": ar_info, "quant_dllm": quant_info, "dimo": dimo_info,
               "exact_oracle": exact, "rows": {row: {"backend": rows[row][0], "told_when_built": built_told.get(row),
                                                    "tasks": measured[row]} for row in rows},
               "dimo_likelihood_refusals": refusals, "mc_num_sweep": sweep, "monte_carlo_error": mc_error}
    write_json(name, payload)
    plot(payload, RESULTS / f"{name}.png")
    print_tables(payload)


# ------------------------------------------------------------------------------------------------ output
def _cell(record: dict | None, key: str, digits: int = 3) -> str:
    if record is None:
        return "—"
    if record.get("error"):
        return "error"
    metrics = record.get("metrics", record)
    value = metrics.get(key) if metrics else None
    if value is None:
        return "—"
    se = metrics.get(f"{key}_stderr")
    return f"{value:.{digits}f}" + (f" ± {se:.{digits}f}" if se is not None and not math.isnan(se) else "")


def table_rows(payload: dict) -> list[list[str]]:
    exact = payload["exact_oracle"]["tasks"]
    out = [["exact oracle", _cell(exact["oracle_mc"], "acc"), _cell(exact["oracle_mc_ranked"], "acc"),
            _cell(exact["oracle_ppl"], "word_perplexity", 2), _cell(exact["oracle_continuation"], "oracle_nll"),
            "—"]]
    for row, entry in payload["rows"].items():
        if row.startswith("sweep"):
            continue
        tasks = entry["tasks"]
        refused = "refused" if row.startswith("Di[M]O") else "n/a" if row.startswith("exact denoiser") else "—"
        ratios = "/".join(f"{tasks[t]['ratio_to_ar']:.1f}" if t in tasks and "ratio_to_ar" in tasks[t] else "—"
                          for t in TASKS)
        out.append([row,
                    _cell(tasks.get("oracle_mc"), "acc") if "oracle_mc" in tasks else refused,
                    _cell(tasks.get("oracle_mc_ranked"), "acc") if "oracle_mc_ranked" in tasks else refused,
                    _cell(tasks.get("oracle_ppl"), "word_perplexity", 2) if "oracle_ppl" in tasks else refused,
                    _cell(tasks.get("oracle_continuation"), "oracle_nll"), ratios])
    return out


def print_tables(payload: dict) -> None:
    print(markdown_table(["row", "acc (oracle_mc)", "acc (ranked)", "word PPL", "continuation NLL/word",
                          "s ratio to AR (mc/ranked/ppl/cont)"], table_rows(payload)))
    print(markdown_table(["mc_num", "batch", "acc", "answers = mc 128", "s ratio to AR"],
                         [[s["mc_num"], s["batch_size"], f"{s['acc']:.3f} ± {s['acc_stderr']:.3f}",
                           f"{s['answers_equal_to_mc_128']:.3f}", f"{s['ratio_to_ar']:.1f}"]
                          for s in payload["mc_num_sweep"]]))
    err = {k: v for k, v in payload["monte_carlo_error"].items() if k != "independent_per_item_loglikelihoods"}
    print(json.dumps(err, indent=1))


def plot(payload: dict, path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return
    rows = [(r, e["tasks"]) for r, e in payload["rows"].items() if not r.startswith("sweep")]
    exact = payload["exact_oracle"]["tasks"]
    fig, axes = plt.subplots(1, 5, figsize=(22, 4.5))
    names = ["exact oracle"] + [r for r, _ in rows]
    colors = ["tab:gray"] + ["tab:red" if r.endswith("hf backend") else "tab:green" if r.startswith("AR")
                             else "tab:blue" for r, _ in rows]

    def values(task, key):
        got = [exact[task].get(key)]
        for _, tasks in rows:
            record = tasks.get(task) or {}
            got.append((record.get("metrics") or {}).get(key, math.nan))
        return [math.nan if v is None else v for v in got]

    panels = (("oracle_mc", "acc", "accuracy, gold = drawn continuation"),
              ("oracle_mc_ranked", "acc", "accuracy, gold = oracle's top choice"),
              ("oracle_ppl", "word_perplexity", "word perplexity (log)"),
              ("oracle_continuation", "oracle_nll", "greedy continuation: oracle NLL / word"))
    for ax, (task, key, label) in zip(axes[:4], panels):
        got = values(task, key)
        ax.barh(names, got, color=colors)
        for y, (row, value) in enumerate(zip(names, got)):
            if math.isnan(value):
                record = dict(rows).get(row, {}).get(task)
                ax.text(0, y, " error" if record and record.get("error") else " n/a", va="center", fontsize=8)
            else:
                ax.text(value, y, f" {value:.3g}", va="center", fontsize=7)
        ax.set_xlabel(label)
        if task.startswith("oracle_mc"):
            ax.axvline(0.25, color="black", ls=":", lw=0.8)
            ax.set_xlim(0, 1.1)
        if task == "oracle_ppl":
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_ylim(len(names) - 0.5, -0.5)
    for ax in axes[1:4]:
        ax.set_yticklabels([])
    sweep = payload["mc_num_sweep"]
    ax = axes[4]
    ax.plot([s["ratio_to_ar"] for s in sweep], [s["acc"] for s in sweep], "o-", color="tab:blue")
    for s in sweep:
        ax.annotate(f"mc {s['mc_num']}", (s["ratio_to_ar"], s["acc"]), textcoords="offset points", xytext=(4, 4))
    ax.axhline(exact["oracle_mc"]["acc"], color="tab:gray", ls=":", label="exact oracle")
    ar = payload["rows"]["AR baseline (GPT-2), hf"]["tasks"]["oracle_mc"]["metrics"]["acc"]
    ax.axhline(ar, color="tab:green", ls=":", label="AR baseline")
    ax.set_xlabel("seconds on oracle_mc ÷ AR baseline's")
    ax.set_ylabel("oracle_mc accuracy")
    ax.set_title("teacher fp32: mc_num sweep")
    ax.legend(fontsize=7)
    fig.suptitle(f"lm-evaluation-harness on the oracle tasks ({payload['args']['limit']} items; red: the plain `hf` "
                 "backend on the diffusion teacher)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
