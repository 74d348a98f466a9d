"""Bad inputs to ``generate()`` and the generation config: each gets a typed error naming the argument (or the
correct result), and NaN / +inf logits never become tokens."""

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hf_dlm import MaskedDiffusionGenerationConfig

MASK = 95


@pytest.fixture
def prompt():
    return torch.randint(0, 90, (2, 4), generator=torch.Generator().manual_seed(0))


# ------------------------------------------------------------------------------------------------ the prompt tensors
@pytest.mark.parametrize("make, error, name", [
    (lambda p: p.float(), TypeError, "input_ids"),
    (lambda p: p.bool(), TypeError, "input_ids"),
    (lambda p: p[0], ValueError, "input_ids"),
    (lambda p: p[:0], ValueError, "input_ids"),
    (lambda p: p + 200, ValueError, "input_ids"),
    (lambda p: p - 100, ValueError, "input_ids"),
    (lambda p: p.tolist(), ValueError, "input_ids"),
    (lambda p: torch.cat([p, torch.full((2, 1), MASK)], 1), ValueError, "infill"),
])
def test_bad_input_ids(tiny_llada, prompt, make, error, name):
    with pytest.raises(error, match=name):
        tiny_llada.generate(make(prompt), max_new_tokens=4)


@pytest.mark.parametrize("make, error, match", [
    (lambda p: torch.ones(2, 5, dtype=torch.long), ValueError, "shape"),
    (lambda p: torch.full_like(p, 2), ValueError, "only 0"),
    (lambda p: torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]]), ValueError, "left-padded"),
    (lambda p: torch.tensor([[1, 0, 1, 1], [1, 1, 1, 1]]), ValueError, "left-padded"),
    (lambda p: torch.tensor([[0, 0, 0, 0], [1, 1, 1, 1]]), ValueError, "all padding"),
    (lambda p: [[1, 1, 1, 1]] * 2, TypeError, "attention_mask"),
    (lambda p: torch.full(p.shape, 0.5), ValueError, "only 0"),
])
def test_bad_attention_mask(tiny_llada, prompt, make, error, match):
    with pytest.raises(error, match=match):
        tiny_llada.generate(prompt, attention_mask=make(prompt), max_new_tokens=4)


def test_an_empty_prompt_generates_unconditionally(tiny_llada):
    out = tiny_llada.generate(torch.empty(3, 0), max_new_tokens=4, stop_at_eos=False)
    assert out.shape == (3, 4) and out.dtype == torch.long


def test_float_attention_mask_of_ones_and_zeros_is_accepted(tiny_llada, prompt):
    mask = torch.tensor([[0.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    out = tiny_llada.generate(prompt, attention_mask=mask, max_new_tokens=4, stop_at_eos=False)
    assert out.shape == (2, 8)


def test_infill_fills_the_prompts_masks_and_keeps_its_tokens(tiny_llada, prompt):
    holed = prompt.clone()
    holed[:, 1] = MASK
    out = tiny_llada.generate(holed, max_new_tokens=4, steps=4, infill=True, suppress_mask_token=True,
                              stop_at_eos=False)
    assert not (out == MASK).any()
    assert torch.equal(out[:, [0, 2, 3]], prompt[:, [0, 2, 3]])


@pytest.mark.parametrize("generator", [0, "seed", torch.Generator().manual_seed(0).get_state()])
def test_bad_generator(tiny_llada, prompt, generator):
    with pytest.raises(TypeError, match="generator"):
        tiny_llada.generate(prompt, max_new_tokens=4, generator=generator)


# --------------------------------------------------------------------------------------------------------- settings
BAD_SETTINGS = [
    ("max_new_tokens", 0), ("max_new_tokens", -3), ("max_new_tokens", 2.5), ("max_new_tokens", True),
    ("max_new_tokens", "8"), ("steps", 0), ("steps", -1), ("steps", 1.5), ("steps", True), ("block_length", 0),
    ("block_length", "4"), ("temperature", float("nan")), ("temperature", float("inf")), ("temperature", -0.1),
    ("temperature", "hot"), ("top_p", 0.0), ("top_p", -0.5), ("top_p", 1.5), ("top_p", float("nan")), ("top_k", 0),
    ("top_k", -1), ("top_k", 2.5), ("threshold", float("nan")), ("threshold", float("inf")), ("threshold", "high"),
    ("cfg_scale", float("nan")), ("cfg_scale", -1.0), ("cfg_scale", float("inf")), ("alg_temp", float("nan")),
    ("alg_temp", -0.5), ("eps", 0.0), ("eps", 1.0), ("eps", float("nan")), ("remasking", "best"),
    ("sampler", "maskgit"), ("stop_at_eos", "yes"), ("suppress_mask_token", 1), ("block_noise", None),
    ("min_new_tokens", -1), ("num_return_sequences", 0), ("num_return_sequences", "3"), ("do_sample", "yes"),
    ("infill", "no"), ("skip_idle_steps", 0),
]


@pytest.mark.parametrize("name, value", BAD_SETTINGS, ids=[f"{n}={v!r}" for n, v in BAD_SETTINGS])
def test_bad_setting_is_refused_by_name(tiny_llada, prompt, name, value):
    kwargs = {"max_new_tokens": 4, name: value}
    with pytest.raises(ValueError, match=f"`{name}`"):
        tiny_llada.generate(prompt, **kwargs)
    with pytest.raises(ValueError, match=f"`{name}`"):
        MaskedDiffusionGenerationConfig(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(alg="best"), "alg"),
    (dict(alg="entropy", remasking="margin"), "disagree"),
    (dict(sampler="dream", remasking="random"), "random"),
    (dict(remasking="origin", threshold=0.5), "threshold"),
    (dict(pad_token_id=MASK), "pad_token_id"),
    (dict(bad_words_ids=[[1, 2]]), "bad_words_ids"),
    (dict(stop_strings=["a b"]), "stop_strings"),
    (dict(max_length=3), "max_length"),
    (dict(max_new_tokens=70), "positions"),
    (dict(stepz=4), "stepz"),
    (dict(max_new_tokens=10, block_length=4), "block_length"),
    (dict(max_new_tokens=12, block_length=4, steps=4), "number of blocks"),
])
def test_inconsistent_settings_are_refused(tiny_llada, prompt, kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_llada.generate(prompt, **kwargs)


def test_streamer_needs_a_single_row(tiny_llada, prompt):
    with pytest.raises(ValueError, match="streamer"):
        tiny_llada.generate(prompt, streamer=object(), max_new_tokens=4)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["temperature", "top_p", "cfg_scale", "threshold", "alg_temp", "eps"]),
       value=st.one_of(st.just(float("nan")), st.just(float("inf")), st.just(float("-inf")),
                       st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False)))
def test_any_non_finite_or_negative_float_is_refused(name, value):
    if name == "threshold" and math.isfinite(value):
        return  # a negative threshold is legitimate (entropy scores are ≤ 0)
    with pytest.raises(ValueError, match=f"`{name}`"):
        MaskedDiffusionGenerationConfig(**{name: value})


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(length=st.integers(1, 12), block_divisor=st.integers(1, 4), steps_factor=st.integers(1, 2),
       remasking=st.sampled_from(["low_confidence", "random", "margin", "entropy", "origin"]),
       sampler=st.sampled_from(["llada", "dream"]), temperature=st.sampled_from([0.0, 0.7]))
def test_any_valid_setting_decodes_the_whole_answer(tiny_llada, length, block_divisor, steps_factor, remasking,
                                                    sampler, temperature):
    if sampler == "dream" and remasking == "random":
        return
    block = length // block_divisor if length % block_divisor == 0 and length // block_divisor else length
    blocks = length // block
    out = tiny_llada.generate(torch.randint(0, 90, (2, 3)), max_new_tokens=length, block_length=block,
                              steps=blocks * steps_factor * max(1, block // 2), remasking=remasking, sampler=sampler,
                              temperature=temperature, suppress_mask_token=True, stop_at_eos=False)
    assert out.shape == (2, 3 + length) and not (out == MASK).any()


# --------------------------------------------------------------------------------------------- NaN / inf in logits
@pytest.mark.parametrize("poison", [float("nan"), float("inf")])
@pytest.mark.parametrize("sampler", ["llada", "dream"])
def test_nan_or_inf_logits_never_become_tokens(tiny_llada, prompt, poison, sampler):
    bias = torch.zeros(100)
    bias[7] = poison
    tiny_llada.model.transformer.ff_out.bias = torch.nn.Parameter(bias)
    with pytest.raises(ValueError, match="NaN or \\+inf"):
        tiny_llada.generate(prompt, max_new_tokens=4, sampler=sampler)


def test_nan_weights_never_become_tokens(tiny_dream, prompt):
    with torch.no_grad():
        tiny_dream.model.layers[0].mlp.down_proj.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        tiny_dream.generate(prompt, max_new_tokens=4)


def test_minus_inf_logits_are_a_legitimate_never(tiny_llada, prompt):
    bias = torch.zeros(100)
    bias[10:] = float("-inf")  # only ids 0..9 may be proposed
    tiny_llada.model.transformer.ff_out.bias = torch.nn.Parameter(bias)
    out = tiny_llada.generate(prompt, max_new_tokens=4, stop_at_eos=False)
    assert (out[:, 4:] < 10).all()
