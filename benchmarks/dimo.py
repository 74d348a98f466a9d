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
from hf_dlm.evaluation.reference import REFERENCE_TOP_P, get_settings, load_reference  # noqa: E402
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
        config = dict(output_dir=scratch, per_device_train_batch_size=32, max_steps=max_steps, learning_rate=5e-5,
                      auxiliary_learning_rate=1e-4, auxiliary_updates_per_step=2, warmup_steps=20,
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

    rows = [{"model": "data", "steps": None, **_text(data_reference(oracle, args.text_samples, length, seed=777))}]
    teacher_seconds = {}
    for steps in TEACHER_STEPS:
        seconds, _, (words, _) = median_seconds(
            lambda: sample_mdm(teacher, tokenizer, args.text_samples, length, steps, "random", 1.0, REFERENCE_TOP_P,
                               256, args.seed), args.repeats)
        teacher_seconds[steps] = seconds
        rows.append({"model": "teacher", "steps": steps, **_text(text_metrics(oracle, words)), "seconds": seconds,
                     "samples_per_s": args.text_samples / seconds})
        print(f"teacher {steps:2d} steps: gen-PPL {rows[-1]['gen_ppl']:.1f} entropy {rows[-1]['entropy']:.3f}",
              flush=True)
    train = ConditionDataset.from_prompts(torch.empty(4096, 0, dtype=torch.long))
    evaluation = ConditionDataset.from_prompts(torch.empty(128, 0, dtype=torch.long))
    runs = []
    modes = [("full", "fkl"), ("lora", "fkl")]
    if "divergences" in args.tasks:
        modes += [("full", d) for d in ("rkl", "jeffreys", "js", "hellinger")]
    for mode, divergence in modes:
        budget = args.text_steps if divergence == "fkl" else args.divergence_steps
        student, record = distill(teacher, train, evaluation, gen_ppl, "gen_ppl", mode, budget, None,
                                  {"generation_length": length, "divergence": divergence}, processing_class=tokenizer)

        def one_step():
            generator = torch.Generator().manual_seed(args.seed)
            return student.generate(empty, max_new_tokens=length, steps=1, temperature=1.0, top_p=REFERENCE_TOP_P,
                                    suppress_tokens=specials, stop_at_eos=False, generator=generator,
                                    return_dict_in_generate=True)

        seconds, _, output = median_seconds(one_step, args.repeats)
        assert output.nfe == 1
        metrics = _text(text_metrics(oracle, output.sequences))
        rows.append({"model": f"Di[M]O student ({mode}, {divergence})", "steps": 1, **metrics, "seconds": seconds,
                     "samples_per_s": args.text_samples / seconds,
                     "speedup_vs_teacher_16": teacher_seconds[16] / seconds})
        runs.append({**record, **metrics})
        print(f"student {mode} {divergence}: gen-PPL {metrics['gen_ppl']:.1f} entropy {metrics['entropy']:.3f} "
              f"(best step {record['best_step']}, {record['seconds']:.0f} s)", flush=True)
    return {"rows": rows, "runs": runs, "num_samples": args.text_samples}


def _text(m) -> dict:
    return {"gen_ppl": m.gen_ppl, "nll": m.nll, "entropy": m.entropy, "distinct_2": m.distinct[2]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["text", "image", "memory", "divergences"])
    parser.add_argument("--text-samples", type=int, default=256)
    parser.add_argument("--text-steps", type=int, default=600)
    parser.add_argument("--divergence-steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    payload = {"benchmark": "dimo", "machine": machine()}
    path = RESULTS / "dimo.json"
    if path.exists():
        payload.update({k: v for k, v in json.loads(path.read_text()).items() if k in ("text", "image", "memory")})
    if "text" in args.tasks:
        payload["text"] = text_task(args)
        write_json("dimo", payload)
    rows = payload.get("text", {}).get("rows", [])
    print(markdown_table(["model", "steps", "gen-PPL", "entropy"],
                         [[r["model"], r["steps"] or "—", r["gen_ppl"], r["entropy"]] for r in rows]))


if __name__ == "__main__":
    main()
