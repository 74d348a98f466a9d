"""Image tokens in a pretrained LM (seed 003): vocabulary extension, alignment, format, modality-split training,
text replay, constrained decoding, the autoregressive pipeline and the forgetting probe."""

import math

import pytest
import torch
import torch.nn.functional as F
from tests.utils.distributed import run_torchrun
from transformers import GPT2Config, GPT2LMHeadModel, pipeline

from hf_dlm.evaluation.digits import digits_vqvae, load_digits_task
from hf_dlm.evaluation.oracle import OracleLanguage
from hf_dlm.multimodal import (ImageSpanLogitsProcessor, ImageTextCollator, ImageTokenMap, ModalitySplitTrainer,
                               ModalitySplitTrainingArguments, ReplayBatchSampler, add_image_tokens, bag_of_words,
                               clip_loss, contrastive_alignment, forgetting_probe, format_sequence,
                               modality_loss_sums, nearest_text_tokens)
from hf_dlm.multimodal.forgetting import heldout_text_nll
from hf_dlm.pipelines import AutoregressiveImagePipeline

CODEBOOK = 17
GRID = (8, 8)


def tiny_lm(tokenizer, tie: bool = True, hidden: int = 32, seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=hidden, n_layer=1, n_head=2, n_positions=96,
                                      tie_word_embeddings=tie, bos_token_id=tokenizer.bos_token_id,
                                      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))


@pytest.fixture(scope="module")
def oracle():
    return OracleLanguage()


@pytest.fixture()
def extended(oracle):
    tokenizer = oracle.tokenizer()
    model = tiny_lm(tokenizer)
    token_map = add_image_tokens(model, tokenizer, CODEBOOK, image_grid=GRID,
                                 generator=torch.Generator().manual_seed(0))
    return model, tokenizer, token_map


def digit_examples(oracle, count: int = 64) -> list[dict]:
    train, _ = load_digits_task()
    return [{"caption": f"the {oracle.words[30 + int(label)]}", "image_codes": image.view(GRID)}
            for image, label in zip(train.images[:count], train.labels[:count])]


# ---------------------------------------------------------------------------------------------- extension
@pytest.mark.parametrize("tie", [True, False])
def test_extension_keeps_old_rows_and_ties(oracle, tie):
    tokenizer = oracle.tokenizer()
    model = tiny_lm(tokenizer, tie=tie)
    old_in = model.get_input_embeddings().weight.detach().clone()
    old_out = model.get_output_embeddings().weight.detach().clone()
    old_len = len(tokenizer)
    token_map = add_image_tokens(model, tokenizer, CODEBOOK, image_grid=GRID)
    new_in, new_out = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    # six format tokens (the oracle tokenizer already has <pad>, which is reused) plus the codebook
    assert len(tokenizer) == old_len + 6 + CODEBOOK == new_in.shape[0] == model.config.vocab_size
    assert torch.equal(new_in[:old_len], old_in)
    assert torch.equal(new_out[:old_len], old_out)
    assert (new_out.data_ptr() == new_in.data_ptr()) == tie
    assert token_map["pad"] == tokenizer.pad_token_id == oracle.special_token_ids["<pad>"]
    if not tie:  # the untied head's new rows are drawn too, not left at zero
        assert new_out[old_len:].abs().sum() > 0 and not torch.equal(new_out[old_len:], new_in[old_len:])


def test_extension_init_requested(oracle):
    tokenizer = oracle.tokenizer()
    model = tiny_lm(tokenizer, hidden=64)
    add_image_tokens(model, tokenizer, 1024, init_std=0.5, generator=torch.Generator().manual_seed(1))
    rows = model.get_input_embeddings().weight[-1024:]
    assert abs(rows.std().item() - 0.5) < 0.01 and abs(rows.mean().item()) < 0.01
    # default scale: the std of the pretrained rows
    tokenizer = oracle.tokenizer()
    model = tiny_lm(tokenizer, hidden=64)
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(7.0)
    pretrained_std = float(model.get_input_embeddings().weight.std())
    add_image_tokens(model, tokenizer, 1024)
    assert abs(float(model.get_input_embeddings().weight[-1024:].std()) / pretrained_std - 1) < 0.03
    # alignment rows land exactly on the codebook ids
    tokenizer = oracle.tokenizer()
    model = tiny_lm(tokenizer)
    rows = torch.randn(CODEBOOK, 32)
    token_map = add_image_tokens(model, tokenizer, CODEBOOK, image_embeddings=rows)
    ids = token_map.codes_to_ids(torch.arange(CODEBOOK))
    assert torch.equal(model.get_input_embeddings().weight[ids], rows)


def test_token_mapping_round_trips(extended, tmp_path):
    model, tokenizer, token_map = extended
    codes = torch.randint(0, CODEBOOK, (3, 8, 8))
    assert torch.equal(token_map.ids_to_codes(token_map.codes_to_ids(codes)), codes)
    ids = token_map.codes_to_ids(torch.arange(CODEBOOK)).tolist()
    assert tokenizer.convert_ids_to_tokens(ids) == [f"<img{k}>" for k in range(CODEBOOK)]
    assert tokenizer.convert_tokens_to_ids(["<img5>"]) == [token_map.image_token_offset + 5]
    assert ImageTokenMap.from_dict(token_map.to_dict()) == token_map
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    reloaded = GPT2LMHeadModel.from_pretrained(tmp_path)
    assert ImageTokenMap.from_model(reloaded) == token_map
    assert reloaded.get_output_embeddings().weight.data_ptr() == reloaded.get_input_embeddings().weight.data_ptr()
    x = torch.tensor([format_sequence(token_map, [1, 2], codes[0])])
    assert torch.equal(reloaded.eval()(x).logits, model.eval()(x).logits)
    with pytest.raises(ValueError, match="not image tokens"):
        token_map.ids_to_codes(torch.tensor([3]))
    with pytest.raises(ValueError, match="codebook indices"):
        token_map.codes_to_ids(torch.tensor([CODEBOOK]))


def test_sequence_format_matches_the_paper(extended, oracle):
    model, tokenizer, token_map = extended
    example = digit_examples(oracle, 1)[0]
    sequence = format_sequence(token_map, tokenizer(example["caption"], add_special_tokens=False)["input_ids"],
                               example["image_codes"])
    tokens = tokenizer.convert_ids_to_tokens(sequence)
    caption = example["caption"].split()
    assert tokens[:2] == ["<doc>", "<text>"] and tokens[-2:] == ["</image>", "</doc>"]
    assert [t.lstrip("\u2581") for t in tokens[2:2 + len(caption)]] == caption
    assert tokens[2 + len(caption): 4 + len(caption)] == ["</text>", "<image>"]
    body = tokens[4 + len(caption): -2]
    assert body == [f"<img{int(c)}>" for c in example["image_codes"].reshape(-1)]
    # the collator pads with <pad> and never scores padding
    short = {"caption_ids": [], "image_codes": example["image_codes"]}
    batch = ImageTextCollator(tokenizer, token_map)([example, short])
    assert batch["input_ids"][0].tolist() == sequence
    pad = len(caption)
    assert batch["input_ids"][1, -pad:].tolist() == [token_map["pad"]] * pad
    assert batch["labels"][1, -pad:].tolist() == [-100] * pad and batch["attention_mask"][1, -pad:].sum() == 0
    assert torch.equal(batch["labels"][0], batch["input_ids"][0])


def test_collator_tokenizes_pixels_with_a_vq_model(extended):
    from diffusers import VQModel

    _, tokenizer, token_map = extended
    torch.manual_seed(0)
    vq = VQModel(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",),
                 up_block_types=("UpDecoderBlock2D",), block_out_channels=(32,), layers_per_block=1,
                 latent_channels=4, num_vq_embeddings=CODEBOOK, vq_embed_dim=4, norm_num_groups=32, sample_size=8)
    pixels = torch.rand(2, 3, 8, 8)
    expected = vq.quantize(vq.encode(pixels).latents)[2][2].view(2, -1)
    collator = ImageTextCollator(tokenizer, token_map, vq_model=vq)
    batch = collator([{"caption_ids": [5], "pixel_values": p} for p in pixels])
    assert torch.equal(batch["input_ids"][:, 5:5 + 64], token_map.codes_to_ids(expected))
    with pytest.raises(ValueError, match="token grid"):
        collator([{"caption_ids": [5], "pixel_values": torch.rand(3, 16, 16)}])
    with pytest.raises(ValueError, match="codebook"):
        ImageTextCollator(tokenizer, token_map.__class__(32, token_map.image_token_offset, token_map.special_ids,
                                                         GRID), vq_model=vq)
    with pytest.raises(ValueError, match="grid"):
        ImageTextCollator(tokenizer, token_map.with_grid((4, 4)), vq_model=vq)


# ---------------------------------------------------------------------------------------------- alignment
def test_clip_loss_by_hand():
    image = torch.tensor([[3.0, 0.0], [0.0, 2.0]])
    text = torch.tensor([[1.0, 1.0], [0.0, 5.0]])
    scale = torch.tensor(math.log(2.0))
    c = 1 / math.sqrt(2)
    logits = [[2 * c, 0.0], [2 * c, 2.0]]  # 2 · cos(image_i, text_j)

    def ce(row, target):
        return -row[target] + math.log(sum(math.exp(v) for v in row))

    by_rows = (ce(logits[0], 0) + ce(logits[1], 1)) / 2
    by_cols = (ce([logits[0][0], logits[1][0]], 0) + ce([logits[0][1], logits[1][1]], 1)) / 2
    assert float(clip_loss(image, text, scale)) == pytest.approx((by_rows + by_cols) / 2, rel=1e-6)
    table = torch.arange(12.0).view(4, 3)
    ids = torch.tensor([[0, 2, 3]])
    assert torch.equal(bag_of_words(table, ids, torch.tensor([[1, 1, 0]])), (table[0] + table[2]).unsqueeze(0) / 2)


def test_alignment_decreases_and_trains_only_image_rows(extended, oracle):
    model, tokenizer, token_map = extended
    examples = digit_examples(oracle, 256)
    text_table = model.get_input_embeddings().weight[:token_map["doc_start"]].detach().clone()
    before = text_table.clone()
    captions = torch.tensor([tokenizer(e["caption"], add_special_tokens=False)["input_ids"] for e in examples])
    codes = torch.stack([e["image_codes"].reshape(-1) for e in examples])
    result = contrastive_alignment(text_table, captions, codes, CODEBOOK, steps=60, batch_size=64,
                                   learning_rate=3e-2, show_progress=False)
    assert torch.equal(text_table, before)
    assert result.image_embeddings.shape == (CODEBOOK, 32)
    assert sum(result.losses[-10:]) / 10 < sum(result.losses[:10]) / 10 - 0.05
    assert len(result.temperatures) == 60 and all(t >= 0.01 - 1e-9 for t in result.temperatures)
    assert nearest_text_tokens(result.image_embeddings, text_table, k=2).shape == (CODEBOOK, 2)
    # initialising a fresh extension from the alignment changes only the new rows
    fresh_tokenizer = oracle.tokenizer()
    fresh = tiny_lm(fresh_tokenizer)
    old = fresh.get_input_embeddings().weight.detach().clone()
    fresh_map = add_image_tokens(fresh, fresh_tokenizer, CODEBOOK, image_embeddings=result.image_embeddings)
    weight = fresh.get_input_embeddings().weight
    assert torch.equal(weight[: old.shape[0]], old)
    assert torch.equal(weight[fresh_map.codes_to_ids(torch.arange(CODEBOOK))], result.image_embeddings)


# ---------------------------------------------------------------------------------------------- training
def test_modality_loss_sums_by_hand(extended):
    _, _, token_map = extended
    offset = token_map.image_token_offset
    vocab = offset + CODEBOOK
    logits = torch.randn(1, 4, vocab)
    labels = torch.tensor([[token_map["doc_start"], 7, offset + 3, -100]])
    sums = modality_loss_sums(logits, labels, token_map)
    ce = [-(logits[0, i].log_softmax(-1)[labels[0, i + 1]]) for i in range(2)]
    # targets after the shift: 7 (a caption word), offset + 3 (an image token)
    expected = torch.stack([ce[0], torch.tensor(1.0), ce[1], torch.tensor(1.0), ce[0], torch.tensor(1.0)])
    assert torch.allclose(sums, expected, atol=1e-5)
    # targets <doc> (text, but a format token, so not caption) and 7 (caption)
    labels = torch.tensor([[7, token_map["doc_start"], 7, -100]])
    sums = modality_loss_sums(logits, labels, token_map)
    word = -(logits[0, 1].log_softmax(-1)[7])
    assert sums[1] == 2
    assert torch.allclose(sums[4:], torch.stack([word, torch.tensor(1.0)]), atol=1e-5)


@pytest.mark.parametrize("accumulation", [1, 2])
def test_loss_splits_exactly_by_modality(extended, oracle, tmp_path, accumulation):
    model, tokenizer, token_map = extended
    examples = digit_examples(oracle, 64)
    collator = ImageTextCollator(tokenizer, token_map)
    args = ModalitySplitTrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=8, max_steps=3,
                                          logging_steps=1, report_to=[], use_cpu=True, save_strategy="no",
                                          learning_rate=1e-3, seed=0, gradient_accumulation_steps=accumulation)
    trainer = ModalitySplitTrainer(model=model, args=args, train_dataset=examples, data_collator=collator,
                                   image_token_map=token_map, eval_dataset=examples[:16])
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 3
    for h in logs:
        weighted = h["text_loss"] * h["text_tokens"] + h["image_loss"] * h["image_tokens"]
        assert weighted == pytest.approx(h["token_loss"] * (h["text_tokens"] + h["image_tokens"]), rel=1e-12)
        assert h["token_loss"] == pytest.approx(h["loss"], rel=1e-5)
        assert h["image_tokens"] == 8 * accumulation * 64  # the codes; </image> is a format token, counted as text
    metrics = trainer.evaluate()
    assert metrics["eval_token_loss"] == pytest.approx(metrics["eval_loss"], rel=1e-5)
    assert metrics["eval_image_tokens"] == 16 * 64


def test_first_step_split_equals_hand_computation(oracle, tmp_path):
    tokenizer = oracle.tokenizer()
    model = tiny_lm(tokenizer)
    token_map = add_image_tokens(model, tokenizer, CODEBOOK, image_grid=GRID)
    examples = digit_examples(oracle, 8)
    collator = ImageTextCollator(tokenizer, token_map)
    batch = collator(examples)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    targets = batch["labels"][:, 1:]
    ce = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100,
                         reduction="none").view_as(targets)
    image = token_map.is_image_token(targets)
    text = (targets != -100) & ~image
    caption = text & (targets < token_map["doc_start"])  # the oracle's words; the format tokens come after them
    args = ModalitySplitTrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=8, max_steps=1,
                                          logging_steps=1, report_to=[], use_cpu=True, save_strategy="no",
                                          dataloader_drop_last=False)
    trainer = ModalitySplitTrainer(model=model, args=args, train_dataset=examples, data_collator=collator,
                                   image_token_map=token_map)
    trainer.train()
    log = trainer.state.log_history[0]
    assert log["image_loss"] == pytest.approx(float(ce[image].mean()), rel=1e-5)
    assert log["text_loss"] == pytest.approx(float(ce[text].mean()), rel=1e-5)
    assert log["caption_loss"] == pytest.approx(float(ce[caption].mean()), rel=1e-5)
    assert log["text_tokens"] == int(text.sum()) and log["image_tokens"] == 8 * 64


def test_replay_sampler_interleaves_the_requested_fraction():
    sampler = ReplayBatchSampler(num_main=40, num_replay=7, batch_size=4, replay_fraction=0.25, seed=0)
    batches = list(sampler)
    replay = [b for b in batches if min(b) >= 40]
    main = [b for b in batches if max(b) < 40]
    assert len(batches) == len(sampler) == 10 + 3 and len(replay) == round(10 * 0.25 / 0.75) == 3
    assert len(main) + len(replay) == len(batches)
    assert sorted(i for b in main for i in b) == list(range(40))
    assert [sampler.is_replay(i) for i in range(len(sampler))].count(True) == 3
    assert list(sampler) != batches  # a new epoch reshuffles


def test_trainer_mixes_text_only_replay_batches(extended, oracle, tmp_path):
    model, tokenizer, token_map = extended
    examples = digit_examples(oracle, 24)
    replay = [{"input_ids": torch.cat([torch.tensor([tokenizer.bos_token_id]), row])}
              for row in oracle.sample(16, 12, seed=3)]
    args = ModalitySplitTrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=8,
                                          logging_steps=1, report_to=[], use_cpu=True, save_strategy="no",
                                          text_replay_fraction=0.25)
    trainer = ModalitySplitTrainer(model=model, args=args, train_dataset=examples,
                                   data_collator=ImageTextCollator(tokenizer, token_map), image_token_map=token_map,
                                   replay_dataset=replay)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    text_only = [h for h in logs if h["image_tokens"] == 0]
    assert len(text_only) == 2 and all(h["text_tokens"] == 4 * 12 for h in text_only)
    with pytest.raises(ValueError, match="replay_dataset"):
        ModalitySplitTrainer(model=model, args=args, train_dataset=examples, image_token_map=token_map)
    with pytest.raises(ValueError, match="text_replay_fraction"):
        ModalitySplitTrainingArguments(output_dir=str(tmp_path), text_replay_fraction=1.0)


# ---------------------------------------------------------------------------------------------- decoding
def test_span_processor_by_hand(extended):
    _, _, token_map = extended
    start, end, img = token_map["image_start"], token_map["image_end"], token_map.image_token_offset
    processor = ImageSpanLogitsProcessor(token_map, num_image_tokens=2)
    vocab = img + CODEBOOK
    ids = torch.tensor([[5, 6, 7, 8],             # outside a span: untouched
                        [5, 6, 7, start],         # 0 image tokens so far: only image tokens
                        [5, start, img, img + 1],  # 2 so far: only </image>
                        [start, img, img, end]])  # closed: untouched
    scores = processor(ids, torch.zeros(4, vocab))
    image_cols = torch.zeros(vocab, dtype=torch.bool)
    image_cols[img:] = True
    assert torch.isfinite(scores[0]).all() and torch.isfinite(scores[3]).all()
    assert torch.equal(torch.isfinite(scores[1]), image_cols)
    assert torch.isfinite(scores[2]).nonzero().view(-1).tolist() == [end]


@pytest.mark.parametrize("guidance_scale", [1.0, 3.0])
def test_constrained_generation_stays_in_the_codebook_and_closes(extended, guidance_scale):
    model, tokenizer, token_map = extended
    with torch.no_grad():  # make text tokens far likelier than image tokens, so an unconstrained model would stray
        model.get_input_embeddings().weight[:token_map["doc_start"]] *= 40
    prompt = torch.tensor([[token_map["doc_start"], token_map["text_start"], 40, token_map["text_end"],
                            token_map["image_start"]]] * 4)
    kwargs = {}
    if guidance_scale != 1.0:
        negative = prompt[:, [0, 1, 3, 4]]
        kwargs = {"guidance_scale": guidance_scale, "negative_prompt_ids": negative}
    free = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=65, do_sample=True,
                          top_k=0, pad_token_id=token_map["pad"])
    assert not token_map.is_image_token(free[:, 5:]).all()
    out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=65, min_new_tokens=65,
                         do_sample=True, top_k=0, pad_token_id=token_map["pad"],
                         logits_processor=[ImageSpanLogitsProcessor(token_map)], **kwargs)
    assert out.shape[1] == 5 + 65
    assert token_map.is_image_token(out[:, 5:69]).all()
    assert (out[:, 69] == token_map["image_end"]).all()


def test_autoregressive_pipeline_round_trip_and_task(extended, tmp_path):
    model, tokenizer, token_map = extended
    pipe = AutoregressiveImagePipeline(model.eval(), tokenizer, digits_vqvae())
    pipe.set_progress_bar_config(disable=True)
    prompt = ["the " + OracleLanguage().words[31], "a " + OracleLanguage().words[32]]
    codes = pipe(prompt, num_images_per_prompt=2, guidance_scale=2.0, generator=torch.Generator().manual_seed(0),
                 output_type="latent").images
    assert codes.shape == (4, 8, 8) and codes.min() >= 0 and codes.max() < CODEBOOK
    images = pipe(prompt, guidance_scale=2.0, generator=torch.Generator().manual_seed(0), output_type="np").images
    assert images.shape == (2, 8, 8, 3)
    pipe.save_pretrained(tmp_path / "ar")
    reloaded = AutoregressiveImagePipeline.from_pretrained(tmp_path / "ar")
    reloaded.set_progress_bar_config(disable=True)
    again = reloaded(prompt, num_images_per_prompt=2, guidance_scale=2.0, generator=torch.Generator().manual_seed(0),
                     output_type="latent").images
    assert torch.equal(again, codes)
    # prompts of different lengths are left-padded, and a padded row decodes as it would alone
    ids, mask = pipe.encode_prompt(["a", "a " + OracleLanguage().words[40] + " ."])
    assert mask[0].tolist() == [0, 0, 1, 1, 1, 1, 1] and mask[1].all() and ids[0, 0] == token_map["pad"]
    alone, _ = pipe.encode_prompt(["a"])
    with torch.no_grad():
        padded_scores = model.generate(ids, attention_mask=mask, max_new_tokens=2, do_sample=False,
                                       output_scores=True, return_dict_in_generate=True,
                                       pad_token_id=token_map["pad"]).scores
        alone_scores = model.generate(alone, attention_mask=torch.ones_like(alone), max_new_tokens=2,
                                      do_sample=False, output_scores=True, return_dict_in_generate=True,
                                      pad_token_id=token_map["pad"]).scores
    assert all(torch.allclose(p[0], a[0], atol=1e-5) for p, a in zip(padded_scores, alone_scores))
    task = pipeline("text-to-image", model=str(tmp_path / "ar"))
    assert task(prompt[0]).size == (8, 8)
    with pytest.raises(ValueError, match="num_images_per_prompt"):
        pipe(prompt, num_images_per_prompt=0)
    with pytest.raises(ValueError, match="temperature"):
        pipe(prompt, temperature=0.0)


# ---------------------------------------------------------------------------------------------- forgetting
def test_forgetting_probe_matches_the_model_loss(extended, oracle):
    model, tokenizer, token_map = extended
    rows = torch.cat([torch.full((8, 1), tokenizer.bos_token_id), oracle.sample(8, 12, seed=4)], dim=1)
    probe = forgetting_probe(model, tokenizer, rows, [[tokenizer.bos_token_id, 3, 4]], max_new_tokens=5,
                             token_map=token_map)
    with torch.no_grad():
        expected = float(model(input_ids=rows, labels=rows).loss)
    assert probe.text_nll == pytest.approx(expected, rel=1e-5)
    assert heldout_text_nll(model, rows, batch_size=3) == pytest.approx(expected, rel=1e-5)
    greedy = model.generate(torch.tensor([[tokenizer.bos_token_id, 3, 4]]), max_new_tokens=5, do_sample=False,
                            pad_token_id=token_map["pad"])[0, 3:]
    assert probe.completion_ids == [greedy.tolist()]
    assert 0.0 <= probe.non_text_fraction <= 1.0


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_input_raises_clear_errors(oracle, extended):
    tokenizer = oracle.tokenizer()
    model = tiny_lm(tokenizer)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="codebook_size"):
            add_image_tokens(model, tokenizer, bad)
    # a tokenizer that already holds a format token as an ordinary word
    tokenizer.add_tokens(["<image>"])
    with pytest.raises(ValueError, match="already holds"):
        add_image_tokens(model, tokenizer, CODEBOOK)
    # extending twice is refused as well (the tokens exist with their old ids)
    _, extended_tokenizer, _ = extended
    with pytest.raises(ValueError, match="already holds"):
        add_image_tokens(tiny_lm(extended_tokenizer), extended_tokenizer, CODEBOOK)
    # <pad> present, but not as the pad token
    fresh = oracle.tokenizer()
    fresh.pad_token = None
    with pytest.raises(ValueError, match="<pad>"):
        add_image_tokens(tiny_lm(oracle.tokenizer()), fresh, CODEBOOK)
    with pytest.raises(ValueError, match="image_embeddings"):
        add_image_tokens(tiny_lm(oracle.tokenizer()), oracle.tokenizer(), CODEBOOK, image_embeddings=torch.zeros(3, 32))
    _, ext_tokenizer, token_map = extended
    collator = ImageTextCollator(ext_tokenizer, token_map)
    with pytest.raises(ValueError, match="token grid"):
        collator([{"caption_ids": [1], "image_codes": torch.zeros(4, 4, dtype=torch.long)}])
    with pytest.raises(ValueError, match="codebook indices"):
        collator([{"caption_ids": [1], "image_codes": torch.full((8, 8), CODEBOOK)}])
    with pytest.raises(ValueError, match="vq_model"):
        collator([{"caption_ids": [1], "pixel_values": torch.rand(3, 8, 8)}])
    with pytest.raises(ValueError, match="image_grid"):
        ImageTextCollator(ext_tokenizer, ImageTokenMap(CODEBOOK, token_map.image_token_offset, token_map.special_ids))
    with pytest.raises(ValueError, match="codebook_size"):
        contrastive_alignment(torch.zeros(5, 4), torch.zeros(2, 1, dtype=torch.long),
                              torch.zeros(2, 3, dtype=torch.long), 0)


@pytest.mark.distributed
def test_two_process_torchrun_reduces_the_split(tmp_path):
    """Under DDP the logged token counts are summed over both ranks, and both ranks end with the same weights."""
    import json

    run_torchrun("ddp_modality_split.py", tmp_path)
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert reports[0]["world_size"] == 2
    assert reports[0]["param_sum"] == pytest.approx(reports[1]["param_sum"], rel=1e-9)
    logs = reports[0]["logs"]
    assert len(logs) == 4 and reports[1]["logs"] == logs  # both ranks log the reduced values
    # a step gives each rank one batch of 4 (batches are dealt to the ranks in turn): one rank's image batch holds
    # 4 × 64 image tokens, so 512 in a log proves the sum over ranks
    assert {h["image_tokens"] for h in logs} <= {0, 256, 512} and 512 in {h["image_tokens"] for h in logs}
    # the first 8 batches of the replay sampler (48 examples, batch 4, fraction 0.25) hold 2 replay batches
    assert sum(h["image_tokens"] for h in logs) == 6 * 4 * 64
