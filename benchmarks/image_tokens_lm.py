"""Does a pretrained language model help autoregressive text-to-image generation? The digits task, in the tiny
setting of seed 003 ("Pre-trained Language Models Do Not Help Auto-regressive Text-to-Image Generation").

    python benchmarks/image_tokens_lm.py                         # ≈ 35 min on 2 cores; models cached
    python benchmarks/image_tokens_lm.py --pretrain-steps 20 --image-steps 20 --per-class 3 --output itlm_smoke

The "language model" is a GPT-2 pretrained here on the oracle language (its English); captions of the digits are
written in that language ("a <word of the digit>", …). Its vocabulary is extended with the 17 grey-level tokens of
the digits VQ model and the six format tokens, and it is trained on ``<doc> <text> caption </text> <image> 64 codes
</image> </doc>`` sequences. Variants, identical in architecture, data, steps and schedule:

* ``pretrained``: the pretrained LM, new rows drawn at the pretrained rows' scale;
* ``random init``: the same architecture from random initialisation;
* ``contrastive init``: the pretrained LM, image rows from the §3.2 bag-of-words contrastive alignment;
* ``pretrained + replay``: the pretrained LM with 25 % text-only replay batches of its pre-training text.

Measured: training loss on image and text tokens every 25 steps (Figures 3–4), held-out image- and text-token loss
before and after, generated digits (class consistency, FD-digits, precision/recall of 300 samples at guidance 1 and
3) and the forgetting probe (held-out oracle NLL, gen-PPL of unconditional text samples, greedy completions of three
fixed prompts — Table 1) before and after. The masked image pipeline of the image-pipeline issue (trained on the
same images, English captions, about the same parameter count) is the non-autoregressive reference.

Writes benchmarks/results/image_tokens_lm.json, image_tokens_lm.png and image_tokens_lm_samples.png.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

sys.path.insert(0, os.path.dirname(__file__))
import hf_dlm  # noqa: E402,F401
from _common import RESULTS, machine, markdown_table, write_json  # noqa: E402
from hf_dlm._io import save_atomically  # noqa: E402
from hf_dlm.evaluation.digits import NUM_LEVELS, digits_vqvae, image_metrics, load_digits_task  # noqa: E402
from hf_dlm.evaluation.oracle import FUNCTION_WORDS, OracleLanguage  # noqa: E402
from hf_dlm.recipes.reference import cache_root, count_parameters  # noqa: E402
from hf_dlm.evaluation.text_metrics import text_metrics  # noqa: E402
from hf_dlm.multimodal import (ImageTextCollator, ImageTokenMap, ModalitySplitTrainer,  # noqa: E402
                               ModalitySplitTrainingArguments, add_image_tokens, contrastive_alignment,
                               forgetting_probe, nearest_text_tokens)
from hf_dlm.pipelines import AutoregressiveImagePipeline  # noqa: E402
from hf_dlm.recipes.digits import evaluate_digits_pipeline, load_digits_pipeline, render_digit_grid  # noqa: E402

SEQ_LEN = 64  # words per pre-training sequence
GRID = (8, 8)
TEMPLATES = ("a {w}", "the {w} .", "this is a {w}", "it was the {w}", "a {w} and the {w}")
LOSSES = ("text_loss", "image_loss", "caption_loss")
VARIANTS = ("pretrained", "random init", "contrastive init", "pretrained + replay")


# ---------------------------------------------------------------------------------------------- data
def digit_words(oracle: OracleLanguage) -> list[str]:
    """The oracle-language name of each digit: ten content words spread over the vocabulary."""
    content = [w for w in oracle.words if w not in FUNCTION_WORDS]
    return [content[7 * d + 3] for d in range(10)]


def oracle_caption(words: list[str], label: int, variant: int) -> str:
    return TEMPLATES[variant % len(TEMPLATES)].format(w=words[label])


def image_examples(split, words: list[str]) -> list[dict]:
    return [{"caption": oracle_caption(words, int(label), i), "image_codes": image.view(GRID)}
            for i, (image, label) in enumerate(zip(split.images, split.labels))]


def text_rows(oracle: OracleLanguage, tokenizer, count: int, seed: int) -> torch.LongTensor:
    words = oracle.sample(count, SEQ_LEN, seed=seed)
    return torch.cat([torch.full((count, 1), tokenizer.bos_token_id), words], dim=1)


class _Rows(torch.utils.data.Dataset):
    def __init__(self, rows: torch.LongTensor) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.rows[i], "labels": self.rows[i]}


# ---------------------------------------------------------------------------------------------- models
def lm_config(tokenizer, n_inner: int) -> GPT2Config:
    return GPT2Config(vocab_size=len(tokenizer), n_positions=96, n_embd=128, n_layer=4, n_head=4, n_inner=n_inner,
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)


def matched_inner(tokenizer, target: int, extended_vocab: int) -> int:
    """The MLP width whose extended GPT-2 has the parameter count closest to ``target``."""
    def params(n: int) -> int:
        config = lm_config(tokenizer, n)
        config.vocab_size = extended_vocab
        with torch.device("meta"):
            return count_parameters(GPT2LMHeadModel(config))

    return min(range(256, 2049, 32), key=lambda n: abs(params(n) - target))


def train_args(output_dir: str, steps: int, args, **extra) -> dict:
    return dict(output_dir=output_dir, per_device_train_batch_size=args.batch_size, learning_rate=args.lr,
                weight_decay=0.01, max_steps=steps, warmup_steps=min(100, steps // 10), lr_scheduler_type="cosine",
                logging_steps=max(1, min(25, steps // 10)), save_strategy="no", report_to=[], use_cpu=True,
                seed=args.seed, disable_tqdm=True, **extra)


def pretrained_lm(oracle, tokenizer, n_inner: int, args) -> tuple[GPT2LMHeadModel, dict]:
    """GPT-2 pretrained on the oracle language (cached)."""
    key = hashlib.sha1(json.dumps([n_inner, args.pretrain_steps, args.batch_size, args.lr,
                                   args.pretrain_seed]).encode())
    folder = cache_root() / f"image-tokens-lm-pretrained-{key.hexdigest()[:10]}"
    if (folder / "info.json").exists() and not args.retrain:
        return GPT2LMHeadModel.from_pretrained(folder), json.loads((folder / "info.json").read_text())
    torch.manual_seed(args.pretrain_seed)
    model = GPT2LMHeadModel(lm_config(tokenizer, n_inner))
    data = _Rows(text_rows(oracle, tokenizer, args.pretrain_steps * args.batch_size, seed=1))
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch:
        settings = {**train_args(scratch, args.pretrain_steps, args), "seed": args.pretrain_seed}
        Trainer(model=model, args=TrainingArguments(**settings), train_dataset=data).train()
    info = {"train_seconds": time.monotonic() - start, "steps": args.pretrain_steps}
    save_atomically(folder, model, extra_files={"info.json": json.dumps(info)})
    return model.eval(), info


def alignment_rows(model, tokenizer, examples: list[dict], args) -> dict:
    """§3.2: image-token rows aligned to the frozen pretrained text table on the training pairs."""
    table = model.get_input_embeddings().weight[: len(tokenizer)].detach()
    captions = [tokenizer(e["caption"], add_special_tokens=False)["input_ids"] for e in examples]
    width = max(len(c) for c in captions)
    ids = torch.tensor([c + [0] * (width - len(c)) for c in captions])
    mask = torch.tensor([[1] * len(c) + [0] * (width - len(c)) for c in captions])
    codes = torch.stack([e["image_codes"].reshape(-1) for e in examples])
    result = contrastive_alignment(table, ids, codes, NUM_LEVELS, caption_mask=mask, steps=args.align_steps,
                                   batch_size=256, learning_rate=1e-2, seed=args.seed, show_progress=False)
    nearest = nearest_text_tokens(result.image_embeddings, table, k=3)
    return {"rows": result.image_embeddings, "losses": result.losses, "temperatures": result.temperatures,
            "nearest_text_tokens": {f"<img{k}>": tokenizer.convert_ids_to_tokens(nearest[k].tolist())
                                    for k in range(NUM_LEVELS)}}


# ---------------------------------------------------------------------------------------------- evaluation
def text_probe(model, tokenizer, oracle, heldout: torch.LongTensor, token_map, args) -> dict:
    prompts = [heldout[i, :6].tolist() for i in range(3)]
    probe = forgetting_probe(model, tokenizer, heldout, prompts, max_new_tokens=8, token_map=token_map)
    words = oracle.num_words
    suppress = list(range(words, model.get_output_embeddings().weight.shape[0]))
    torch.manual_seed(args.seed)
    bos = torch.full((args.text_samples, 1), tokenizer.bos_token_id)
    with torch.no_grad():
        samples = model.generate(bos, attention_mask=torch.ones_like(bos), do_sample=True, top_k=0,
                                 max_new_tokens=SEQ_LEN, min_new_tokens=SEQ_LEN, suppress_tokens=suppress,
                                 pad_token_id=tokenizer.pad_token_id)[:, 1:]
    metrics = text_metrics(oracle, samples)
    return {**probe.to_dict(), "prompts": [tokenizer.decode(p) for p in prompts], "gen_ppl": metrics.gen_ppl,
            "entropy": metrics.entropy}


def generate_digits(model, tokenizer, words, per_class: int, guidance_scale: float, seed: int) -> torch.LongTensor:
    pipe = AutoregressiveImagePipeline(model.eval(), tokenizer, digits_vqvae())
    pipe.set_progress_bar_config(disable=True)
    labels = [label for label in range(10) for _ in range(per_class)]
    prompts = [oracle_caption(words, label, 0) for label in labels]
    codes = pipe(prompts, guidance_scale=guidance_scale, generator=torch.Generator().manual_seed(seed),
                 output_type="latent").images
    return codes.reshape(len(labels), -1), torch.tensor(labels)


def train_variant(name: str, base: GPT2LMHeadModel, tokenizer_factory, n_inner: int, train_examples,
                  heldout_examples, replay_rows, alignment, args) -> tuple[GPT2LMHeadModel, dict, object]:
    tokenizer = tokenizer_factory()
    if name == "random init":
        torch.manual_seed(args.seed + 1)
        model = GPT2LMHeadModel(lm_config(tokenizer, n_inner))
    else:
        model = copy.deepcopy(base)  # its own config too: the extension writes vocab_size and image_tokens
    rows = alignment["rows"] if name == "contrastive init" else None
    token_map = add_image_tokens(model, tokenizer, NUM_LEVELS, image_grid=GRID, image_embeddings=rows,
                                 generator=torch.Generator().manual_seed(args.seed))
    replay = name.endswith("replay")
    collator = ImageTextCollator(tokenizer, token_map, caption_dropout=0.1)
    eval_collator = ImageTextCollator(tokenizer, token_map)
    with tempfile.TemporaryDirectory() as scratch:
        training = ModalitySplitTrainingArguments(**train_args(scratch, args.image_steps, args),
                                                  text_replay_fraction=0.25 if replay else 0.0)
        trainer = ModalitySplitTrainer(model=model, args=training, train_dataset=train_examples,
                                       data_collator=collator, image_token_map=token_map,
                                       replay_dataset=[{"input_ids": r} for r in replay_rows] if replay else None)
        trainer.data_collator = eval_collator  # held-out losses without caption dropout
        before = trainer.evaluate(heldout_examples)
        trainer.data_collator = collator
        start = time.monotonic()
        trainer.train()
        seconds = time.monotonic() - start
        trainer.data_collator = eval_collator
        after = trainer.evaluate(heldout_examples)
    curves = [{k: h[k] for k in ("step", *LOSSES, "text_tokens", "image_tokens") if k in h}
              for h in trainer.state.log_history if "token_loss" in h and "loss" in h]
    return model.eval(), {"variant": name, "parameters": count_parameters(model), "train_seconds": seconds,
                          "heldout_before": {k: before[f"eval_{k}"] for k in LOSSES},
                          "heldout_after": {k: after[f"eval_{k}"] for k in LOSSES},
                          "curves": curves, "token_map": token_map.to_dict()}, tokenizer


# ---------------------------------------------------------------------------------------------- output
def plot(payload: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for row in payload["variants"]:
        steps = [c["step"] for c in row["curves"] if "image_loss" in c]
        axes[0].plot(steps, [c["image_loss"] for c in row["curves"] if "image_loss" in c], label=row["variant"])
        key = "caption_loss" if any("caption_loss" in c for c in row["curves"]) else "text_loss"
        text = [c for c in row["curves"] if key in c and c.get("image_tokens", 0) > 0]
        label = row["variant"] + (" (with the replayed text)" if "replay" in row["variant"] else "")
        axes[1].plot([c["step"] for c in text], [c[key] for c in text], label=label)
    axes[0].set(xlabel="step", ylabel="training loss on image tokens (nats)", title="image tokens (Figure 3/4)")
    axes[1].set(xlabel="step", ylabel="training loss on caption words (nats)", title="text tokens (Figure 4)",
                yscale="log")
    for ax in axes[:2]:
        ax.legend()
    align = payload["alignment"]
    axes[2].plot(align["losses"], color="C2")
    axes[2].set(xlabel="step", ylabel="contrastive loss", title="§3.2 alignment (Figure 6)")
    twin = axes[2].twinx()
    twin.plot(align["temperatures"], color="C7", ls="--")
    twin.set_ylabel("temperature (dashed)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def masked_reference(masked, parameters: int, args) -> dict:
    """The masked image pipeline (900 steps on the same images, English captions) at 4 and 16 steps."""
    row = {"parameters": parameters, "train_steps": 900}
    for guidance in (1.0, 3.0):
        results = evaluate_digits_pipeline(masked, steps=(4, 16), per_class=args.per_class, seed=args.seed,
                                           guidance_scale=guidance)
        row[f"images_cfg{guidance:g}"] = {str(k): v for k, v in results.items()}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrain-steps", type=int, default=1500)
    parser.add_argument("--image-steps", type=int, default=900, help="the masked reference trained 900 steps")
    parser.add_argument("--align-steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--text-samples", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0, help="seed of the image training, sampling and alignment")
    parser.add_argument("--pretrain-seed", type=int, default=0, help="seed of the language-model pre-training")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--skip-masked", action="store_true")
    parser.add_argument("--only-masked", action="store_true",
                        help="re-evaluate only the masked reference and update the JSON of --output")
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--output", default="image_tokens_lm")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    oracle = OracleLanguage()
    words = digit_words(oracle)
    train_split, heldout_split = load_digits_task()
    train_examples, heldout_examples = image_examples(train_split, words), image_examples(heldout_split, words)
    heldout_text = text_rows(oracle, oracle.tokenizer(), 256, seed=99)
    replay_rows = text_rows(oracle, oracle.tokenizer(), 4096, seed=1)  # a slice of the pre-training text

    masked = load_digits_pipeline()
    masked_params = count_parameters(masked.transformer) + count_parameters(masked.text_encoder)
    if args.only_masked:
        payload = json.loads((RESULTS / f"{args.output}.json").read_text())
        payload["masked_reference"] = masked_reference(masked, masked_params, args)
        write_json(args.output, payload)
        return
    extended_vocab = len(oracle.tokenizer()) + 6 + NUM_LEVELS
    n_inner = matched_inner(oracle.tokenizer(), masked_params, extended_vocab)
    base, pretrain_info = pretrained_lm(oracle, oracle.tokenizer(), n_inner, args)
    payload = {"machine": machine(), "settings": vars(args), "digit_words": words, "templates": TEMPLATES,
               "pretraining": pretrain_info, "n_inner": n_inner}
    payload["text_before"] = text_probe(base, oracle.tokenizer(), oracle, heldout_text, None, args)
    alignment = alignment_rows(base, oracle.tokenizer(), train_examples, args)
    payload["alignment"] = {k: v for k, v in alignment.items() if k != "rows"}

    payload["variants"] = []
    sample_codes = None
    for name in args.variants.split(","):
        model, row, tokenizer = train_variant(name, base, oracle.tokenizer, n_inner, train_examples,
                                              heldout_examples, replay_rows, alignment, args)
        token_map = ImageTokenMap.from_dict(row["token_map"])
        for guidance in (1.0, 3.0):
            codes, labels = generate_digits(model, tokenizer, words, args.per_class, guidance, args.seed)
            row[f"images_cfg{guidance:g}"] = image_metrics(codes, labels).__dict__
            if name == "pretrained" and guidance == 3.0:
                sample_codes = codes
        row["text_after"] = text_probe(model, tokenizer, oracle, heldout_text, token_map, args)
        payload["variants"].append(row)
        print(name, json.dumps({k: row[k] for k in ("heldout_after", "images_cfg1", "images_cfg3")}), flush=True)
        write_json(args.output, payload)

    if not args.skip_masked:
        payload["masked_reference"] = masked_reference(masked, masked_params, args)
    write_json(args.output, payload)
    plot(payload, RESULTS / f"{args.output}.png")
    if sample_codes is not None:
        rows = min(4, args.per_class)  # codes are grouped by class: take the first `rows` of each, row-major
        grid = sample_codes.view(10, args.per_class, -1)[:, :rows].transpose(0, 1).reshape(rows * 10, -1)
        render_digit_grid(grid, RESULTS / f"{args.output}_samples.png", rows)
    header = ["variant", "params", "held-out image loss", "held-out text loss", "class (cfg 3)", "FD (cfg 3)",
              "text NLL after", "gen-PPL after"]
    table = [[r["variant"], r["parameters"], r["heldout_after"]["image_loss"], r["heldout_after"]["text_loss"],
              r["images_cfg3"]["class_consistency"], r["images_cfg3"]["fd_digits"], r["text_after"]["text_nll"],
              r["text_after"]["gen_ppl"]] for r in payload["variants"]]
    print(markdown_table(header, table))


if __name__ == "__main__":
    main()
