"""Reference models: the tiny builds train in seconds, cache to disk, reload identically; the AR baseline matches
the teacher's parameter count and token budget."""

import json

import pytest
import torch
from transformers import GPT2LMHeadModel

from hf_dlm import LLaDAModelLM
from hf_dlm.recipes.reference import (REFERENCE_SETTINGS, ar_config, count_parameters, get_settings,
                                         load_reference, oracle_and_tokenizer, teacher_config)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("reference_cache")


def test_tiny_teacher_trains_caches_and_reloads(cache):
    model, tokenizer, info = load_reference("teacher", "tiny", cache_dir=cache)
    assert isinstance(model, LLaDAModelLM) and info["kind"] == "teacher"
    folder = next(cache.glob("teacher-tiny-*"))
    assert json.loads((folder / "reference_info.json").read_text())["settings"]["seq_len"] == 16
    again, _, info_again = load_reference("teacher", "tiny", cache_dir=cache)
    ids = torch.randint(0, 256, (2, 16))
    assert torch.equal(model(ids).logits, again(ids).logits) and info_again == info
    sample = again.generate(torch.empty(4, 0, dtype=torch.long))  # the saved generation settings: 16 tokens
    assert sample.shape == (4, 16) and (sample < 256).all()


def test_tiny_ar_baseline_matches_budget(cache):
    model, tokenizer, info = load_reference("ar", "tiny", cache_dir=cache)
    assert isinstance(model, GPT2LMHeadModel)
    settings = get_settings("tiny")
    teacher_params = count_parameters(LLaDAModelLM(teacher_config(settings, tokenizer)))
    assert abs(info["parameters"] - teacher_params) / teacher_params < 0.05
    assert info["token_budget"] == settings.batch_size * settings.max_steps * settings.seq_len


@pytest.mark.parametrize("size", sorted(REFERENCE_SETTINGS))
def test_parameter_matching_formula_is_exact(size):
    settings = get_settings(size)
    _, tokenizer = oracle_and_tokenizer(settings)
    target = count_parameters(LLaDAModelLM(teacher_config(settings, tokenizer)))
    config = ar_config(settings, tokenizer, target)
    gpt2 = GPT2LMHeadModel(config)
    assert abs(count_parameters(gpt2) - target) / target < 0.02


def test_bad_reference_arguments():
    with pytest.raises(ValueError, match="kind"):
        load_reference("student")
    with pytest.raises(ValueError, match="size"):
        get_settings("huge")
