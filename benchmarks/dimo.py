"""Di[M]O one-step distillation on both tasks: the one-step student against its teacher at 1…32 steps.

    python benchmarks/dimo.py                    # everything (~40 minutes on 2 cores, the digits teacher cached)
    python benchmarks/dimo.py --tasks text       # text only; --tasks image / memory / divergences

Text: the bench oracle teacher (LLaDA architecture), unconditional 64-word sequences, teacher sampled with its
reference sampler (random order, T = 1, top-p 0.9); the student samples every word at once from x_init with the
same top-p. Scored by the oracle: gen-PPL and mean unigram entropy. Images: the digits text-to-image teacher
(MaskGIT schedule), captions of all ten digits; class consistency, FD-digits and k-NN precision/recall against the
held-out split. Students are trained in ``memory_mode="full"`` and ``"lora"`` with the same budget; the checkpoint
kept is the best of periodic evaluations on a *separate* sample set (selection seed ≠ report seed). Samples/s and
the speed ratio to the teacher are measured in the same run. Memory: the peak resident-set growth of one training
step of each mode against the teacher's forward alone, in fresh processes, on a larger random LLaDA.

Writes benchmarks/results/dimo.json, dimo.png, dimo_digits_grid.png.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
import hf_dlm  # noqa: E402,F401
from _common import RESULTS, machine, markdown_table, median_seconds, sample_mdm, write_json  # noqa: E402
from hf_dlm.evaluation.oracle import OracleLanguage  # noqa: E402
from hf_dlm.recipes.reference import REFERENCE_TOP_P, get_settings, load_reference  # noqa: E402
from hf_dlm.evaluation.text_metrics import data_reference, text_metrics  # noqa: E402
from hf_dlm.training.dimo import ConditionDataset, DiMOConfig, DiMOTrainer  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

TEACHER_STEPS = (1, 2, 4, 8, 16, 32)


class KeepBest(TrainerCallback):
    """After every evaluation, keep a copy of the generator if the selection metric improved."""

    def __init__(self, trainer_ref: list, metric: str) -> None:
        self.trainer_ref, self.metric = trainer_ref, metric
        self.best, self.best_value, self.best_step, self.curve = None, math.inf, None, []

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        value = metrics[f"eval_{self.metric}"]
        self.curve.append((state.global_step, value))
        if value < self.best_value:
            self.best_value, self.best_step = value, state.global_step
            self.best = self.trainer_ref[0].get_generator(use_ema=True)
        return control


def distill(teacher, train, evaluation, metric_fn, metric: str, mode: str, max_steps: int, seconds: float | None,
            extra: dict, **trainer_kwargs) -> tuple[torch.nn.Module, dict]:
    """One Di[M]O run; returns the best generator and the run's record."""
    ref: list = []
    keep = KeepBest(ref, metric)
    callbacks = [keep]
    if seconds is not None:
        from hf_dlm.training.callbacks import TimeBudget

        callbacks.append(TimeBudget(seconds))
    with tempfile.TemporaryDirectory() as scratch:
        config = dict(output_dir=scratch, per_device_train_batch_size=32, max_steps=max_steps, learning_rate=8e-5,
                      auxiliary_learning_rate=1.6e-4, auxiliary_updates_per_step=2, warmup_steps=20,
                      lr_scheduler_type="constant_with_warmup", ema_decay=0.98, r_init=0.6, embedding_noise_std=0.1,
                      memory_mode=mode, lora_r=32, lora_alpha=64, eval_strategy="steps", eval_steps=50,
                      eval_num_samples=128, save_strategy="no", logging_steps=25, report_to=[], use_cpu=True,
                      disable_tqdm=True, seed=0, max_grad_norm=1.0)
        config.update(extra)
        if mode == "lora":  # adapters start at zero: a larger step size for the same budget
            config["learning_rate"] = config["learning_rate"] * extra.get("lora_lr_multiplier", 4)
            config["auxiliary_learning_rate"] = config["auxiliary_learning_rate"] * extra.get("lora_lr_multiplier", 4)
        config.pop("lora_lr_multiplier", None)
        trainer = DiMOTrainer(copy.deepcopy(teacher), DiMOConfig(**config), train_dataset=train,
                              eval_dataset=evaluation, sample_metric_fn=metric_fn, callbacks=callbacks,
                              **trainer_kwargs)
        ref.append(trainer)
        start = time.monotonic()
        trainer.train()
        elapsed = time.monotonic() - start
        trainer.evaluate()
    history = [h for h in trainer.state.log_history if "divergence_per_token" in h]
    record = {"mode": mode, "divergence": config.get("divergence", "fkl"), "steps": trainer.state.global_step,
              "seconds": elapsed, "best_step": keep.best_step, "selection_curve": keep.curve,
              "divergence_curve": [(h["step"], h["divergence_per_token"]) for h in history],
              "auxiliary_loss_curve": [(h["step"], h["auxiliary_loss"]) for h in history]}
    return keep.best, record


# ---------------------------------------------------------------------------------------------------------------- text
def text_task(args) -> dict:
    settings = get_settings("bench")
    length = settings.seq_len
    oracle = OracleLanguage(seed=settings.oracle_seed)
    teacher, tokenizer, _ = load_reference("teacher", "bench")
    specials = list(tokenizer.all_special_ids)
    empty = torch.empty(args.text_samples, 0, dtype=torch.long)

    def gen_ppl(samples, inputs):
        return {"gen_ppl": text_metrics(oracle, samples).gen_ppl}

    data_words = oracle.sample(args.text_samples, length, seed=777)
    rows = [{"model": "data", "steps": None, **_text(text_metrics(oracle, data_words)),
             **_dependence(oracle, data_words)}]
    teacher_seconds = {}
    for steps in TEACHER_STEPS:
        seconds, _, (words, _) = median_seconds(
            functools.partial(sample_mdm, teacher, tokenizer, args.text_samples, length, steps, "random", 1.0,
                              REFERENCE_TOP_P, 256, args.seed), args.repeats)
        teacher_seconds[steps] = seconds
        rows.append({"model": "teacher", "steps": steps, **_text(text_metrics(oracle, words)), "seconds": seconds,
                     "samples_per_s": args.text_samples / seconds,
                     **_dependence(oracle, words)})
        print(f"teacher {steps:2d} steps: gen-PPL {rows[-1]['gen_ppl']:.1f} entropy {rows[-1]['entropy']:.3f}",
              flush=True)
    train = ConditionDataset.from_prompts(torch.empty(4096, 0, dtype=torch.long))
    evaluation = ConditionDataset.from_prompts(torch.empty(128, 0, dtype=torch.long))
    runs = []
    modes = [(mode, "fkl") for mode in args.text_modes]
    if "divergences" in args.tasks:
        modes += [("full", d) for d in ("rkl", "jeffreys", "js", "hellinger")]
    for mode, divergence in modes:
        budget = args.text_steps if divergence == "fkl" else args.divergence_steps
        student, record = distill(teacher, train, evaluation, gen_ppl, "gen_ppl", mode, budget, None,
                                  {"generation_length": length, "divergence": divergence, **args.text_config},
                                  processing_class=tokenizer)

        def one_step(model=student):
            generator = torch.Generator().manual_seed(args.seed)
            return model.generate(empty, max_new_tokens=length, steps=1, temperature=1.0, top_p=REFERENCE_TOP_P,
                                  suppress_tokens=specials, stop_at_eos=False, generator=generator,
                                  return_dict_in_generate=True)

        seconds, _, output = median_seconds(one_step, args.repeats)
        assert output.nfe == 1
        metrics = _text(text_metrics(oracle, output.sequences))
        rows.append({"model": f"Di[M]O student ({mode}, {divergence})", "steps": 1, **metrics, "seconds": seconds,
                     "samples_per_s": args.text_samples / seconds,
                     "speedup_vs_teacher_16": teacher_seconds[16] / seconds,
                     **_dependence(oracle, output.sequences)})
        runs.append({**record, **metrics})
        print(f"student {mode} {divergence}: gen-PPL {metrics['gen_ppl']:.1f} entropy {metrics['entropy']:.3f} "
              f"(best step {record['best_step']}, {record['seconds']:.0f} s)", flush=True)
    return {"rows": rows, "runs": runs, "num_samples": args.text_samples, "text_steps": args.text_steps,
            "text_config": args.text_config}


def shuffled_gen_ppl(oracle: OracleLanguage, words: torch.Tensor, seed: int = 0) -> float:
    """gen-PPL of the samples with every position's words permuted across samples independently: the product of
    the samples' per-position marginals. Its gap to the samples' own gen-PPL is what the sampler's dependence
    between words is worth; a sampler whose words are independent (a product distribution) shows no gap."""
    generator = torch.Generator().manual_seed(seed)
    columns = [column[torch.randperm(len(column), generator=generator)] for column in words.T]
    return text_metrics(oracle, torch.stack(columns, dim=1)).gen_ppl


def position_entropy(words: torch.Tensor) -> float:
    """Mean over positions of the entropy (nats) of the words the samples hold there: the diversity *across*
    samples, which the per-sample unigram entropy does not see (a generator that writes nearly the same sequence
    every time has a high unigram entropy and a low position entropy)."""
    values = []
    for column in words.T:
        p = torch.unique(column, return_counts=True)[1].double() / len(column)
        values.append(float(-(p * p.log()).sum()))
    return sum(values) / len(values)


def _dependence(oracle: OracleLanguage, words: torch.Tensor) -> dict:
    return {"gen_ppl_shuffled": shuffled_gen_ppl(oracle, words), "position_entropy": position_entropy(words)}


def _text(m) -> dict:
    return {"gen_ppl": m.gen_ppl, "nll": m.nll, "entropy": m.entropy, "distinct_2": m.distinct[2]}


# -------------------------------------------------------------------------------------------------------------- images
def real_digits_row(per_class: int, draws: int = 5) -> dict:
    """The floor of the image metrics at this sample size: ``per_class`` real training digits per class, scored
    against the held-out split exactly as generated samples are (mean and spread over ``draws`` draws)."""
    from hf_dlm.evaluation.digits import image_metrics, load_digits_task

    train, _ = load_digits_task()
    scores = []
    for seed in range(draws):
        generator = torch.Generator().manual_seed(seed)
        index = torch.cat([torch.nonzero(train.labels == c).view(-1)[
            torch.randperm(int((train.labels == c).sum()), generator=generator)[:per_class]] for c in range(10)])
        scores.append(image_metrics(train.images[index], train.labels[index]).__dict__)
    row = {"model": f"data (training digits, {draws} draws)", "steps": None}
    for key in scores[0]:
        values = torch.tensor([s[key] for s in scores], dtype=torch.float64)
        row[key], row[f"{key}_std"] = float(values.mean()), float(values.std())
    return row


def image_task(args) -> dict:
    from hf_dlm import MaskedImagePipeline
    from hf_dlm.evaluation.digits import CAPTION_TEMPLATES, caption, image_metrics
    from hf_dlm.recipes.digits import generate_digits, load_digits_pipeline, save_digit_grid

    pipe = load_digits_pipeline()
    pipe.set_progress_bar_config(disable=True)
    labels = [label for label in range(10) for _ in range(args.per_class)]

    def tokenize(texts):
        return pipe.tokenizer(texts, padding="max_length", truncation=True, return_tensors="pt")["input_ids"]

    rows, teacher_seconds = [real_digits_row(args.per_class)], {}
    for steps in TEACHER_STEPS:
        seconds, _, tokens = median_seconds(functools.partial(generate_digits, pipe, labels, steps, 1.0, args.seed),
                                            args.repeats)
        teacher_seconds[steps] = seconds
        rows.append({"model": "teacher", "steps": steps, **image_metrics(tokens, torch.tensor(labels)).__dict__,
                     "seconds": seconds, "samples_per_s": len(labels) / seconds})
        print(f"teacher {steps:2d} steps: FD {rows[-1]['fd_digits']:.2f} class {rows[-1]['class_consistency']:.3f}",
              flush=True)
    train = ConditionDataset.from_captions(tokenize([caption(label, v) for label in range(10)
                                                     for v in range(len(CAPTION_TEMPLATES))] * 20))
    eval_labels = [label for label in range(10) for _ in range(12)]
    evaluation = ConditionDataset.from_captions(tokenize([caption(label, 1) for label in eval_labels]))

    def fd(samples, inputs):
        return {"fd_digits": image_metrics(samples.cpu(), torch.tensor(eval_labels[: len(samples)])).fd_digits}

    runs = []
    for mode in args.image_modes:
        student, record = distill(pipe.transformer, train, evaluation, fd, "fd_digits", mode, args.image_steps, None,
                                  {"teacher_cfg_scale": args.image_teacher_cfg, "eval_steps": 50,
                                   "eval_num_samples": 120, **args.image_config},
                                  text_encoder=pipe.text_encoder, null_text_input_ids=tokenize([""]))
        one_step_pipe = MaskedImagePipeline(vqvae=pipe.vqvae, transformer=student, scheduler=pipe.scheduler,
                                            tokenizer=pipe.tokenizer, text_encoder=pipe.text_encoder)
        one_step_pipe.set_progress_bar_config(disable=True)
        seconds, _, tokens = median_seconds(
            functools.partial(generate_digits, one_step_pipe, labels, 1, 1.0, args.seed), args.repeats)
        metrics = image_metrics(tokens, torch.tensor(labels)).__dict__
        rows.append({"model": f"Di[M]O student ({mode})", "steps": 1, **metrics, "seconds": seconds,
                     "samples_per_s": len(labels) / seconds, "speedup_vs_teacher_16": teacher_seconds[16] / seconds})
        runs.append({**record, **metrics})
        print(f"student {mode}: FD {metrics['fd_digits']:.2f} class {metrics['class_consistency']:.3f} "
              f"recall {metrics['recall']:.3f} (best step {record['best_step']})", flush=True)
        if mode == "full":
            save_digit_grid(one_step_pipe, RESULTS / f"{args.output}_digits_grid.png", num_inference_steps=1,
                            guidance_scale=1.0)
    return {"rows": rows, "runs": runs, "per_class": args.per_class, "teacher_cfg_scale": args.image_teacher_cfg,
            "image_steps": args.image_steps, "image_config": args.image_config}


# -------------------------------------------------------------------------------------------------------------- memory
MEMORY_MODEL = dict(d_model=1536, n_layers=12, n_heads=16, mlp_hidden_size=4096)
MEMORY_BATCH = 2


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024


def _tensor_mib(tensors) -> float:
    """Bytes of the distinct storages among ``tensors``."""
    seen, total = set(), 0
    for t in tensors:
        if t is None or not torch.is_tensor(t):
            continue
        key = t.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return total / 2**20


def memory_worker(mode: str) -> None:
    """In a fresh process (libraries imported and warmed up before the baseline): the peak resident-set growth of
    the teacher's forward alone, or of two Di[M]O steps in ``mode``; and the bytes of every live model-state tensor
    (parameters, gradients, both optimizers' states, the EMA)."""
    from hf_dlm import LLaDAConfig, LLaDAModelLM

    torch.manual_seed(0)
    torch.ones(64, 64) @ torch.ones(64, 64)
    base = _status_mib("VmRSS")
    config = LLaDAConfig(vocab_size=261, embedding_size=261, max_sequence_length=128, mask_token_id=257,
                         pad_token_id=256, eos_token_id=258, bos_token_id=259, **MEMORY_MODEL)
    teacher = LLaDAModelLM(config).eval()
    params = sum(p.numel() for p in teacher.parameters())
    if mode == "teacher":
        with torch.no_grad():
            teacher(torch.randint(0, 256, (MEMORY_BATCH, 65)))
        state = _tensor_mib(teacher.parameters())
    else:
        with tempfile.TemporaryDirectory() as scratch:
            args = DiMOConfig(output_dir=scratch, per_device_train_batch_size=MEMORY_BATCH, max_steps=2,
                              generation_length=64, memory_mode=mode, ema_decay=0.99, report_to=[],
                              use_cpu=True, save_strategy="no", disable_tqdm=True)
            trainer = DiMOTrainer(teacher, args, train_dataset=ConditionDataset.from_prompts(
                torch.empty(64, 0, dtype=torch.long)))
            trainer.train()
            modules = [m for m in (trainer.teacher, trainer.model, trainer.auxiliary) if m is not None]
            tensors = [p for m in modules for p in m.parameters()] + [p.grad for m in modules for p in m.parameters()]
            for optimizer in (trainer.optimizer, trainer.auxiliary_optimizer):
                tensors += [v for s in optimizer.state_dict()["state"].values() for v in s.values()]
            tensors += list(trainer.ema.shadow.values())
            state = _tensor_mib(tensors)
    print(json.dumps({"mode": mode, "parameters": params, "peak_growth_mib": _status_mib("VmHWM") - base,
                      "model_state_mib": state}))


def memory_task() -> dict:
    results = {}
    for mode in ("teacher", "full", "lora"):
        out = subprocess.run([sys.executable, __file__, "--memory-worker", mode], capture_output=True, text=True,
                             check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"memory {mode}: peak +{results[mode]['peak_growth_mib']:.0f} MiB, model state "
              f"{results[mode]['model_state_mib']:.0f} MiB", flush=True)
    return {"model": MEMORY_MODEL, "parameters": results["teacher"]["parameters"], "batch": MEMORY_BATCH,
            "length": 64, "peak_growth_mib": {m: r["peak_growth_mib"] for m, r in results.items()},
            "model_state_mib": {m: r["model_state_mib"] for m, r in results.items()},
            "peak_ratio_to_teacher": {m: r["peak_growth_mib"] / results["teacher"]["peak_growth_mib"]
                                      for m, r in results.items()}}


# ---------------------------------------------------------------------------------------------------------------- plot
def plot(payload: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, task, metric, label in ((axes[0], "text", "gen_ppl", "oracle gen-PPL (log)"),
                                    (axes[1], "image", "fd_digits", "FD-digits")):
        rows = payload.get(task, {}).get("rows", [])
        teacher = [r for r in rows if r["model"] == "teacher"]
        if not teacher:
            continue
        ax.plot([r["steps"] for r in teacher], [r[metric] for r in teacher], "o-", label="teacher")
        for r in rows:
            if r["model"].startswith("Di[M]O"):
                ax.scatter([1], [r[metric]], marker="*", s=120, label=r["model"])
        ax.set_xscale("log", base=2)
        if metric == "gen_ppl":
            ax.set_yscale("log")
        data = [r for r in rows if r["model"].startswith("data")]
        if data:
            ax.axhline(data[0][metric], color="grey", ls=":", label=data[0]["model"])
        ax.set_xlabel("sampling steps (NFE)")
        ax.set_ylabel(label)
        ax.set_title(task)
        ax.legend(fontsize=7)
    memory = payload.get("memory")
    if memory:
        modes = list(memory["peak_growth_mib"])
        axes[2].bar(modes, [memory["peak_growth_mib"][m] for m in modes])
        axes[2].set_ylabel("peak RSS growth (MiB)")
        axes[2].set_title(f"memory, {memory['parameters'] / 1e6:.0f} M-parameter LLaDA")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["text", "image", "memory", "divergences"])
    parser.add_argument("--text-samples", type=int, default=256)
    parser.add_argument("--text-steps", type=int, default=800)
    parser.add_argument("--divergence-steps", type=int, default=200)
    parser.add_argument("--text-config", type=json.loads, default={},
                        help='extra DiMOConfig fields for the text students, as JSON, e.g. \'{"r_init": 1.0}\'')
    parser.add_argument("--text-modes", nargs="+", choices=["full", "lora"], default=["full", "lora"])
    parser.add_argument("--image-steps", type=int, default=400)
    parser.add_argument("--image-teacher-cfg", type=float, default=1.0)
    parser.add_argument("--image-config", type=json.loads, default={},
                        help='extra DiMOConfig fields for the image students, as JSON, e.g. \'{"ema_decay": 0.995}\'')
    parser.add_argument("--image-modes", nargs="+", choices=["full", "lora"], default=["full", "lora"])
    parser.add_argument("--output", default="dimo", help="results name: benchmarks/results/<output>.json and .png")
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--memory-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_worker:
        memory_worker(args.memory_worker)
        return
    payload = {"benchmark": "dimo", "machine": machine()}
    path = RESULTS / f"{args.output}.json"
    if path.exists():
        payload.update({k: v for k, v in json.loads(path.read_text()).items() if k in ("text", "image", "memory")})
    for task, fn in (("memory", memory_task), ("text", lambda: text_task(args)), ("image", lambda: image_task(args))):
        if task in args.tasks:
            payload[task] = fn()
            write_json(args.output, payload)
            plot(payload, RESULTS / f"{args.output}.png")
    text_rows = payload.get("text", {}).get("rows", [])
    print(markdown_table(["model", "steps", "gen-PPL", "entropy", "samples/s"],
                         [[r["model"], r["steps"] or "—", r["gen_ppl"], r["entropy"], r.get("samples_per_s", "—")]
                          for r in text_rows]))
    image_rows = payload.get("image", {}).get("rows", [])
    print(markdown_table(["model", "steps", "class consistency", "FD-digits", "precision", "recall", "samples/s"],
                         [[r["model"], r["steps"] or "—", r["class_consistency"], r["fd_digits"], r["precision"],
                           r["recall"], r.get("samples_per_s", "—")] for r in image_rows]))
    if "memory" in payload:
        print(json.dumps(payload["memory"], indent=1))


if __name__ == "__main__":
    main()
