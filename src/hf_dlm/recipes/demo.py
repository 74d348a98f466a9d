"""The `hf-dlm demo` recipe: train a tiny LLaDA-architecture model on the oracle language, save it, reload it
through the Auto classes and the text-generation pipeline, and score its samples exactly."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline
from transformers.utils import logging

from .._io import save_atomically
from ..evaluation.oracle import OracleLanguage
from ..generation import MaskedDiffusionGenerationConfig
from ..models import LLaDAConfig, LLaDAModelLM
from ..quantization import QuantDLLMConfig, QuantDLLMQuantizer, quantization_report
from ..training import MaskedDiffusionTrainer, MaskedDiffusionTrainingArguments, TokenIdsDataset
from ..training.callbacks import TimeBudget
from .digits import build_digits_pipeline, evaluate_digits_pipeline, save_digit_grid, train_digits_pipeline

logger = logging.get_logger(__name__)

SEQ_LEN, PROMPT_LEN = 32, 8


def build_model(tokenizer, hidden: int = 128, layers: int = 4) -> LLaDAModelLM:
    config = LLaDAConfig(
        vocab_size=len(tokenizer), embedding_size=len(tokenizer), d_model=hidden, n_layers=layers, n_heads=4,
        mlp_hidden_size=3 * hidden, max_sequence_length=64, rope_theta=10000.0,
        mask_token_id=tokenizer.mask_token_id, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
    )
    model = LLaDAModelLM(config)
    model.generation_config = MaskedDiffusionGenerationConfig(
        max_new_tokens=SEQ_LEN - PROMPT_LEN, steps=SEQ_LEN - PROMPT_LEN, block_length=8,
        suppress_tokens=list(tokenizer.all_special_ids), stop_at_eos=False, do_sample=True, temperature=1.0,
    )
    return model


def run_demo(output_dir: str = "outputs/demo", max_steps: int = 600, max_seconds: float = 150.0,
             batch_size: int = 128, seed: int = 0, report: Callable[[str], None] = logger.info) -> dict[str, float]:
    """Train, save, reload, generate, score. Returns the measured figures and sends a human-readable report, line
    by line, to ``report`` (the ``hf-dlm demo`` command passes ``print``)."""
    torch.manual_seed(seed)
    oracle = OracleLanguage(seed=seed)
    tokenizer = oracle.tokenizer()
    train_ids = oracle.sample(40_000, SEQ_LEN, seed=seed + 1)
    held_out = oracle.sample(256, SEQ_LEN, seed=seed + 2)
    model = build_model(tokenizer)
    report(f"oracle language: {oracle.num_states} states, {oracle.num_words} words; "
          f"entropy rate {oracle.entropy_rate().value:.3f} nats/word")
    report(f"model: LLaDA architecture, {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters")

    with tempfile.TemporaryDirectory() as scratch:
        args = MaskedDiffusionTrainingArguments(
            output_dir=scratch, per_device_train_batch_size=batch_size, learning_rate=1e-3, weight_decay=0.01,
            max_steps=max_steps, warmup_steps=50, lr_scheduler_type="cosine", logging_steps=100,
            save_strategy="no", report_to=[], use_cpu=True, seed=seed, dataloader_num_workers=0,
            disable_tqdm=False,
        )
        trainer = MaskedDiffusionTrainer(model=model, args=args, train_dataset=TokenIdsDataset(train_ids),
                                         callbacks=[TimeBudget(max_seconds)])
        start = time.monotonic()
        trainer.train()
        train_seconds = time.monotonic() - start
    losses = [float(h["loss"]) for h in trainer.state.log_history if "loss" in h] or [float("nan")]

    out = Path(output_dir)
    save_atomically(out, model, tokenizer)
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    reloaded_tokenizer = AutoTokenizer.from_pretrained(out)
    generator = pipeline("text-generation", model=reloaded, tokenizer=reloaded_tokenizer)

    prompts = held_out[:, :PROMPT_LEN]
    data_nll = _continuation_nll(oracle, held_out)
    report(f"\ntrained {trainer.state.global_step} steps in {train_seconds:.0f} s; "
          f"MDM loss {losses[0]:.2f} -> {losses[-1]:.2f} (ELBO bound, nats/word)")
    report(f"saved to {out} and reloaded as {type(reloaded).__name__} via AutoModelForCausalLM\n")
    report("pipeline('text-generation') samples (prompt | generated), exact oracle NLL per generated word:")
    for row in range(3):
        prompt_text = oracle.decode(prompts[row])[0]
        text = generator(prompt_text, return_full_text=False)[0]["generated_text"].strip()
        ids = torch.tensor(reloaded_tokenizer(prompt_text + " " + text)["input_ids"])
        nll = float(_continuation_nll(oracle, ids.unsqueeze(0))[0]) if len(ids) == SEQ_LEN else float("nan")
        report(f"  {prompt_text} | {text}\n      model NLL {nll:.2f}   data NLL for this prompt {data_nll[row]:.2f}")

    figures = {"train_steps": trainer.state.global_step, "train_seconds": train_seconds,
               "data_nll_per_word": float(data_nll.mean())}
    report(f"\n{len(prompts)} held-out prompts; exact oracle NLL per generated word (lower is better) beside the mean "
          "per-sample unigram entropy (diversity: repetitive text has low NLL and low entropy):")
    report(f"  {'':36s} {'NLL':>6s} {'entropy':>8s}")
    report(f"  {'data (held-out continuations)':36s} {figures['data_nll_per_word']:6.3f} "
          f"{_unigram_entropy(held_out[:, PROMPT_LEN:]):8.3f}")
    torch.manual_seed(seed)
    for steps in (3, 6, 12, 24):
        sequences = reloaded.generate(prompts, steps=steps)
        nll = float(_continuation_nll(oracle, sequences).mean())
        figures[f"model_nll_steps{steps}"] = nll
        entropy = _unigram_entropy(sequences[:, PROMPT_LEN:])
        report(f"  {f'model, {steps} steps, blocks of 8':36s} {nll:6.3f} {entropy:8.3f}")
    figures.update(_quantize_demo(out, train_ids[:128], prompts, oracle, seed, report))
    return figures


def _quantize_demo(model_dir: Path, calibration: torch.LongTensor, prompts: torch.LongTensor,
                   oracle: OracleLanguage, seed: int, report: Callable[[str], None]) -> dict[str, float]:
    """Quant-dLLM 2-bit of the trained model: quantize, save, reload by path, generate, score."""
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    config = QuantDLLMConfig(block_size=32, abmp_fraction=0.125, calibration_seq_len=SEQ_LEN)
    start = time.monotonic()
    QuantDLLMQuantizer(config).quantize_model(model, calibration_data=calibration, show_progress=False)
    seconds = time.monotonic() - start
    target = Path(str(model_dir) + "-2bit")
    save_atomically(target, model)
    quantized = AutoModelForCausalLM.from_pretrained(target)
    stats = quantization_report(quantized)
    torch.manual_seed(seed)
    nll = float(_continuation_nll(oracle, quantized.generate(prompts, steps=12)).mean())
    report(f"\nQuant-dLLM 2-bit (MCS + DAQ + ABMP) in {seconds:.1f} s, saved to {target} and reloaded: "
           f"{stats['sign_bits_per_weight']:.2f} sign bits/weight ({stats['bits_per_weight']:.2f} with fp16 scales) "
           f"on {stats['quantized_weights'] / 1e6:.2f} M weights")
    report(f"  {'2-bit model, 12 steps, blocks of 8':36s} {nll:6.3f}")
    return {"quantized_nll_steps12": nll, "quantized_bits_per_weight": stats["bits_per_weight"]}


def _unigram_entropy(sequences: torch.LongTensor) -> float:
    """Mean over sequences of the entropy (nats) of each sequence's own word histogram."""
    values = []
    for row in sequences:
        p = torch.bincount(row).double()
        p = p[p > 0] / len(row)
        values.append(float(-(p * p.log()).sum()))
    return sum(values) / len(values)


def _continuation_nll(oracle: OracleLanguage, sequences: torch.LongTensor) -> torch.Tensor:
    """Exact −log p(continuation | prompt) / len(continuation) under the oracle, per sequence."""
    cond = oracle.conditional_log_prob(sequences)
    return -cond[:, PROMPT_LEN:].mean(dim=1)


def run_image_demo(output_dir: str = "outputs/demo-digits", max_steps: int = 650, seed: int = 0,
                   report: Callable[[str], None] = logger.info) -> dict[str, float]:
    """Train the digits text-to-image default (MaskGIT objective), save it, reload it through
    ``transformers.pipeline("text-to-image")``, score it with the digits metrics and save a grid PNG."""
    pipe = build_digits_pipeline(seed=seed)
    report(f"\ndigits text-to-image: MaskedImageTransformer "
           f"{sum(p.numel() for p in pipe.transformer.parameters()) / 1e6:.2f} M + CLIP text encoder "
           f"{sum(p.numel() for p in pipe.text_encoder.parameters()) / 1e6:.2f} M parameters, trained jointly")
    info = train_digits_pipeline(pipe, max_steps=max_steps, seed=seed)
    out = save_atomically(output_dir, pipe)
    t2i = pipeline("text-to-image", model=str(out))
    image = t2i("a handwritten seven", num_inference_steps=16, guidance_scale=1.0,
                generator=torch.Generator().manual_seed(seed))
    grid = save_digit_grid(t2i.model, Path(output_dir).parent / "digits_grid.png", guidance_scale=1.0, seed=seed)
    report(f"trained {info['steps']} steps in {info['seconds']:.0f} s; saved to {out}; "
           f"pipeline('text-to-image') returned a {image.size[0]}x{image.size[1]} {type(image).__name__}")
    metrics = evaluate_digits_pipeline(t2i.model, steps=(1, 4, 16), per_class=10, guidance_scale=1.0, seed=seed)
    report("class consistency / FD-digits (held-out split), no guidance:")
    for steps, m in metrics.items():
        report(f"  {steps:2d} steps: {m['class_consistency']:.2f} / {m['fd_digits']:.1f}")
    report(f"image grid of 'zero' ... 'nine' (4 samples each, 16 steps): {grid}")
    return {"image_steps": info["steps"], "image_seconds": info["seconds"],
            **{f"class_consistency_steps{s}": m["class_consistency"] for s, m in metrics.items()}}
