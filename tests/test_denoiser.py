"""The denoiser contract and its conditioning half (hf_dlm.denoiser): one way to call text and image denoisers,
under conditions and classifier-free guidance, with tiny models."""

import ast
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from tests.utils.models import tiny_dream_config, tiny_llada_config
from peft import LoraConfig, get_peft_model
from torch import nn

import hf_dlm.denoiser
from hf_dlm import DreamModel, LLaDAModelLM, MaskedImageTransformer
from hf_dlm.denoiser import (DenoiserConditions, MaskSchedule, build_conditions, conditional_denoise, denoise,
                             denoiser_kind, fixed_length, get_mask_token_id, guided_denoise, logit_width,
                             mask_ratio_input, predicts_next_token, shift_logits_to_tokens, special_token_ids,
                             token_vocab_size)
from hf_dlm.schedulers import MaskGITScheduler

MASK = 95


def _llada() -> LLaDAModelLM:
    torch.manual_seed(0)
    return LLaDAModelLM(tiny_llada_config(n_layers=1, d_model=32, n_heads=2, n_kv_heads=2)).eval()


def _dream() -> DreamModel:
    torch.manual_seed(0)
    return DreamModel(tiny_dream_config(num_hidden_layers=1, hidden_size=32, num_attention_heads=2,
                                        num_key_value_heads=2)).eval()


def _image(**kwargs) -> MaskedImageTransformer:
    torch.manual_seed(0)
    return MaskedImageTransformer(codebook_size=9, sample_size=4, hidden_size=32, num_layers=1, num_attention_heads=2,
                                  **kwargs).eval()


class TinyTextEncoder(nn.Module):
    """CLIP-like: ``text_embeds`` (pooled) and hidden states; the penultimate one is what aMUSEd reads."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.embed, self.layer = nn.Embedding(20, width), nn.Linear(width, width)

    def forward(self, ids, output_hidden_states=True, return_dict=True):
        first = self.embed(ids)
        second = self.layer(first)
        return SimpleNamespace(text_embeds=second.mean(1), hidden_states=(first, second, self.layer(second)))


def _text_image() -> MaskedImageTransformer:
    return _image(pooled_projection_dim=8, cross_attention_dim=8)


# ------------------------------------------------------------------ what a denoiser is
def test_kinds_widths_and_mask_ids_are_answered_by_the_contract():
    llada, dream, image = _llada(), _dream(), _image(num_classes=3)
    assert denoiser_kind(llada) == denoiser_kind(dream) == "text" and denoiser_kind(image) == "image"
    assert not predicts_next_token(llada) and predicts_next_token(dream) and not predicts_next_token(image)
    assert get_mask_token_id(llada) == MASK and get_mask_token_id(image) == 9
    assert logit_width(llada) == 100 and token_vocab_size(llada) == 96  # padded output rows vs real vocabulary
    assert logit_width(image) == token_vocab_size(image) == 9
    assert fixed_length(llada) is None and fixed_length(image) == 16
    assert special_token_ids(llada) == [94, 92, 93] and special_token_ids(image) == []
    # through a PEFT wrapper, and for a foreign image model that only has the config keys (aMUSEd's UVit2DModel)
    wrapped = get_peft_model(_image(num_classes=3), LoraConfig(r=2, target_modules=["proj_out"]))
    assert denoiser_kind(wrapped) == "image" and get_mask_token_id(wrapped) == 9
    foreign = nn.Linear(2, 2)
    foreign.config = SimpleNamespace(codebook_size=8, sample_size=4)
    assert denoiser_kind(foreign) == "image"


def test_text_denoise_aligns_dream_logits_and_passes_llada_through():
    ids = torch.randint(0, 90, (2, 7))
    llada, dream = _llada(), _dream()
    torch.testing.assert_close(denoise(llada, ids), llada(input_ids=ids).logits, rtol=0, atol=0)
    raw = dream(input_ids=ids).logits
    aligned = denoise(dream, ids)
    torch.testing.assert_close(aligned[:, 1:], raw[:, :-1], rtol=0, atol=0)  # position i predicts token i
    torch.testing.assert_close(aligned[:, :1], raw[:, :1], rtol=0, atol=0)
    torch.testing.assert_close(aligned, shift_logits_to_tokens(raw), rtol=0, atol=0)


def test_image_denoise_takes_flat_or_grid_ids_and_returns_position_major_logits():
    model = _image(num_classes=3)
    grid = torch.randint(0, 10, (2, 4, 4))
    labels = torch.tensor([0, 2])
    expected = model(grid, class_labels=labels).sample.flatten(2).transpose(1, 2)  # (batch, 16, 9)
    torch.testing.assert_close(denoise(model, grid, class_labels=labels), expected, rtol=0, atol=0)
    torch.testing.assert_close(denoise(model, grid.view(2, 16), class_labels=labels), expected, rtol=0, atol=0)
    assert denoise(model, grid, torch.ones(2, 16), class_labels=labels).shape == (2, 16, 9)
    with pytest.raises(ValueError, match="no padding"):
        denoise(model, grid, torch.zeros(2, 16), class_labels=labels)


# ------------------------------------------------------------------ building conditions
def test_conditions_for_a_text_prompt():
    prompt = torch.full((3, 2), 92)
    conditions = build_conditions(_llada(), prompt_ids=prompt, attention_mask=torch.ones(3, 2), generation_length=5)
    assert conditions.batch_size == 3 and conditions.generated_length == 5 and conditions.prompt_length == 2
    assert conditions.attention_mask.shape == (3, 7) and conditions.null is None and conditions.model_kwargs() == {}
    with pytest.raises(ValueError, match="prompt_ids"):
        build_conditions(_llada(), class_labels=torch.tensor([1]), generation_length=5)
    with pytest.raises(ValueError, match="generation_length"):
        build_conditions(_llada(), prompt_ids=prompt)


def test_conditions_for_class_labels_with_their_null_and_dropout():
    model = _image(num_classes=3)
    conditions = build_conditions(model, class_labels=torch.tensor([0, 1, 2]))
    assert conditions.generated_length == 16 and conditions.class_labels.tolist() == [0, 1, 2]
    assert conditions.null.class_labels.tolist() == [3, 3, 3]  # the null class is `num_classes`
    dropped = build_conditions(model, class_labels=torch.tensor([0, 1, 2]), drop=torch.tensor([True, False, True]),
                               with_null=False)
    assert dropped.class_labels.tolist() == [3, 1, 3] and dropped.null is None
    with pytest.raises(ValueError, match="no null class"):
        build_conditions(_text_image(), class_labels=torch.tensor([0]))
    with pytest.raises(ValueError, match="`class_labels` or on `caption_ids`"):
        build_conditions(model)


def test_conditions_for_captions_through_a_text_encoder():
    encoder, model = TinyTextEncoder(), _text_image()
    captions, null_caption = torch.tensor([[1, 2, 3], [4, 5, 6]]), torch.tensor([[7, 0, 0]])
    conditions = build_conditions(model, caption_ids=captions, text_encoder=encoder, null_caption_ids=null_caption)
    out, null_out = encoder(captions), encoder(null_caption.expand(2, -1))
    torch.testing.assert_close(conditions.pooled_text_emb, out.text_embeds)
    torch.testing.assert_close(conditions.encoder_hidden_states, out.hidden_states[-2])  # the penultimate layer
    torch.testing.assert_close(conditions.null.pooled_text_emb, null_out.text_embeds)
    torch.testing.assert_close(conditions.null.encoder_hidden_states, null_out.hidden_states[-2])
    dropped = build_conditions(model, caption_ids=captions, text_encoder=encoder, null_caption_ids=null_caption,
                               drop=torch.tensor([True, False]), with_null=False)
    torch.testing.assert_close(dropped.pooled_text_emb[0], null_out.text_embeds[0])
    torch.testing.assert_close(dropped.pooled_text_emb[1], out.text_embeds[1])
    with pytest.raises(ValueError, match="text_encoder"):
        build_conditions(model, caption_ids=captions)
    with pytest.raises(ValueError, match="null_caption_ids"):
        build_conditions(model, caption_ids=captions, text_encoder=encoder)


def test_mask_ratio_inputs_shared_inputs_and_repeat():
    plain, reads_ratio = _image(num_classes=3), _image(num_classes=3, use_mask_ratio=True)
    ids = torch.tensor([[9] * 4 + [0] * 12, [9] * 16])
    assert mask_ratio_input(plain, ids) == {}
    torch.testing.assert_close(mask_ratio_input(reads_ratio, ids)["mask_ratio"], torch.tensor([0.25, 1.0]))
    explicit = build_conditions(reads_ratio, class_labels=torch.tensor([0, 1]), mask_ratio=torch.tensor([0.5, 0.5]))
    assert mask_ratio_input(reads_ratio, ids, explicit)["mask_ratio"].tolist() == [0.5, 0.5]
    assert explicit.null.mask_ratio.tolist() == [0.5, 0.5]  # shared by the null pass
    micro = build_conditions(plain, class_labels=torch.tensor([0, 1])).shared(micro_conds=torch.ones(2, 5))
    assert micro.micro_conds.shape == micro.null.micro_conds.shape == (2, 5)
    tiled = micro.repeat(3)
    assert tiled.batch_size == 6 and tiled.class_labels.tolist() == [0, 1] * 3 and tiled.null.batch_size == 6
    # the mask ratio the model reads changes its logits: the contract passes it
    labels = torch.tensor([0, 1])
    by_ids = conditional_denoise(reads_ratio, ids, build_conditions(reads_ratio, class_labels=labels))
    by_hand = denoise(reads_ratio, ids, class_labels=labels, mask_ratio=torch.tensor([0.25, 1.0]))
    torch.testing.assert_close(by_ids, by_hand, rtol=0, atol=0)


# ------------------------------------------------------------------ calling under conditions, with guidance
@pytest.mark.parametrize("batched", [True, False])
def test_image_guidance_is_uncond_plus_scale_times_the_difference(batched):
    model, w = _image(num_classes=3), 2.5
    ids = torch.randint(0, 10, (2, 16))
    conditions = build_conditions(model, class_labels=torch.tensor([0, 2]))
    cond = denoise(model, ids, class_labels=torch.tensor([0, 2]))
    uncond = denoise(model, ids, class_labels=torch.tensor([3, 3]))
    guided = conditional_denoise(model, ids, conditions, guidance_scale=w, batched=batched)
    torch.testing.assert_close(guided, uncond + w * (cond - uncond))
    torch.testing.assert_close(conditional_denoise(model, ids, conditions), cond, rtol=0, atol=0)


def test_caption_guidance_uses_the_null_caption():
    encoder, model, w = TinyTextEncoder(), _text_image(), 3.0
    ids = torch.randint(0, 10, (2, 4, 4))
    conditions = build_conditions(model, caption_ids=torch.tensor([[1, 2], [3, 4]]), text_encoder=encoder,
                                  null_caption_ids=torch.tensor([[0, 0]]))
    cond = denoise(model, ids, **conditions.model_kwargs())
    uncond = denoise(model, ids, **conditions.null.model_kwargs())
    torch.testing.assert_close(conditional_denoise(model, ids, conditions, w), uncond + w * (cond - uncond))


@pytest.mark.parametrize("make", [_llada, _dream])
@pytest.mark.parametrize("batched", [True, False])
def test_text_guidance_masks_the_prompt_and_equals_llada_cfg(make, batched):
    model, w = make(), 2.0
    prompt = torch.randint(0, 90, (2, 3))
    ids = torch.cat([prompt, torch.full((2, 4), MASK)], dim=1)
    conditions = build_conditions(model, prompt_ids=prompt, attention_mask=torch.ones(2, 3), generation_length=4)
    cond = denoise(model, ids, conditions.attention_mask)
    uncond = denoise(model, torch.cat([torch.full((2, 3), MASK), ids[:, 3:]], dim=1), conditions.attention_mask)
    guided = conditional_denoise(model, ids, conditions, guidance_scale=w, batched=batched)
    torch.testing.assert_close(guided, uncond + w * (cond - uncond))
    prompt_index = torch.zeros_like(ids, dtype=torch.bool)
    prompt_index[:, :3] = True  # LLaDA's cfg_scale is w − 1
    torch.testing.assert_close(guided, guided_denoise(model, ids, conditions.attention_mask, prompt_index, w - 1, MASK))


def test_guidance_without_a_null_or_a_prompt_is_refused():
    with pytest.raises(ValueError, match="null condition"):
        conditional_denoise(_image(num_classes=3), torch.zeros(1, 16, dtype=torch.long), DenoiserConditions(1, 16),
                            guidance_scale=2.0)


# ------------------------------------------------------------------ the noise schedule and the corruption
def test_one_noise_schedule_for_trainers_and_samplers():
    r = torch.tensor([0.0, 0.5, 1.0])
    assert MaskSchedule("uniform") == MaskSchedule("linear")  # Di[M]O's spelling of the linear schedule
    torch.testing.assert_close(MaskSchedule("linear")(r), 1 - r)
    torch.testing.assert_close(MaskSchedule("cosine")(r), torch.cos(r * torch.pi / 2))
    ratios = MaskSchedule("arccos").draw(64, generator=torch.Generator().manual_seed(0))
    assert ratios.shape == (64, 1) and bool(((ratios >= 0) & (ratios <= 1)).all())
    assert MaskGITScheduler(mask_token_id=9, masking_schedule="uniform").schedule == MaskSchedule("linear")
    with pytest.raises(ValueError, match="`masking_schedule` must be one of"):
        MaskSchedule("quadratic")


def test_training_corruption_keeps_the_prompt_and_masks_at_least_one():
    scheduler = MaskGITScheduler(mask_token_id=9, masking_schedule="arccos")
    x0 = torch.randint(0, 9, (32, 10))
    positions = torch.zeros_like(x0, dtype=torch.bool)
    positions[:, 4:] = True
    noisy, masked, ratio = scheduler.add_noise(x0, positions=positions, return_mask=True,
                                               generator=torch.Generator().manual_seed(0))
    assert ratio.shape == (32,) and torch.equal(noisy, x0.masked_fill(masked, 9))
    assert not masked[:, :4].any() and bool(masked.any(1).all())


# ------------------------------------------------------------------ the bottom layer
def test_the_denoiser_package_imports_nothing_else_of_hf_dlm():
    for path in Path(hf_dlm.denoiser.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level <= 1 and not (node.module or "").startswith("hf_dlm"), (path.name, node.module)
            elif isinstance(node, ast.Import):
                assert not any(alias.name.startswith("hf_dlm") for alias in node.names), path.name
