"""Logit-FM on the oracle language: every sampling scheme at NFE 32 / 64 / 128 against the AR baseline and the
masked-diffusion teacher of the same parameter count, and a sweep of the hybrid switch time t*.

    python benchmarks/logit_fm.py               # trains the Logit-FM model on first use (cached), then samples
    python benchmarks/logit_fm.py --retrain     # train again
    python benchmarks/logit_fm.py --train-steps 4000 --output logit_fm_4000steps   # Logit-FM and AR: 4,000 steps

The Logit-FM model is a bidirectional transformer of the teacher's width and depth (adaLN-single time
conditioning), its MLP width chosen so its parameter count is the closest to the teacher's, trained with the
eq. 15 objective on the teacher's sequences with the teacher's steps, batch size and learning-rate schedule
(``--train-steps`` gives it and the AR baseline another number of steps; the teacher stays at its own).
Samples are unconditional 64-word sequences (256 per row), special tokens never sampled, scored by the oracle
(gen-PPL and per-sequence unigram entropy) — the shape of the paper's Table 1; the t* sweep is Appendix B's figure.
Training times are t ~ U[0, 0.4] (``--t-max``): with this 261-token vocabulary the data token is already decided at
t ≈ 0.4 (held-out loss 0.03 there, 4.4 at t = 0), the same reason the authors' code draws t uniformly on [0, 0.3];
sampling runs on the same interval (``t_end`` = t_max) and returns argmax x_{t_end} (the paper's readout; the
authors' code reads one more prediction instead, ``readout="prediction"``, and ``from_preset("kl-flow")`` gives their
whole sampling recipe — not what these rows ran).
The AR baseline and the teacher are sampled in the same run (T = 1, with and without nucleus top-p 0.9).

Writes benchmarks/results/<output>.json and .png (default ``logit_fm``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(__file__))
import hf_dlm  # noqa: E402,F401
from _common import RESULTS, machine, markdown_table, median_seconds, sample_ar, sample_mdm, write_json  # noqa: E402
from hf_dlm import (LogitFMConfig, LogitFMGenerationConfig, LogitFMModel, LogitFMTrainer,  # noqa: E402
                    LogitFMTrainingArguments)
from hf_dlm._io import save_atomically  # noqa: E402
from hf_dlm.recipes.reference import (REFERENCE_TOP_P, cache_root, count_parameters, get_settings,  # noqa: E402
                                         load_reference, oracle_and_tokenizer)
from hf_dlm.evaluation.text_metrics import text_metrics  # noqa: E402
from hf_dlm.training import TokenIdsDataset  # noqa: E402

SCHEMES = ("ode", "semi_randomized", "randomized", "hybrid")
NFES = (32, 64, 128)
SWITCH_TIMES = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4)
HYBRID_SWITCH = 0.1


def logit_fm_config(settings, tokenizer, target: int, time_conditioning: str) -> LogitFMConfig:
    def build(width: int) -> LogitFMConfig:
        return LogitFMConfig(vocab_size=len(tokenizer), hidden_size=settings.d_model,
                             num_hidden_layers=settings.n_layers, num_attention_heads=settings.n_heads,
                             intermediate_size=width, max_position_embeddings=max(settings.seq_len, 16) * 2,
                             time_embedding_dim=settings.d_model, time_conditioning=time_conditioning,
                             pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                             eos_token_id=tokenizer.eos_token_id)

    def params(width: int) -> int:
        with torch.device("meta"):
            return count_parameters(LogitFMModel(build(width)))

    best = min(range(8, 8 * settings.d_model + 1, 8), key=lambda w: abs(params(w) - target))
    return build(best)


def train_logit_fm(args, settings, tokenizer, oracle, target: int) -> tuple[LogitFMModel, dict]:
    max_steps = args.train_steps or settings.max_steps
    key = f"logit-fm-{settings.name}-{settings.key()}-{args.time_conditioning}-{args.time_distribution}-{args.t_max}"
    if max_steps != settings.max_steps:
        key += f"-{max_steps}steps"
    seed = settings.seed if args.train_seed is None else args.train_seed
    if seed != settings.seed:
        key += f"-seed{seed}"
    folder = cache_root() / key
    if folder.exists() and not args.retrain:
        info = json.loads((folder / "training_info.json").read_text())
        return LogitFMModel.from_pretrained(folder).eval(), info
    torch.manual_seed(seed)
    model = LogitFMModel(logit_fm_config(settings, tokenizer, target, args.time_conditioning))
    # sample on the times the model was trained on; tokens are argmax x_{t_end}
    model.generation_config = LogitFMGenerationConfig(
        max_new_tokens=settings.seq_len, num_steps=64, scheme="randomized", top_k=1, t_end=args.t_max,
        hybrid_switch_time=HYBRID_SWITCH, suppress_tokens=list(tokenizer.all_special_ids))
    data = TokenIdsDataset(oracle.sample(settings.train_sequences, settings.seq_len, seed=settings.data_seed))
    with tempfile.TemporaryDirectory() as scratch:
        training_args = LogitFMTrainingArguments(
            output_dir=scratch, per_device_train_batch_size=settings.batch_size, learning_rate=settings.learning_rate,
            weight_decay=0.01, max_steps=max_steps, warmup_steps=settings.warmup_steps,
            lr_scheduler_type="cosine", logging_steps=max(max_steps // 10, 1), save_strategy="no",
            report_to=[], use_cpu=True, seed=seed, disable_tqdm=True, time_distribution=args.time_distribution,
            t_max=args.t_max)
        trainer = LogitFMTrainer(model=model, args=training_args, train_dataset=data)
        start = time.monotonic()
        trainer.train()
        seconds = time.monotonic() - start
    losses = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
    info = {"train_seconds": seconds, "train_steps": max_steps, "train_seed": seed,
            "parameters": count_parameters(model), "loss_curve": losses,
            "time_distribution": args.time_distribution, "t_max": args.t_max}
    save_atomically(folder, model, extra_files={"training_info.json": json.dumps(info)})
    return model.eval(), info


def sample_logit_fm(model, tokenizer, num: int, length: int, batch_size: int, seed: int, **settings):
    out = []
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, num, batch_size):
        n = min(batch_size, num - start)
        out.append(model.generate(torch.empty(n, 0, dtype=torch.long), max_new_tokens=length, generator=generator,
                                  suppress_tokens=list(tokenizer.all_special_ids), **settings))
    return torch.cat(out)


def metrics(oracle, words) -> dict:
    m = text_metrics(oracle, words)
    return {"gen_ppl": m.gen_ppl, "nll": m.nll, "entropy": m.entropy, "distinct_2": m.distinct[2]}


def plot(payload: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    rows = payload["rows"]
    for scheme in SCHEMES:
        pts = [(r["nfe"], r["gen_ppl"]) for r in rows if r["model"] == f"Logit-FM ({scheme})"]
        axes[0].plot(*zip(*pts), marker="o", label=f"Logit-FM {scheme}")
    for r in rows:
        if r["model"] in ("data", "autoregressive (T=1)", "autoregressive (top-p 0.9)"):
            axes[0].axhline(r["gen_ppl"], ls="--", lw=1, color={"data": "k"}.get(r["model"], "grey"))
            axes[0].annotate(r["model"], (NFES[0], r["gen_ppl"]), fontsize=7)
    axes[0].set(xscale="log", yscale="log", xlabel="NFE", ylabel="oracle gen-PPL", title="schemes vs NFE")
    axes[0].set_xticks(NFES, [str(n) for n in NFES])
    axes[0].legend(fontsize=7)
    sweep = payload["switch_sweep"]
    ax = axes[1]
    ax.plot([s["t_star"] for s in sweep], [s["gen_ppl"] for s in sweep], marker="o", color="C3")
    ax.set(xlabel="t* (hybrid, NFE 64)", ylabel="oracle gen-PPL", yscale="log", title="hybrid switch time")
    twin = ax.twinx()
    twin.plot([s["t_star"] for s in sweep], [s["entropy"] for s in sweep], marker="s", color="C0")
    twin.set_ylabel("entropy", color="C0")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-conditioning", default="adaln_single")
    parser.add_argument("--time-distribution", default="uniform")
    parser.add_argument("--t-max", type=float, default=0.4)
    parser.add_argument("--train-steps", type=int, default=None,
                        help="training steps of the Logit-FM model and of the AR baseline (default: the teacher's)")
    parser.add_argument("--train-seed", type=int, default=None,
                        help="training seed of the Logit-FM model (default: the reference builds'; the baselines keep "
                        "theirs)")
    parser.add_argument("--output", default="logit_fm", help="results name: benchmarks/results/<output>.json/.png")
    parser.add_argument("--retrain", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    settings = get_settings("bench")
    oracle, tokenizer = oracle_and_tokenizer(settings)
    length, num = settings.seq_len, args.samples
    teacher, _, teacher_info = load_reference("teacher", "bench")
    # the AR baseline gets the Logit-FM model's training steps (the teacher keeps its cached 2,000)
    ar_settings = dataclasses.replace(settings, max_steps=args.train_steps) if args.train_steps else settings
    ar, _, ar_info = load_reference("ar", ar_settings)
    model, info = train_logit_fm(args, settings, tokenizer, oracle, teacher_info["parameters"])
    print(f"Logit-FM: {info['parameters']:,} parameters (teacher {teacher_info['parameters']:,}, AR "
          f"{ar_info['parameters']:,}), trained in {info['train_seconds']:.0f} s", flush=True)

    rows = [{"model": "data", "nfe": None, **metrics(oracle, oracle.sample(num, length, seed=777))}]
    for label, top_p in (("autoregressive (T=1)", 1.0), ("autoregressive (top-p 0.9)", REFERENCE_TOP_P)):
        seconds, _, (words, _) = median_seconds(
            lambda top_p=top_p: sample_ar(ar, tokenizer, num, length, 1.0, top_p, args.batch_size, args.seed),
            args.repeats)
        rows.append({"model": label, "nfe": length, **metrics(oracle, words), "seconds": seconds})
        print(rows[-1], flush=True)
    for steps in (32, 64):
        seconds, _, (words, _) = median_seconds(
            lambda steps=steps: sample_mdm(teacher, tokenizer, num, length, steps, "random", 1.0, REFERENCE_TOP_P,
                                           args.batch_size, args.seed), args.repeats)
        rows.append({"model": "masked diffusion (top-p 0.9)", "nfe": steps, **metrics(oracle, words),
                     "seconds": seconds})
        print(rows[-1], flush=True)
    for scheme in SCHEMES:
        for nfe in NFES:
            seconds, _, words = median_seconds(
                lambda scheme=scheme, nfe=nfe: sample_logit_fm(model, tokenizer, num, length, args.batch_size,
                                                               args.seed, scheme=scheme, num_steps=nfe),
                args.repeats)
            rows.append({"model": f"Logit-FM ({scheme})", "nfe": nfe, **metrics(oracle, words), "seconds": seconds})
            print(rows[-1], flush=True)
    sweep = []
    for t_star in SWITCH_TIMES:
        words = sample_logit_fm(model, tokenizer, num, length, args.batch_size, args.seed, scheme="hybrid",
                                num_steps=64, hybrid_switch_time=t_star)
        sweep.append({"t_star": t_star, **metrics(oracle, words)})
        print(sweep[-1], flush=True)
    top_k = []
    for k in (1, 2, 3, 5, 10):
        words = sample_logit_fm(model, tokenizer, num, length, args.batch_size, args.seed, scheme="randomized",
                                num_steps=64, top_k=k)
        top_k.append({"top_k": k, **metrics(oracle, words)})
        print(top_k[-1], flush=True)
    payload = {"benchmark": "logit_fm", "machine": machine(), "samples": num, "length": length,
               "training": {**info, "teacher_parameters": teacher_info["parameters"],
                            "ar_parameters": ar_info["parameters"], "ar_train_steps": ar_settings.max_steps,
                            "teacher_train_steps": settings.max_steps},
               "settings": {"time_conditioning": args.time_conditioning, "time_distribution": args.time_distribution,
                            "t_max": args.t_max, "t_end": args.t_max, "top_k": 1,
                            "hybrid_switch_time": HYBRID_SWITCH},
               "rows": rows, "switch_sweep": sweep, "top_k_sweep": top_k}
    write_json(args.output, payload)
    plot(payload, RESULTS / f"{args.output}.png")
    print(markdown_table(["model", "NFE", "gen-PPL", "entropy", "distinct-2", "seconds"],
                         [[r["model"], r["nfe"] or "—", r["gen_ppl"], r["entropy"], r["distinct_2"],
                           r.get("seconds", "—")] for r in rows]))
    print(markdown_table(["t*", "gen-PPL", "entropy"], [[s["t_star"], s["gen_ppl"], s["entropy"]] for s in sweep]))
    print(markdown_table(["top-k", "gen-PPL", "entropy"], [[s["top_k"], s["gen_ppl"], s["entropy"]] for s in top_k]))


if __name__ == "__main__":
    main()
