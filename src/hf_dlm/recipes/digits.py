"""The embedded text-to-image default: a masked image generator for the digits task.

Components: ``digits_vqvae()`` (exact 17-level decoder), a small CLIP text encoder trained jointly on the
captions, a ``MaskedImageTransformer`` conditioned on the pooled caption embedding and cross-attending to its hidden
states, and a ``MaskGITScheduler``. Trained with ``MaskedImageTrainer``; scored with the digits metrics.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, PreTrainedTokenizerFast
from transformers.utils import logging

from ..evaluation.digits import (CAPTION_TEMPLATES, DIGIT_WORDS, IMAGE_SIZE, NUM_LEVELS, caption, digits_vqvae,
                                 image_metrics, load_digits_task, pixels_to_levels)
from .reference import cache_root
from ..models.masked_image import MaskedImageTransformer
from ..pipelines import MaskedImagePipeline
from ..pipelines.images import image_grid, save_png
from ..schedulers import MaskGITScheduler
from ..training.callbacks import TimeBudget
from ..training.masked_image import MaskedImageTrainer, MaskedImageTrainingArguments, TextToImageModules

logger = logging.get_logger(__name__)
CAPTION_LENGTH = 10


def caption_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer over the caption vocabulary; appends ``<eos>`` (where CLIP pools) and pads to 10."""
    words = sorted({w.strip(",") for t in CAPTION_TEMPLATES for w in t.split() if "{" not in w}
                   | set(DIGIT_WORDS) | {str(d) for d in range(10)} | {","})
    specials = ["<pad>", "<bos>", "<eos>", "<unk>"]
    vocab = {tok: i for i, tok in enumerate(specials + words)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                     pre_tokenizers.Punctuation()])
    backend.post_processor = processors.TemplateProcessing(single="$A <eos>", special_tokens=[("<eos>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<bos>",
                                   eos_token="<eos>", unk_token="<unk>", model_max_length=CAPTION_LENGTH)


def build_digits_pipeline(hidden_size: int = 128, num_layers: int = 4, text_hidden_size: int = 64,
                          seed: int = 0) -> MaskedImagePipeline:
    """Untrained digits text-to-image pipeline (≈ 1 M parameters with the defaults)."""
    tokenizer = caption_tokenizer()
    torch.manual_seed(seed)
    text_encoder = CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=text_hidden_size, intermediate_size=2 * text_hidden_size,
        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=CAPTION_LENGTH,
        projection_dim=text_hidden_size, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id))
    transformer = MaskedImageTransformer(codebook_size=NUM_LEVELS, sample_size=IMAGE_SIZE, hidden_size=hidden_size,
                                         num_layers=num_layers, num_attention_heads=4,
                                         pooled_projection_dim=text_hidden_size, cross_attention_dim=text_hidden_size)
    return MaskedImagePipeline(vqvae=digits_vqvae(), transformer=transformer,
                               scheduler=MaskGITScheduler(mask_token_id=NUM_LEVELS, masking_schedule="cosine"),
                               tokenizer=tokenizer, text_encoder=text_encoder)


class _CaptionedDigits(torch.utils.data.Dataset):
    """Training images with one of the five captions, cycling over epochs (index i maps to caption i % 5)."""

    def __init__(self, tokenizer, repeats: int = 5) -> None:
        train, _ = load_digits_task()
        self.images, self.labels, self.repeats = train.images, train.labels, repeats
        self.captions = {(label, v): tokenizer(caption(label, v), padding="max_length", truncation=True,
                                               return_tensors="pt")["input_ids"][0]
                         for label in range(10) for v in range(len(CAPTION_TEMPLATES))}

    def __len__(self) -> int:
        return len(self.images) * self.repeats

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        index, variant = i % len(self.images), (i // len(self.images)) % len(CAPTION_TEMPLATES)
        return {"image_tokens": self.images[index],
                "text_input_ids": self.captions[(int(self.labels[index]), variant)]}


def train_digits_pipeline(pipe: MaskedImagePipeline, max_steps: int = 1500, batch_size: int = 64,
                          learning_rate: float = 1e-3, max_seconds: float | None = None, seed: int = 0,
                          show_progress: bool = True) -> dict:
    """Train transformer and text encoder jointly with the MaskGIT objective; returns steps and seconds."""
    modules = TextToImageModules(pipe.transformer, pipe.text_encoder).train()
    null_ids = pipe.tokenizer([""], padding="max_length", truncation=True, return_tensors="pt")["input_ids"]
    with tempfile.TemporaryDirectory() as scratch:
        args = MaskedImageTrainingArguments(
            output_dir=scratch, per_device_train_batch_size=batch_size, learning_rate=learning_rate,
            weight_decay=0.01, max_steps=max_steps, warmup_steps=min(100, max_steps // 10),
            lr_scheduler_type="cosine", logging_steps=max(max_steps // 10, 1), save_strategy="no", report_to=[],
            use_cpu=True, seed=seed, disable_tqdm=not show_progress)
        trainer = MaskedImageTrainer(model=modules, args=args, train_dataset=_CaptionedDigits(pipe.tokenizer),
                                     null_text_input_ids=null_ids, callbacks=[TimeBudget(max_seconds)])
        start = time.monotonic()
        trainer.train()
        seconds = time.monotonic() - start
    modules.eval()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"steps": trainer.state.global_step, "seconds": seconds, "losses": losses}


def load_digits_pipeline(max_steps: int = 900, seed: int = 0, cache_dir: str | Path | None = None,
                         retrain: bool = False) -> MaskedImagePipeline:
    """The trained digits pipeline (the benchmarks' image teacher): trained with [`train_digits_pipeline`] on first
    use (≈ 8 minutes on 2 cores) and then loaded from ``$HF_DLM_CACHE/reference/digits-<steps>-<seed>``."""
    folder = (Path(cache_dir) if cache_dir is not None else cache_root()) / f"digits-{max_steps}-{seed}"
    if (folder / "model_index.json").exists() and not retrain:
        return MaskedImagePipeline.from_pretrained(folder)
    pipe = build_digits_pipeline(seed=seed)
    info = train_digits_pipeline(pipe, max_steps=max_steps, seed=seed)
    logger.info("trained the digits pipeline: %d steps in %.0f s", info["steps"], info["seconds"])
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    pipe.save_pretrained(staging)
    if folder.exists():
        shutil.rmtree(folder)
    staging.replace(folder)
    return MaskedImagePipeline.from_pretrained(folder)


@torch.no_grad()
def generate_digits(pipe: MaskedImagePipeline, labels: list[int], num_inference_steps: int,
                    guidance_scale: float = 3.0, seed: int = 0, variant: int = 0) -> torch.LongTensor:
    """Generate one image per requested label (captions of the given template variant); grey-level tokens."""
    prompts = [caption(label, variant) for label in labels]
    images = pipe(prompt=prompts, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                  generator=torch.Generator().manual_seed(seed), output_type="np").images
    return pixels_to_levels(images).reshape(len(labels), -1)


def evaluate_digits_pipeline(pipe: MaskedImagePipeline, steps: tuple[int, ...] = (1, 4, 16), per_class: int = 30,
                             guidance_scale: float = 3.0, seed: int = 0) -> dict[int, dict]:
    """Class consistency, FD-digits and precision/recall against the held-out split, per step count."""
    pipe.set_progress_bar_config(disable=True)
    labels = [label for label in range(10) for _ in range(per_class)]
    results = {}
    for n in steps:
        tokens = generate_digits(pipe, labels, n, guidance_scale, seed)
        results[n] = image_metrics(tokens, torch.tensor(labels)).__dict__
    return results


def save_digit_grid(pipe: MaskedImagePipeline, path: str | Path, num_inference_steps: int = 16, rows: int = 4,
                    guidance_scale: float = 3.0, seed: int = 0, scale: int = 8, title: str | None = None) -> Path:
    """A labelled PNG grid: one column per digit (captions "a handwritten zero" … "nine", labelled above), ``rows``
    samples each (seeds in the row labels), dark ink on white, each 8×8 image enlarged ``scale``× (nearest
    neighbour), with gutters and a title naming the steps and guidance."""
    pipe.set_progress_bar_config(disable=True)
    labels = [label for _ in range(rows) for label in range(10)]
    tokens = generate_digits(pipe, labels, num_inference_steps, guidance_scale, seed)
    if title is None:
        title = (f"'a handwritten <digit>': {rows} samples per digit, {num_inference_steps} "
                 f"step{'s' if num_inference_steps != 1 else ''}, guidance {guidance_scale:g}")
    return render_digit_grid(tokens, path, rows, scale, title=title)


def render_digit_grid(tokens: torch.Tensor, path: str | Path, rows: int, scale: int = 8,
                      title: str | None = None) -> Path:
    """A labelled PNG of ``rows`` × 10 grey-level images: ``tokens`` (rows·10, 64) in row-major order (column k is
    digit k, labelled above it; row labels "sample 1" …), dark ink on white, each enlarged ``scale``× with gutters
    between cells, written atomically."""
    levels = tokens.reshape(rows * 10, IMAGE_SIZE, IMAGE_SIZE).float() / (NUM_LEVELS - 1)
    pixels = (255 - (levels * 255).round()).byte().numpy()  # ink intensity -> dark ink on white
    grid = image_grid(list(pixels), columns=10, column_labels=list(DIGIT_WORDS),
                      row_labels=[f"sample {r + 1}" for r in range(rows)], title=title,
                      cell_size=IMAGE_SIZE * scale, gutter=max(4, scale), font_size=max(10, min(16, 2 * scale)))
    return save_png(grid, path)


def shows_ink_inverted(pipe: MaskedImagePipeline) -> bool:
    """Whether ``pipe`` decodes with the digits VQ decoder (:func:`digits_vqvae`), whose pixels are ink
    intensities (bright ink on black): such images are shown and saved as dark ink on white. Decided by the decoder's
    layout and its 17 codebook values, which fix what every pixel means; never by looking at the images."""
    vqvae = getattr(pipe, "vqvae", None)
    config = getattr(vqvae, "config", None)
    if config is None or getattr(config, "num_vq_embeddings", None) != NUM_LEVELS \
            or getattr(config, "latent_channels", None) != 1 or tuple(config.block_out_channels) != (32,):
        return False
    reference = digits_vqvae()
    with torch.no_grad():
        ours = vqvae.quantize.embedding.weight.detach().float().cpu()
        theirs = reference.quantize.embedding.weight.float()
        return ours.shape == theirs.shape and bool(torch.allclose(ours, theirs, atol=1e-5))


__all__ = ["build_digits_pipeline", "caption_tokenizer", "evaluate_digits_pipeline", "generate_digits",
           "load_digits_pipeline", "render_digit_grid", "save_digit_grid", "shows_ink_inverted",
           "train_digits_pipeline"]
