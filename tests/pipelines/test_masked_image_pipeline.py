"""MaskedImagePipeline: reproduces AmusedPipeline on tiny random aMUSEd components; class-conditional generation
with our transformer and scheduler; save/load; CFG and step-count invariants; input errors."""

import pytest
import torch
from diffusers import AmusedPipeline, VQModel

from hf_dlm import MaskedImageTransformer, MaskGITScheduler
from hf_dlm.pipelines import MaskedImagePipeline

from tests.utils.image_pipelines import amused_components, class_pipeline


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
