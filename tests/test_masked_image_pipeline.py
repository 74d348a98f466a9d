"""MaskedImagePipeline: reproduces AmusedPipeline on tiny random aMUSEd components; class-conditional generation
with our transformer and scheduler; save/load; CFG and step-count invariants; input errors."""

import pytest
import torch
from diffusers import AmusedPipeline, AmusedScheduler, UVit2DModel, VQModel
from transformers import CLIPTextConfig, CLIPTextModelWithProjection

from hf_dlm import MaskedImageTransformer, MaskGITScheduler
from hf_dlm.evaluation.oracle import OracleLanguage
from hf_dlm.pipelines import MaskedImagePipeline


def _vqvae(codebook=8, latent_channels=8):
    torch.manual_seed(0)
    return VQModel(act_fn="silu", block_out_channels=[8], down_block_types=["DownEncoderBlock2D"], in_channels=3,
                   latent_channels=latent_channels, layers_per_block=1, norm_num_groups=8, num_vq_embeddings=codebook,
                   out_channels=3, sample_size=8, up_block_types=["UpDecoderBlock2D"], mid_block_add_attention=False,
                   lookup_from_codebook=True)


def amused_components():
    """Tiny random aMUSEd parts (the shapes of diffusers' own AmusedPipeline tests); an in-process tokenizer."""
    torch.manual_seed(0)
    transformer = UVit2DModel(hidden_size=8, use_bias=False, hidden_dropout=0.0, cond_embed_dim=8,
                              micro_cond_encode_dim=2, micro_cond_embed_dim=10, encoder_hidden_size=8, vocab_size=32,
                              codebook_size=8, in_channels=8, block_out_channels=8, num_res_blocks=1, downsample=True,
                              upsample=True, block_num_heads=1, num_hidden_layers=1, num_attention_heads=1,
                              attention_dropout=0.0, intermediate_size=8, layer_norm_eps=1e-12,
                              ln_elementwise_affine=True)
    torch.manual_seed(0)
    text_encoder = CLIPTextModelWithProjection(CLIPTextConfig(
        bos_token_id=0, eos_token_id=2, hidden_size=8, intermediate_size=37, layer_norm_eps=1e-05,
        num_attention_heads=4, num_hidden_layers=5, pad_token_id=1, vocab_size=1000, projection_dim=8)).eval()
    tokenizer = OracleLanguage().tokenizer(model_max_length=8)
    return dict(transformer=transformer.eval(), scheduler=AmusedScheduler(mask_token_id=31), vqvae=_vqvae().eval(),
                text_encoder=text_encoder, tokenizer=tokenizer)


@pytest.mark.parametrize("steps, guidance", [(1, 1.0), (4, 10.0), (6, 2.0)])
def test_reproduces_amused_pipeline(steps, guidance):
    parts = amused_components()
    ours = MaskedImagePipeline(**parts)
    theirs = AmusedPipeline(**parts)
    for pipe in (ours, theirs):
        pipe.set_progress_bar_config(disable=True)
    kwargs = dict(height=4, width=4, num_inference_steps=steps, guidance_scale=guidance, output_type="latent")
    a = ours(prompt=["the a of", "in the"], generator=torch.Generator().manual_seed(3), **kwargs).images
    b = theirs(prompt=["the a of", "in the"], generator=torch.Generator().manual_seed(3), **kwargs).images
    assert torch.equal(a, b) and not (a == 31).any()
    img_a = ours(prompt="the", generator=torch.Generator().manual_seed(4), height=4, width=4,
                 num_inference_steps=steps, output_type="np").images
    img_b = theirs(prompt="the", generator=torch.Generator().manual_seed(4), height=4, width=4,
                   num_inference_steps=steps, output_type="np").images
    assert (img_a == img_b).all() and img_a.shape == (1, 4, 4, 3)


def class_pipeline():
    torch.manual_seed(0)
    transformer = MaskedImageTransformer(codebook_size=8, sample_size=4, hidden_size=32, num_layers=1,
                                         num_attention_heads=2, num_classes=10).eval()
    pipe = MaskedImagePipeline(vqvae=_vqvae().eval(), transformer=transformer,
                               scheduler=MaskGITScheduler(mask_token_id=8, masking_schedule="arccos"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


class Counter:
    def __init__(self, module):
        self.batches = []
        module.register_forward_pre_hook(lambda m, args, kwargs: self.batches.append(args[0].shape[0]),
                                         with_kwargs=True)


def test_class_conditional_generation_and_call_counts():
    pipe = class_pipeline()
    counter = Counter(pipe.transformer)
    images = pipe(class_labels=[3, 7], num_inference_steps=1, guidance_scale=1.0,
                  generator=torch.Generator().manual_seed(0)).images
    assert len(images) == 2 and images[0].size == (4, 4)
    assert counter.batches == [2]  # one step, no guidance: one conditional pass
    counter.batches.clear()
    pipe(class_labels=[3, 7], num_inference_steps=1, guidance_scale=3.0, output_type="latent")
    assert counter.batches == [4]  # with guidance: the conditional and unconditional passes, batched
    counter.batches.clear()
    out = pipe(class_labels=5, num_inference_steps=5, num_images_per_prompt=3, output_type="latent").images
    assert counter.batches == [6] * 5 and out.shape == (3, 4, 4) and not (out == 8).any()


def test_save_load_gives_identical_images(tmp_path):
    pipe = class_pipeline()
    pipe.save_pretrained(tmp_path)
    loaded = MaskedImagePipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded.scheduler, MaskGITScheduler) and isinstance(loaded.transformer, MaskedImageTransformer)
    a = pipe(class_labels=[1, 2], num_inference_steps=4, generator=torch.Generator().manual_seed(9), output_type="np")
    b = loaded(class_labels=[1, 2], num_inference_steps=4, generator=torch.Generator().manual_seed(9),
               output_type="np")
    assert (a.images == b.images).all()


@pytest.mark.parametrize("kwargs, match", [
    (dict(class_labels=[1], height=4, width=4, num_inference_steps=0), "num_inference_steps"),
    (dict(class_labels=[12]), r"\[0, 9\]"),
    (dict(prompt="a handwritten one"), "class-conditional"),
    (dict(), "class-conditional"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        class_pipeline()(**kwargs)


def test_height_must_match_the_vq_downscale():
    parts = amused_components()
    parts["vqvae"] = VQModel(block_out_channels=[8, 8], down_block_types=["DownEncoderBlock2D"] * 2,
                             up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=8, norm_num_groups=8,
                             num_vq_embeddings=8, layers_per_block=1)
    with pytest.raises(ValueError, match="multiples of the VQ downscale factor 2"):
        MaskedImagePipeline(**parts)(prompt="the", height=5, width=4)
    with pytest.raises(ValueError, match="text-conditional"):
        MaskedImagePipeline(**amused_components())(class_labels=[1], height=4, width=4)


def test_step_end_callback_and_output_types():
    pipe = class_pipeline()
    seen = []

    def callback(p, i, t, tensors):
        seen.append((i, int(t), int((tensors["latents"] == 8).sum())))
        return tensors

    out = pipe(class_labels=[1], num_inference_steps=3, callback_on_step_end=callback, output_type="pt").images
    assert [s[:2] for s in seen] == [(0, 2), (1, 1), (2, 0)] and seen[-1][2] == 0
    assert seen[0][2] > seen[1][2]  # masks only go down
    assert out.shape == (1, 3, 4, 4)
