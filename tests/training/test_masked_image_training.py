"""MaskGIT training objective, the exact digits VQ decoder, and the embedded digits text-to-image default."""

import math

import pytest
import torch
import torch.nn.functional as F

from hf_dlm.evaluation.digits import digits_vqvae, load_digits_task, pixels_to_levels
from hf_dlm.recipes.digits import (build_digits_pipeline, caption_tokenizer, evaluate_digits_pipeline,
                                     save_digit_grid, train_digits_pipeline)
from hf_dlm.training import MaskedImageTrainer, MaskedImageTrainingArguments, TextToImageModules
from hf_dlm.training.masked_image import mask_image_tokens
from hf_dlm import MaskedImageTransformer


def test_vq_decoder_maps_the_17_levels_exactly():
    vq = digits_vqvae()
    _, held = load_digits_task()
    ids = held.images[:40].view(40, 8, 8)
    with torch.no_grad():
        pixels = vq.decode(ids, force_not_quantize=True, shape=(40, 8, 8, 1)).sample.clip(0, 1)
    assert torch.equal(pixels_to_levels(pixels).view(40, 64), held.images[:40])
    assert (pixels * 16 - ids[:, None].float()).abs().max() < 1e-5


def test_mask_image_tokens_follows_the_ratio_and_masks_at_least_one():
    tokens = torch.zeros(2000, 64, dtype=torch.long)
    noisy, masked = mask_image_tokens(tokens, 17, "linear", torch.Generator().manual_seed(0))
    assert (masked.sum(1) >= 1).all() and (noisy[masked] == 17).all() and (noisy[~masked] == 0).all()
    # linear schedule: E[gamma(r)] = 1/2 for r ~ U(0, 1)
    assert masked.float().mean().item() == pytest.approx(0.5, abs=0.02)


def test_trainer_loss_equals_hand_computed_loss(tmp_path):
    torch.manual_seed(0)
    transformer = MaskedImageTransformer(codebook_size=17, sample_size=8, hidden_size=32, num_layers=1,
                                         num_attention_heads=2, num_classes=10)
    args = MaskedImageTrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, label_smoothing=0.1,
                                        condition_dropout=0.0)
    trainer = MaskedImageTrainer(model=TextToImageModules(transformer), args=args)
    train, _ = load_digits_task()
    batch = {"image_tokens": train.images[:4], "class_labels": train.labels[:4]}
    torch.manual_seed(5)
    got = trainer.compute_loss(trainer.model, batch)
    torch.manual_seed(5)
    noisy, masked = mask_image_tokens(train.images[:4], 17, "cosine")
    torch.rand(4)  # the condition-dropout draw
    logits = transformer(noisy.view(4, 8, 8), class_labels=train.labels[:4]).sample.flatten(2).transpose(1, 2)
    log_p = F.log_softmax(logits[masked], -1)
    target = train.images[:4][masked]
    by_hand = -(0.9 * log_p.gather(1, target[:, None])[:, 0] + 0.1 * log_p.mean(-1)).mean()
    assert got.item() == pytest.approx(by_hand.item(), rel=1e-5)


def test_caption_tokenizer_appends_eos_and_pads():
    tok = caption_tokenizer()
    ids = tok("a handwritten seven", padding="max_length")["input_ids"]
    assert len(ids) == 10 and ids[3] == tok.eos_token_id and ids[4:] == [tok.pad_token_id] * 6
    assert tok.unk_token_id not in tok("the number six, written by hand")["input_ids"]


def test_digits_default_trains_and_evaluates(tmp_path):
    pipe = build_digits_pipeline(hidden_size=32, num_layers=1, text_hidden_size=32)
    info = train_digits_pipeline(pipe, max_steps=8, batch_size=16, show_progress=False)
    assert info["steps"] == 8 and all(math.isfinite(x) for x in info["losses"])
    results = evaluate_digits_pipeline(pipe, steps=(1, 2), per_class=2)
    assert set(results) == {1, 2} and 0 <= results[2]["class_consistency"] <= 1
    path = save_digit_grid(pipe, tmp_path / "grid.png", num_inference_steps=2, rows=1, scale=2)
    from PIL import Image

    grid = Image.open(path)  # ten labelled 16-pixel columns with gutters: wider than the bare 160 x 16 strip
    assert grid.width > 160 and grid.height > 16
