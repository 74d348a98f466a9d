"""Nothing silent at the boundary of the image pipelines, the MaskGIT scheduler and the Quant-dLLM quantizer: every
bad argument raises a typed error naming it (and the value), NaN never becomes a token or a Cholesky failure, and
the legitimate edge cases (output types, one generator per image) give the right result."""

import math

import numpy as np
import PIL.Image
import pytest
import torch
from tests.utils.image_pipelines import amused_components
from tests.utils.models import tiny_llada_config
from diffusers import VQModel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel, pipeline

from hf_dlm import LLaDAModelLM, MaskedImageTransformer, MaskGITScheduler, QuantDLLMConfig, QuantDLLMQuantizer
from hf_dlm.evaluation.digits import digits_vqvae
from hf_dlm.evaluation.oracle import OracleLanguage
from hf_dlm.multimodal import add_image_tokens
from hf_dlm.pipelines import AutoregressiveImagePipeline, MaskedImagePipeline
from hf_dlm.quantization import calibration_sequences, quantize_weight
from hf_dlm.quantization.daq import daq
from hf_dlm.quantization.importance import inverse_hessian_diagonal

HYPOTHESIS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
MASK, CODEBOOK = 8, 8


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------- tiny parts
def _vqvae() -> VQModel:
    torch.manual_seed(0)
    return VQModel(act_fn="silu", block_out_channels=[8], down_block_types=["DownEncoderBlock2D"], in_channels=3,
                   latent_channels=8, layers_per_block=1, norm_num_groups=8, num_vq_embeddings=CODEBOOK,
                   out_channels=3, sample_size=8, up_block_types=["UpDecoderBlock2D"], mid_block_add_attention=False,
                   lookup_from_codebook=True).eval()


def class_pipe() -> MaskedImagePipeline:
    """Class-conditional: 10 classes, a 4×4 token grid (VQ downscale 1), the MaskGIT scheduler."""
    torch.manual_seed(0)
    transformer = MaskedImageTransformer(codebook_size=CODEBOOK, sample_size=4, hidden_size=32, num_layers=1,
                                         num_attention_heads=2, num_classes=10).eval()
    pipe = MaskedImagePipeline(vqvae=_vqvae(), transformer=transformer,
                               scheduler=MaskGITScheduler(mask_token_id=MASK, masking_schedule="cosine"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def text_pipe() -> MaskedImagePipeline:
    """Text-conditional aMUSEd parts (UVit2DModel + AmusedScheduler), as in diffusers' own tests."""
    pipe = MaskedImagePipeline(**amused_components())
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def cpipe() -> MaskedImagePipeline:
    return class_pipe()


@pytest.fixture(scope="module")
def tpipe() -> MaskedImagePipeline:
    return text_pipe()


def _raises(exc, expected: str, fn, *args, **kwargs) -> str:
    """Call ``fn``; it must raise ``exc`` (a type or tuple) whose message holds ``expected``. Returns it."""
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert expected in message, message
    return message


# ---------------------------------------------------------------------------------------------- masked pipeline
BAD_CLASS_CALLS = [
    (dict(output_type="jpeg"), ValueError, "output_type"),
    (dict(output_type=None), ValueError, "output_type"),
    (dict(height=0), ValueError, "height"),
    (dict(width=-4), ValueError, "width"),
    (dict(height=2.5), TypeError, "height"),
    (dict(height=8), ValueError, "height"),  # 8×4 tokens > the transformer's 16 positions
    (dict(class_labels=3.7), TypeError, "class_labels"),
    (dict(class_labels=[1, True]), TypeError, "class_labels"),
    (dict(class_labels=[]), ValueError, "class_labels"),
    (dict(class_labels=torch.tensor([1.0, 2.0])), TypeError, "class_labels"),
    (dict(class_labels=[10]), ValueError, "class_labels"),
    (dict(guidance_scale=float("nan")), ValueError, "guidance_scale"),
    (dict(guidance_scale=float("inf")), ValueError, "guidance_scale"),
    (dict(guidance_scale=-1.0), ValueError, "guidance_scale"),
    (dict(guidance_scale="3"), TypeError, "guidance_scale"),
    (dict(num_inference_steps=2.0), ValueError, "num_inference_steps"),
    (dict(num_inference_steps=True), ValueError, "num_inference_steps"),
    (dict(num_images_per_prompt=0), ValueError, "num_images_per_prompt"),
    (dict(temperature=float("nan")), ValueError, "temperature"),
    (dict(temperature=(1.0, 0.5, 0.0)), ValueError, "temperature"),
    (dict(temperature=-0.5), ValueError, "temperature"),
    (dict(generator=[gen(0), gen(1), gen(2)]), ValueError, "generator"),
    (dict(generator=[gen(0), 5]), TypeError, "generator"),
    (dict(generator=42), TypeError, "generator"),
    (dict(latents=torch.full((2, 4, 4), MASK, dtype=torch.float32)), TypeError, "latents"),
    (dict(latents=torch.full((1, 4, 4), MASK)), ValueError, "latents"),
    (dict(latents=torch.full((2, 4, 4), 99)), ValueError, "latents"),
    (dict(negative_prompt="blurry"), ValueError, "negative_prompt"),
    (dict(return_dict="yes"), TypeError, "return_dict"),
    (dict(callback_on_step_end=5), TypeError, "callback_on_step_end"),
    (dict(callback_on_step_end_tensor_inputs=["latents"]), ValueError, "callback_on_step_end_tensor_inputs"),
    (dict(callback_on_step_end=lambda *a: {}, callback_on_step_end_tensor_inputs=["noise"]), ValueError,
     "callback_on_step_end_tensor_inputs"),
    (dict(micro_conditioning_aesthetic_score=7), ValueError, "micro_conditioning"),
    (dict(micro_conditioning_crop_coord=(0,)), TypeError, "micro_conditioning_crop_coord"),
]


@pytest.mark.parametrize("kwargs, exc, name", BAD_CLASS_CALLS, ids=[f"{c[2]}-{i}" for i, c in
                                                                     enumerate(BAD_CLASS_CALLS)])
def test_masked_pipeline_refuses_bad_arguments_by_name(cpipe, kwargs, exc, name):
    call = dict(class_labels=[1, 2], num_inference_steps=2, guidance_scale=1.0, output_type="latent")
    call.update(kwargs)
    _raises(exc, name, cpipe, **call)


def test_masked_pipeline_error_names_the_value(cpipe):
    message = _raises(TypeError, "class_labels", cpipe, class_labels=3.7, num_inference_steps=1)
    assert "3.7" in message
    message = _raises(ValueError, "output_type", cpipe, class_labels=1, output_type="jpeg")
    assert "'jpeg'" in message and "'pil'" in message


@pytest.mark.parametrize("kwargs, exc, name", [
    (dict(prompt=[1, 2]), TypeError, "prompt"),
    (dict(prompt=[]), TypeError, "prompt"),
    (dict(prompt="the", negative_prompt="of", guidance_scale=1.0), ValueError, "negative_prompt"),
    (dict(prompt=["the", "of"], negative_prompt=["a", "b", "c"], guidance_scale=3.0), ValueError, "negative_prompt"),
    (dict(prompt="the", negative_prompt=[3], guidance_scale=3.0), TypeError, "negative_prompt"),
    (dict(prompt="the", class_labels=1), ValueError, "class_labels"),
    (dict(prompt="the", micro_conditioning_crop_coord=(0, float("nan"))), ValueError,
     "micro_conditioning_crop_coord"),
])
def test_text_pipeline_refuses_bad_arguments_by_name(tpipe, kwargs, exc, name):
    _raises(exc, name, tpipe, height=4, width=4, num_inference_steps=1, output_type="latent", **kwargs)


@pytest.mark.parametrize("output_type, check", [
    ("pil", lambda x: isinstance(x, list) and len(x) == 2 and all(isinstance(i, PIL.Image.Image) and i.size == (4, 4)
                                                                   for i in x)),
    ("np", lambda x: isinstance(x, np.ndarray) and x.shape == (2, 4, 4, 3) and 0 <= x.min() <= x.max() <= 1),
    ("pt", lambda x: isinstance(x, torch.Tensor) and x.shape == (2, 3, 4, 4) and x.dtype.is_floating_point),
    ("latent", lambda x: isinstance(x, torch.Tensor) and x.shape == (2, 4, 4) and x.dtype == torch.long
     and not (x == MASK).any()),
])
def test_output_types_give_the_right_types(cpipe, output_type, check):
    images = cpipe(class_labels=[0, 5], num_inference_steps=2, guidance_scale=2.0, output_type=output_type,
                   generator=gen(0)).images
    assert check(images)
    as_tuple = cpipe(class_labels=[0, 5], num_inference_steps=2, guidance_scale=2.0, output_type=output_type,
                     generator=gen(0), return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 1


@pytest.mark.parametrize("guidance_scale", [1.0, 3.0])
def test_one_generator_per_image_matches_each_image_alone(cpipe, guidance_scale):
    kwargs = dict(num_inference_steps=4, guidance_scale=guidance_scale, output_type="latent")
    both = cpipe(class_labels=[3, 7], generator=[gen(1), gen(2)], **kwargs).images
    first = cpipe(class_labels=[3], generator=gen(1), **kwargs).images
    second = cpipe(class_labels=[7], generator=gen(2), **kwargs).images
    assert torch.equal(both, torch.cat([first, second]))
    # num_images_per_prompt: labels repeat-interleaved, so image i uses generator i
    many = cpipe(class_labels=[3, 7], num_images_per_prompt=2, generator=[gen(1), gen(5), gen(2), gen(6)],
                 **kwargs).images
    assert torch.equal(many[0], both[0]) and torch.equal(many[2], both[1])


def test_one_generator_per_image_with_text_guidance_and_a_shared_negative_prompt(tpipe):
    kwargs = dict(height=4, width=4, num_inference_steps=3, guidance_scale=4.0, output_type="latent",
                  negative_prompt="in")  # one negative string for every prompt (used to break the batch)
    both = tpipe(prompt=["the a", "of in"], generator=(gen(1), gen(2)), **kwargs).images
    first = tpipe(prompt="the a", generator=gen(1), **kwargs).images
    second = tpipe(prompt="of in", generator=gen(2), **kwargs).images
    assert both.shape == (2, 4, 4) and torch.equal(both, torch.cat([first, second]))


@pytest.mark.parametrize("guidance_scale", [1.0, 2.0])
def test_one_generator_per_image_for_a_dimo_one_step_generator(guidance_scale):
    """The initial state x_init and Di[M]O's embedding noise are drawn per image from its own generator."""
    pipe = class_pipe()
    pipe.transformer.register_to_config(dimo_initial_state={"r_init": 0.5, "vocab_size": CODEBOOK,
                                                            "embedding_noise_std": 0.3})
    kwargs = dict(num_inference_steps=1, guidance_scale=guidance_scale, output_type="latent")
    both = pipe(class_labels=[2, 4], generator=[gen(3), gen(4)], **kwargs).images
    alone = torch.cat([pipe(class_labels=[2], generator=gen(3), **kwargs).images,
                       pipe(class_labels=[4], generator=gen(4), **kwargs).images])
    assert torch.equal(both, alone)


def test_nan_logits_raise_and_never_become_tokens():
    pipe = class_pipe()
    with torch.no_grad():
        pipe.transformer.proj_out.weight[0, 0] = float("nan")
    seen = []
    _raises(ValueError, "non-finite", pipe, class_labels=[1, 2], num_inference_steps=3, guidance_scale=2.0,
            callback_on_step_end=lambda p, i, t, x: seen.append(i) or x)
    assert seen == []  # raised at the first step, before any token was committed


def test_callback_must_return_a_dict(cpipe):
    _raises(TypeError, "callback_on_step_end", cpipe, class_labels=1, num_inference_steps=2,
            callback_on_step_end=lambda p, i, t, tensors: None)
    _raises(ValueError, "callback_on_step_end", cpipe, class_labels=1, num_inference_steps=2,
            callback_on_step_end=lambda p, i, t, tensors: {"latents": tensors["latents"].float()})


@HYPOTHESIS
@given(st.one_of(st.integers(max_value=0), st.integers(min_value=5, max_value=10**6),
                 st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.text(max_size=3)))
def test_random_invalid_heights_and_widths_are_refused_by_name(cpipe, value):
    for name in ("height", "width"):
        _raises((TypeError, ValueError), name, cpipe, class_labels=1, num_inference_steps=1, output_type="latent",
                **{name: value})


@HYPOTHESIS
@given(st.one_of(st.integers(max_value=0), st.floats(allow_nan=True), st.booleans(), st.just("4")))
def test_random_invalid_step_counts_are_refused_by_name(cpipe, steps):
    _raises((TypeError, ValueError), "num_inference_steps", cpipe, class_labels=1, num_inference_steps=steps,
            output_type="latent")


@HYPOTHESIS
@given(steps=st.integers(min_value=1, max_value=6), seed=st.integers(min_value=0, max_value=2**31),
       side=st.sampled_from([1, 2, 4]), label=st.integers(min_value=0, max_value=9))
def test_random_valid_calls_reveal_every_token(cpipe, steps, seed, side, label):
    out = cpipe(class_labels=label, num_inference_steps=steps, height=side, width=4, generator=gen(seed),
                output_type="latent").images
    assert out.shape == (1, side, 4) and out.min() >= 0 and out.max() < CODEBOOK


# ---------------------------------------------------------------------------------------------- scheduler
@pytest.fixture()
def scheduler() -> MaskGITScheduler:
    scheduler = MaskGITScheduler(MASK, "cosine")
    scheduler.set_timesteps(4)
    return scheduler


def _logits(batch=2, length=6, seed=0):
    return torch.randn(batch, length, CODEBOOK, generator=gen(seed))


@pytest.mark.parametrize("call, exc, name", [
    (lambda s: s.set_timesteps(0), ValueError, "num_inference_steps"),
    (lambda s: s.set_timesteps(2.5), ValueError, "num_inference_steps"),
    (lambda s: s.set_timesteps(True), ValueError, "num_inference_steps"),
    (lambda s: s.set_timesteps(4, temperature=float("nan")), ValueError, "temperature"),
    (lambda s: s.set_timesteps(4, temperature=(2.0,)), ValueError, "temperature"),
    (lambda s: s.set_timesteps(4, temperature="hot"), TypeError, "temperature"),
    (lambda s: s.set_timesteps(4, device="nonsense"), ValueError, "device"),
    (lambda s: s.step(_logits().long(), 3, torch.full((2, 6), MASK)), TypeError, "model_output"),
    (lambda s: s.step(_logits(), 3, torch.full((2, 6), float(MASK))), TypeError, "sample"),
    (lambda s: s.step(_logits(), 3, torch.full((2, 5), MASK)), ValueError, "sample"),
    (lambda s: s.step(_logits(), 3, torch.full((2, 6), 20)), ValueError, "sample"),
    (lambda s: s.step(_logits(), 7, torch.full((2, 6), MASK)), ValueError, "timestep"),
    (lambda s: s.step(_logits(), 1.5, torch.full((2, 6), MASK)), TypeError, "timestep"),
    (lambda s: s.step(_logits(), 3, torch.full((2, 6), MASK), starting_mask_ratio=1.5), ValueError,
     "starting_mask_ratio"),
    (lambda s: s.step(_logits(), 3, torch.full((2, 6), MASK), starting_mask_ratio=float("nan")), ValueError,
     "starting_mask_ratio"),
    (lambda s: s.step(_logits(), 3, torch.full((2, 6), MASK), generator=[gen(0)]), ValueError, "generator"),
    (lambda s: s.add_noise(torch.zeros(2, 6), 3), TypeError, "sample"),
    (lambda s: s.add_noise(torch.zeros(2, 6, dtype=torch.long), 9), ValueError, "timestep"),
    (lambda s: MaskGITScheduler(-1), ValueError, "mask_token_id"),
    (lambda s: MaskGITScheduler(MASK, choice_temperature=float("inf")), ValueError, "choice_temperature"),
])
def test_scheduler_refuses_bad_arguments_by_name(scheduler, call, exc, name):
    _raises(exc, name, call, scheduler)


@pytest.mark.parametrize("poison", [float("nan"), float("inf")])
def test_scheduler_refuses_non_finite_logits(scheduler, poison):
    logits = _logits()
    logits[1, 2, 3] = poison
    _raises(ValueError, "model_output", scheduler.step, logits, 3, torch.full((2, 6), MASK), generator=gen(0))
    # -inf is a legitimate "never this token" logit, as long as a row keeps one finite entry
    logits = _logits()
    logits[..., :4] = float("-inf")
    out = scheduler.step(logits, 0, torch.full((2, 6), MASK), generator=gen(0)).prev_sample
    assert (out >= 4).all() and (out < CODEBOOK).all()


def test_scheduler_generator_list_steps_each_row_alone(scheduler):
    logits, sample = _logits(3, 6, seed=1), torch.full((3, 6), MASK)
    together = scheduler.step(logits, 3, sample, generator=[gen(10), gen(11), gen(12)])
    for row in range(3):
        alone = scheduler.step(logits[row: row + 1], 3, sample[row: row + 1], generator=gen(10 + row))
        assert torch.equal(together.prev_sample[row], alone.prev_sample[0])
        assert torch.equal(together.pred_original_sample[row], alone.pred_original_sample[0])
    noisy = scheduler.add_noise(torch.zeros(2, 50, dtype=torch.long), 2, generator=[gen(1), gen(2)])
    assert torch.equal(noisy[1], scheduler.add_noise(torch.zeros(1, 50, dtype=torch.long), 2, generator=gen(2))[0])


# ---------------------------------------------------------------------------------------------- autoregressive
@pytest.fixture(scope="module")
def ar_pipe() -> AutoregressiveImagePipeline:
    tokenizer = OracleLanguage().tokenizer()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2, n_positions=96,
                                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                       pad_token_id=tokenizer.pad_token_id, resid_pdrop=0.0, embd_pdrop=0.0,
                                       attn_pdrop=0.0))
    add_image_tokens(model, tokenizer, 17, image_grid=(8, 8), generator=gen(0))
    pipe = AutoregressiveImagePipeline(model.eval(), tokenizer, digits_vqvae())
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("kwargs, exc, name", [
    (dict(top_p=0.0), ValueError, "top_p"),
    (dict(top_p=1.5), ValueError, "top_p"),
    (dict(top_p=float("nan")), ValueError, "top_p"),
    (dict(top_k=2.5), ValueError, "top_k"),
    (dict(temperature=float("nan")), ValueError, "temperature"),
    (dict(guidance_scale=float("inf")), ValueError, "guidance_scale"),
    (dict(output_type="jpeg"), ValueError, "output_type"),
    (dict(generator=[gen(0)] * 3), ValueError, "generator"),
    (dict(return_dict=1), TypeError, "return_dict"),
])
def test_autoregressive_pipeline_refuses_bad_arguments_by_name(ar_pipe, kwargs, exc, name):
    _raises(exc, name, ar_pipe, ["the", "a"], output_type=kwargs.pop("output_type", "latent"), **kwargs)


def test_autoregressive_generator_list_matches_each_image_alone(ar_pipe):
    prompts = ["the " + OracleLanguage().words[31], "a"]
    both = ar_pipe(prompts, guidance_scale=2.0, generator=[gen(1), gen(2)], output_type="latent").images
    first = ar_pipe(prompts[0], guidance_scale=2.0, generator=gen(1), output_type="latent").images
    second = ar_pipe(prompts[1], guidance_scale=2.0, generator=gen(2), output_type="latent").images
    assert both.shape == (2, 8, 8) and torch.equal(both, torch.cat([first, second]))


def test_autoregressive_nan_scores_raise():
    tokenizer = OracleLanguage().tokenizer()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2, n_positions=96,
                                       pad_token_id=tokenizer.pad_token_id))
    add_image_tokens(model, tokenizer, 17, image_grid=(8, 8), generator=gen(0))
    with torch.no_grad():
        model.transformer.ln_f.weight[0] = float("nan")
    pipe = AutoregressiveImagePipeline(model.eval(), tokenizer, digits_vqvae())
    pipe.set_progress_bar_config(disable=True)
    _raises(ValueError, "non-finite", pipe, "the", generator=gen(0), output_type="latent")


# ---------------------------------------------------------------------------------------------- text-to-image task
@pytest.mark.parametrize("inputs, kwargs, exc, name", [
    ("the", dict(num_inference_step=2), TypeError, "num_inference_step"),
    ("the", dict(prompt="the"), TypeError, "prompt"),
    ("the", dict(return_dict=False), TypeError, "return_dict"),
    ("the", dict(batch_size=2), TypeError, "batch_size"),
    ([1, 2], dict(), TypeError, "input"),
    (["the", "of"], dict(generator=[gen(0)] * 3), ValueError, "generator"),
    ("the", dict(output_type="jpeg"), ValueError, "output_type"),
    ("the", dict(guidance_scale=float("nan")), ValueError, "guidance_scale"),
])
def test_text_to_image_task_refuses_bad_input_by_name(tpipe, inputs, kwargs, exc, name):
    t2i = pipeline("text-to-image", model=tpipe)
    _raises(exc, name, t2i, inputs, height=4, width=4, num_inference_steps=1, **kwargs)


def test_text_to_image_task_class_labels_and_generator_lists(cpipe):
    t2i = pipeline("text-to-image", model=cpipe)
    _raises(TypeError, "class label", t2i, 3.7, num_inference_steps=1)
    _raises(TypeError, "class_labels", t2i, 3, class_labels=4, num_inference_steps=1)
    kwargs = dict(num_inference_steps=3, guidance_scale=1.0, output_type="np")
    images = t2i([3, 7], generator=[gen(1), gen(2)], **kwargs)  # split: one generator per input
    assert len(images) == 2
    assert np.array_equal(images[1], t2i(7, generator=gen(2), **kwargs))


# ---------------------------------------------------------------------------------------------- quantizer
TINY = dict(block_size=16, abmp_fraction=0.25, num_calibration_sequences=4, calibration_seq_len=24,
            mcs_timesteps=2, rsr_iterations=1, calibration_batch_size=4)
DATA_FREE = dict(block_size=16, use_dor=False, abmp_fraction=0.0, rsr_iterations=1)


def _llada() -> LLaDAModelLM:
    torch.manual_seed(0)
    return LLaDAModelLM(tiny_llada_config()).eval()


def _ids(low=0, high=90) -> torch.Tensor:
    return torch.randint(low, high, (4, 24), generator=gen(0))


@pytest.mark.parametrize("param, where", [
    ("model.transformer.blocks.1.q_proj.weight", "blocks.1.q_proj"),
    ("model.transformer.wte.weight", "wte"),
    ("model.transformer.blocks.0.attn_norm.weight", "attn_norm"),
])
@pytest.mark.parametrize("poison", [float("nan"), float("inf")])
def test_non_finite_weight_is_named_before_any_cholesky(param, where, poison):
    model = _llada()
    with torch.no_grad():
        model.get_parameter(param).view(-1)[3] = poison
    message = _raises(ValueError, where, QuantDLLMQuantizer(QuantDLLMConfig(**TINY)).quantize_model, model,
                      calibration_data=_ids(), show_progress=False)
    assert "`weight`" in message and "NaN/inf" in message


@pytest.mark.parametrize("data, name", [
    (torch.full((4, 24), float("nan")), "NaN"),
    ([[1, 2, float("nan")] * 10], "calibration_data"),
    ([[1, 2, 3.5] * 10], "calibration_data"),
    ([], "calibration_data"),
    ([[]], "calibration_data"),
    (torch.empty(0, 24, dtype=torch.long), "calibration_data"),
    (_ids(90, 200), "vocabulary"),
    (_ids(-5, 0), "vocabulary"),
    ([["text", 3]], "calibration_data"),
])
def test_bad_calibration_data_is_refused_up_front(data, name):
    _raises(ValueError, name, QuantDLLMQuantizer(QuantDLLMConfig(**TINY)).quantize_model, _llada(),
            calibration_data=data, show_progress=False)


@pytest.mark.parametrize("kwargs, field", [
    (dict(bits=True), "bits"),
    (dict(orders=(1.5, 2, 3)), "orders"),
    (dict(abmp_fraction=float("nan")), "abmp_fraction"),
    (dict(abmp_fraction="0.1"), "abmp_fraction"),
    (dict(importance_factor=float("inf")), "importance_factor"),
    (dict(outlier_sigma=float("inf")), "outlier_sigma"),
    (dict(damping=float("nan")), "damping"),
    (dict(damping=0.0), "damping"),
    (dict(rsr_iterations=True), "rsr_iterations"),
    (dict(use_dor="yes"), "use_dor"),
    (dict(use_mcs=1), "use_mcs"),
    (dict(block_size=16.0), "block_size"),
    (dict(calibration_seq_len=0), "calibration_seq_len"),
    (dict(prefix_ratio=float("nan")), "prefix_ratio"),
    (dict(mask_token_id=-1), "mask_token_id"),
    (dict(mask_token_id=2.0), "mask_token_id"),
    (dict(modules_to_not_convert="lm_head"), "modules_to_not_convert"),
    (dict(dataset=[]), "dataset"),
    (dict(dataset=3), "dataset"),
    (dict(seed=1.5), "seed"),
])
def test_config_gaps_are_filled(kwargs, field):
    _raises(ValueError, field, QuantDLLMConfig, **kwargs)


def test_config_edited_after_construction_is_checked_again():
    config = QuantDLLMConfig(**TINY)
    config.damping = float("nan")
    _raises(ValueError, "damping", QuantDLLMQuantizer(config).quantize_model, _llada(), calibration_data=_ids(),
            show_progress=False)


def test_model_without_quantizable_layers_is_refused():
    names = ["q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "blocks.0.ff_out", "blocks.1.ff_out"]
    config = QuantDLLMConfig(**DATA_FREE, modules_to_not_convert=names)
    _raises(ValueError, "no quantizable layers", QuantDLLMQuantizer(config).quantize_model, _llada(),
            show_progress=False)
    no_linears = nn.Sequential(nn.ModuleList([nn.LayerNorm(4), nn.LayerNorm(4)]))
    _raises(ValueError, "no quantizable layers", QuantDLLMQuantizer(QuantDLLMConfig(**DATA_FREE)).quantize_model,
            no_linears, show_progress=False)


def test_unmatched_modules_to_not_convert_and_bad_call_arguments():
    quantizer = QuantDLLMQuantizer(QuantDLLMConfig(**DATA_FREE, modules_to_not_convert=["lm_head"]))
    message = _raises(ValueError, "modules_to_not_convert", quantizer.quantize_model, _llada(), show_progress=False)
    assert "lm_head" in message
    quantizer = QuantDLLMQuantizer(QuantDLLMConfig(**DATA_FREE))
    _raises(ValueError, "device", quantizer.quantize_model, _llada(), device="gpu0", show_progress=False)
    _raises(TypeError, "model", quantizer.quantize_model, "a model", show_progress=False)


def test_linears_outside_the_blocks_stay_dense_and_are_recorded(caplog):
    model = _llada()
    model.extra_head = nn.Linear(8, 8)
    config = QuantDLLMConfig(**DATA_FREE)
    QuantDLLMQuantizer(config).quantize_model(model, show_progress=False)
    assert isinstance(model.extra_head, nn.Linear) and "extra_head" in config.modules_to_not_convert


def test_weight_level_inputs_are_checked():
    config = QuantDLLMConfig(block_size=8, abmp_fraction=0.0)
    weight = torch.randn(4, 16)
    stats = torch.eye(16)
    bad = weight.clone()
    bad[1, 2] = float("nan")
    _raises(ValueError, "layer.q", quantize_weight, bad, config, stats, name="layer.q")
    nan_stats = stats.clone()
    nan_stats[0, 0] = float("nan")
    _raises(ValueError, "statistics of layer.q", quantize_weight, weight, config, nan_stats, name="layer.q")
    _raises(ValueError, "(16, 16)", quantize_weight, weight, config, torch.eye(8), name="layer.q")
    _raises(TypeError, "config", quantize_weight, weight, {"bits": 2}, stats)
    # an indefinite "Gram matrix" is a clear error, not a LinAlgError from deep inside Cholesky
    _raises(ValueError, "positive definite", inverse_hessian_diagonal, -10 * torch.eye(4) + 1, 0.01)
    _raises(ValueError, "`w`", daq, torch.full((1, 2, 2), float("nan")), 1, 1)
    assert math.isfinite(quantize_weight(weight, config, stats).objective_final)


def test_calibration_sequences_checks_its_sizes_and_vocabulary():
    _raises(ValueError, "calibration_seq_len", calibration_sequences, [[1] * 10], 2, 0)
    _raises(ValueError, "vocabulary", calibration_sequences, [[1, 2, 300] * 10], 2, 6, vocab_size=96)
    assert calibration_sequences([[1, 2, 3] * 10], 2, 6, vocab_size=96).shape == (2, 6)
