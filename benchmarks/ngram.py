"""Do hashed N-gram embeddings help a masked diffusion LM at this scale? Oracle language, equal parameter counts,
equal training budget.

    python benchmarks/ngram.py               # trains every variant on first use (cached), then evaluates
    python benchmarks/ngram.py --steps 30 --samples 32 --output ngram_smoke   # a quick smoke run

Variants, all LLaDA-architecture masked diffusion models trained with the same objective, data, steps, batch and
learning-rate schedule:

* ``plain``: the small base model (d 64, 2 layers) — what the N-gram parameters are added to;
* N-gram models: the base plus hashed N-gram embeddings for N ∈ {2, 3, 4} × K ∈ {1, 2} × amplification
  {√D, LayerNorm}; the table sizes of each (N, K) are set so the N-gram parameters are the same budget for all;
* ``wider`` and ``deeper``: the same total parameter count spent on width (d 96) or on layers instead;
* controls ``control sqrt_d`` / ``control layernorm``: the base with the amplification alone (every word is an ignored
  id, so no N-gram has an id) — separates the effect of the N-gram rows from that of the rescaled embedding — and
  ``deeper sqrt_d``, the deeper baseline with the same √D amplification.

Measured for each: held-out NLL per token through the ELBO (Monte Carlo, with its standard error), oracle gen-PPL and
entropy of 256 unconditional samples at 16 and 64 steps (the reference sampler: random order, T = 1, top-p 0.9),
training throughput, and the median time of a 64-step sampling batch (with and without the N-gram id cache).
Also records hash collision rates on the oracle's own N-grams (prime table sizes vs multiples of the vocabulary).

Writes benchmarks/results/ngram.json and ngram.png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, replace
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(__file__))
import hf_dlm  # noqa: E402,F401
from _common import RESULTS, machine, markdown_table, median_seconds, sample_mdm, write_json  # noqa: E402
from hf_dlm import LLaDAConfig, LLaDAModelLM  # noqa: E402
from hf_dlm._io import save_atomically  # noqa: E402
from hf_dlm.evaluation.likelihood import heldout_nll  # noqa: E402
from hf_dlm.recipes.reference import (REFERENCE_TOP_P, ReferenceSettings, _train, cache_root,  # noqa: E402
                                         count_parameters, oracle_and_tokenizer, teacher_generation_config)
from hf_dlm.evaluation.text_metrics import text_metrics  # noqa: E402
from hf_dlm.modules.ngram import hash_ngrams, ngram_parameter_budget  # noqa: E402
from hf_dlm.modules.ngram.configuration import choose_table_sizes  # noqa: E402
from hf_dlm.training import MaskedDiffusionTrainer, MaskedDiffusionTrainingArguments, TokenIdsDataset  # noqa: E402

BASE = ReferenceSettings(name="ngram", seq_len=64, d_model=64, n_layers=2, n_heads=4, mlp_hidden_size=192,
                         batch_size=64, max_steps=1000, learning_rate=2e-3, warmup_steps=50, train_sequences=64_000)
NGRAM_FRACTION = 0.4  # of the total parameters, below the report's 50 % limit
NGRAM_WIDTH = 32  # per-table embedding width before the projection
ORDERS, TABLES, AMPLIFICATIONS = (2, 3, 4), (1, 2), ("sqrt_d", "layernorm")


def model_config(settings: ReferenceSettings, tokenizer, d_model: int, n_layers: int, mlp: int,
                 ngram: dict | None = None) -> LLaDAConfig:
    return LLaDAConfig(
        vocab_size=len(tokenizer), embedding_size=len(tokenizer), d_model=d_model, n_layers=n_layers,
        n_heads=settings.n_heads, mlp_hidden_size=mlp, max_sequence_length=settings.seq_len * 2, rope_theta=10000.0,
        mask_token_id=tokenizer.mask_token_id, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id, ngram_embedding=ngram)


def parameters_of(config: LLaDAConfig) -> int:
    with torch.device("meta"):
        return count_parameters(LLaDAModelLM(config))


def closest_mlp(settings, tokenizer, d_model: int, n_layers: int, target: int) -> int:
    return min(range(32, 8 * d_model + 1, 8),
               key=lambda m: abs(parameters_of(model_config(settings, tokenizer, d_model, n_layers, m)) - target))


def ngram_settings(max_n: int, num_tables: int, amplification: str, budget: int, vocab: int, d_model: int) -> dict:
    """Settings whose N-gram parameters are about ``budget``: each of the (N−1)·K tables gets an equal share."""
    count = (max_n - 1) * num_tables
    rows = budget // count // NGRAM_WIDTH - d_model - 1  # table rows + a (width × d) projection per table
    return {"max_n": max_n, "num_tables": num_tables, "amplification": amplification, "embedding_dim": NGRAM_WIDTH,
            "table_size_ratio": rows / vocab, "combine": "mean"}


def amplification_only(amplification: str, vocab: int) -> dict:
    """N-gram settings that only amplify: every word is an ignored id, so no N-gram ever has an id and the layer
    reduces to the amplified token embedding (its one tiny table is never read)."""
    return {"max_n": 2, "num_tables": 1, "amplification": amplification, "embedding_dim": 1,
            "table_size_ratio": 0.01, "ignored_token_ids": list(range(vocab))}


def variants(settings: ReferenceSettings, tokenizer) -> dict[str, LLaDAConfig]:
    base = model_config(settings, tokenizer, settings.d_model, settings.n_layers, settings.mlp_hidden_size)
    base_params = parameters_of(base)
    target = round(base_params / (1 - NGRAM_FRACTION))
    budget = target - base_params
    configs = {"plain": base}
    for amplification in AMPLIFICATIONS:
        for max_n in ORDERS:
            for num_tables in TABLES:
                ngram = ngram_settings(max_n, num_tables, amplification, budget, len(tokenizer), settings.d_model)
                configs[f"N{max_n} K{num_tables} {amplification}"] = model_config(
                    settings, tokenizer, settings.d_model, settings.n_layers, settings.mlp_hidden_size, ngram)
    # controls: the amplification alone
    for amplification in AMPLIFICATIONS:
        configs[f"control {amplification} (no N-grams)"] = model_config(
            settings, tokenizer, settings.d_model, settings.n_layers, settings.mlp_hidden_size,
            amplification_only(amplification, len(tokenizer)))
    wide = settings.d_model + 32
    configs["wider"] = model_config(settings, tokenizer, wide, settings.n_layers,
                                    closest_mlp(settings, tokenizer, wide, settings.n_layers, target))
    deep = settings.n_layers + 2
    configs["deeper"] = model_config(settings, tokenizer, settings.d_model, deep,
                                     closest_mlp(settings, tokenizer, settings.d_model, deep, target))
    # the fairest trunk baseline: the deeper model with the same √D amplification
    configs["deeper sqrt_d (no N-grams)"] = model_config(settings, tokenizer, settings.d_model, deep,
                                                         configs["deeper"].mlp_hidden_size,
                                                         amplification_only("sqrt_d", len(tokenizer)))
    return configs


def train_variant(name: str, config: LLaDAConfig, settings: ReferenceSettings, tokenizer, data,
                  retrain: bool) -> tuple[LLaDAModelLM, dict]:
    folder = cache_root() / f"ngram-{settings.key()}-{name.replace(' ', '-')}"
    if folder.exists() and not retrain:
        return LLaDAModelLM.from_pretrained(folder).eval(), json.loads((folder / "training_info.json").read_text())
    torch.manual_seed(settings.seed)
    model = LLaDAModelLM(config)
    model.generation_config = teacher_generation_config(settings, tokenizer)
    seconds = _train(model, MaskedDiffusionTrainer, MaskedDiffusionTrainingArguments, data, settings)
    info = {"train_seconds": seconds, "parameters": count_parameters(model),
            "ngram_parameters": ngram_parameter_budget(model)["ngram"],
            "tokens_per_second": settings.token_budget / seconds}
    save_atomically(folder, model, extra_files={"training_info.json": json.dumps(info)})
    return model.eval(), info


def collision_rates(oracle, vocab: int) -> list[dict]:
    """Pair collision rate × table size (1.0 = uniform hashing) on the oracle's distinct N-grams."""
    text = oracle.sample(500, 64, seed=3)
    rows = []
    for order in ORDERS:
        grams = torch.unique(text.unfold(1, order, 1).reshape(-1, order), dim=0)
        for ratio in (1, 2, 4):
            for kind, size in (("prime", choose_table_sizes(vocab, ratio, 1)[0]), ("multiple", ratio * vocab)):
                counts = torch.bincount(hash_ngrams(grams, vocab, size)).double()
                k = len(grams)
                rate = float((counts * (counts - 1)).sum() / (k * (k - 1)))
                rows.append({"order": order, "ratio": ratio, "kind": kind, "table_size": size,
                             "distinct_ngrams": k, "collisions_vs_uniform": rate * size})
    return rows


def id_cache_timing(repeats: int) -> list[dict]:
    """Median seconds to get the N-gram ids of a decoding canvas after a reveal: full recomputation vs the cache.

    LLaDA-8B's vocabulary and width-free settings (N = 4, K = 2; only ids are timed), batch 1, half the canvas
    masked, then ``revealed`` random masked positions revealed."""
    import time

    from hf_dlm.modules.ngram import NgramEmbeddingConfig, NgramIdCache, ngram_ids

    vocab, mask = 126464, 126336
    config = NgramEmbeddingConfig(max_n=4, num_tables=2).resolve(vocab, 64)
    sizes = [config.sizes_of_order(n) for n in config.orders]
    rows = []
    for length in (256, 1024, 4096):
        for revealed in (1, 32):
            generator = torch.Generator().manual_seed(length + revealed)
            canvas = torch.randint(0, mask, (1, length), generator=generator)
            canvas[torch.rand(1, length, generator=generator) < 0.5] = mask
            masked = (canvas[0] == mask).nonzero().flatten()
            after = canvas.clone()
            after[0, masked[torch.randperm(len(masked), generator=generator)[:revealed]]] = 7
            blocked_before, blocked_after = canvas == mask, after == mask
            eos = torch.zeros_like(blocked_before)
            full, cached = [], []
            for _ in range(repeats):
                start = time.perf_counter()
                expected = ngram_ids(after, blocked_after, eos, config.orders, sizes, config.hash_base)
                full.append(time.perf_counter() - start)
                cache = NgramIdCache()
                cache.get_ids(canvas, blocked_before, eos, config.orders, sizes, config.hash_base)
                start = time.perf_counter()
                ids = cache.get_ids(after, blocked_after, eos, config.orders, sizes, config.hash_base)
                cached.append(time.perf_counter() - start)
                assert torch.equal(ids, expected)
            full_s, cached_s = sorted(full)[repeats // 2], sorted(cached)[repeats // 2]
            rows.append({"length": length, "revealed": revealed, "full_seconds": full_s, "cached_seconds": cached_s,
                         "speedup": full_s / cached_s, "pairs_recomputed": int(cache.last_recomputed.sum()),
                         "pairs_total": int(cache.last_recomputed.numel())})
    return rows


def evaluate(model, tokenizer, oracle, held_out, args, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    nll = heldout_nll(model, held_out, mc_samples=args.mc_samples, batch_size=args.mc_samples, generator=generator)
    result = {"heldout_nll": nll.nll, "heldout_nll_stderr": nll.stderr}
    for steps in (16, 64):
        words, _ = sample_mdm(model, tokenizer, args.samples, BASE.seq_len, steps, "random", 1.0, REFERENCE_TOP_P,
                              64, seed)
        metrics = text_metrics(oracle, words)
        result[f"gen_ppl_{steps}"] = metrics.gen_ppl
        result[f"entropy_{steps}"] = metrics.entropy
    batch = torch.empty(64, 0, dtype=torch.long)

    def sample(use_cache: bool):
        return model.generate(batch, max_new_tokens=BASE.seq_len, steps=64, remasking="random", temperature=1.0,
                              top_p=REFERENCE_TOP_P, stop_at_eos=False, use_cache=use_cache,
                              generator=torch.Generator().manual_seed(0))

    result["sample_seconds"] = median_seconds(lambda: sample(True), args.repeats)[0]
    if model.config.ngram_embedding is not None:
        result["sample_seconds_no_cache"] = median_seconds(lambda: sample(False), args.repeats)[0]
    return result


def plot(payload: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = payload["rows"]
    names = [r["variant"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    colours = ["C2" if n == "plain" else "C3" if n in ("wider", "deeper") else "C7" if n.startswith("control")
               else "C0" for n in names]
    axes[0].barh(names, [r["heldout_nll"] for r in rows], xerr=[r["heldout_nll_stderr"] for r in rows],
                 color=colours)
    lo = min(r["heldout_nll"] for r in rows)
    axes[0].set(xlabel="held-out NLL per token (ELBO, nats)", xlim=(lo - 0.1, None), title="likelihood")
    axes[1].barh(names, [r["gen_ppl_64"] for r in rows], color=colours)
    axes[1].axvline(payload["data"]["gen_ppl"], ls="--", color="k", lw=1)
    axes[1].set(xlabel="oracle gen-PPL, 64 steps (dashed: data)", title="samples")
    for ax in axes:
        ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=BASE.max_steps)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--held-out", type=int, default=256)
    parser.add_argument("--mc-samples", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    parser.add_argument("--seed", type=int, default=BASE.seed, help="training seed (initialisation, data order)")
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--output", default="ngram")
    parser.add_argument("--cache-timing-only", action="store_true",
                        help="only time the N-gram id cache and add it to an existing results JSON")
    args = parser.parse_args()
    if args.cache_timing_only:
        path = RESULTS / f"{args.output}.json"
        payload = json.loads(path.read_text()) if path.exists() else {"machine": machine()}
        payload["id_cache"] = id_cache_timing(max(args.repeats, 5))
        write_json(args.output, payload)
        print(markdown_table(list(payload["id_cache"][0]), [list(r.values()) for r in payload["id_cache"]]))
        return

    torch.set_num_threads(max(torch.get_num_threads(), 1))
    settings = replace(BASE, max_steps=args.steps, warmup_steps=min(BASE.warmup_steps, max(args.steps // 10, 1)),
                       seed=args.seed)
    oracle, tokenizer = oracle_and_tokenizer(settings)
    data = TokenIdsDataset(oracle.sample(settings.train_sequences, settings.seq_len, seed=settings.data_seed))
    held_out = oracle.sample(args.held_out, settings.seq_len, seed=777)
    configs = variants(settings, tokenizer)
    if args.only:
        configs = {k: v for k, v in configs.items() if k in args.only}
    reference = text_metrics(oracle, oracle.sample(args.samples, settings.seq_len, seed=4242))
    rows = []
    for name, config in configs.items():
        model, info = train_variant(name, config, settings, tokenizer, data, args.retrain)
        row = {"variant": name, "parameters": info["parameters"], "ngram_parameters": info["ngram_parameters"],
               "train_seconds": info["train_seconds"], "train_tokens_per_second": info["tokens_per_second"],
               **({"ngram": config.ngram_embedding} if config.ngram_embedding else {}),
               **evaluate(model, tokenizer, oracle, held_out, args, seed=1)}
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "ngram"}), flush=True)

    plain = next((r for r in rows if r["variant"] == "plain"), None)
    if plain is not None:
        for row in rows:
            row["sample_time_vs_plain"] = row["sample_seconds"] / plain["sample_seconds"]
            row["train_speed_vs_plain"] = row["train_tokens_per_second"] / plain["train_tokens_per_second"]
    payload = {"machine": machine(), "settings": asdict(settings),
               "token_budget": settings.token_budget, "data": {"gen_ppl": reference.gen_ppl,
                                                               "entropy": reference.entropy},
               "oracle_entropy_rate": oracle.entropy_rate().value,
               "rows": rows, "collisions": collision_rates(oracle, len(tokenizer)),
               "id_cache": id_cache_timing(max(args.repeats, 5))}
    path = write_json(args.output, payload)
    plot(payload, RESULTS / f"{args.output}.png")
    header = ["variant", "params", "N-gram %", "held-out NLL", "± se", "gen-PPL 16", "gen-PPL 64", "entropy 64",
              "train tok/s", "sample s (cache / none)"]
    table = [[r["variant"], r["parameters"], round(100 * r["ngram_parameters"] / r["parameters"], 1),
              round(r["heldout_nll"], 4), round(r["heldout_nll_stderr"], 4), round(r["gen_ppl_16"], 1),
              round(r["gen_ppl_64"], 1), round(r["entropy_64"], 3), round(r["train_tokens_per_second"]),
              f"{r['sample_seconds']:.2f} / {r['sample_seconds_no_cache']:.2f}" if "sample_seconds_no_cache" in r
              else f"{r['sample_seconds']:.2f}"] for r in rows]
    print(markdown_table(header, table))
    print(f"data: gen-PPL {reference.gen_ppl:.1f}, entropy {reference.entropy:.3f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
