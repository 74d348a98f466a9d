"""transformers' generate() contract: every standard field is honoured (expected shapes / values) or refused with a
ValueError naming it; ``max_length`` and ``num_return_sequences`` also through ``pipeline("text-generation")``."""

import logging

import pytest
import torch
from tests.utils.models import CallCounter
from transformers import LogitsProcessorList, StoppingCriteriaList, pipeline
from transformers.generation import MaxLengthCriteria, RepetitionPenaltyLogitsProcessor

from hf_dlm import MaskedDiffusionGenerationConfig

MASK, EOS = 95, 93


@pytest.fixture
def prompt():
    return torch.randint(0, 90, (2, 4), generator=torch.Generator().manual_seed(0))


def test_max_length_sets_the_total_length(tiny_llada, prompt):
    assert tiny_llada.generate(prompt, max_length=12, stop_at_eos=False).shape == (2, 12)
    assert tiny_llada.generate(prompt, max_length=12, max_new_tokens=3, stop_at_eos=False).shape == (2, 7)
    with pytest.raises(ValueError, match="max_length"):
        tiny_llada.generate(prompt, max_length=4)


def test_num_return_sequences_repeats_each_prompt(tiny_llada, prompt):
    out = tiny_llada.generate(prompt, max_new_tokens=6, temperature=1.0, num_return_sequences=3,
                              generator=torch.Generator().manual_seed(1), stop_at_eos=False)
    assert out.shape == (6, 10)
    assert torch.equal(out[:3, :4], prompt[:1].expand(3, 4)) and torch.equal(out[3:, :4], prompt[1:].expand(3, 4))
    assert len({tuple(row.tolist()) for row in out[:3]}) > 1  # independent samples
    with pytest.raises(ValueError, match="num_return_sequences"):
        tiny_llada.generate(prompt, max_new_tokens=6, num_return_sequences=2)  # greedy copies are refused, as HF


def test_do_sample_switches_between_greedy_and_sampling(tiny_llada, prompt):
    greedy = tiny_llada.generate(prompt, max_new_tokens=6, do_sample=False, temperature=1.0, stop_at_eos=False)
    assert torch.equal(greedy, tiny_llada.generate(prompt, max_new_tokens=6, stop_at_eos=False))
    sampled = [tiny_llada.generate(prompt, max_new_tokens=6, do_sample=True, temperature=1.0, stop_at_eos=False,
                                   generator=torch.Generator().manual_seed(s)) for s in (1, 2)]
    assert not torch.equal(*sampled)


def test_min_new_tokens_keeps_eos_out_of_the_first_positions(tiny_llada, prompt):
    bias = torch.zeros(100)
    bias[EOS] = 50.0  # EOS everywhere unless forbidden
    tiny_llada.model.transformer.ff_out.bias = torch.nn.Parameter(bias)
    out = tiny_llada.generate(prompt, max_new_tokens=8, min_new_tokens=5, stop_at_eos=False)
    assert not (out[:, 4:9] == EOS).any() and (out[:, 9:] == EOS).all()


def test_suppress_tokens_and_single_token_bad_words_are_never_proposed(tiny_llada, prompt):
    greedy = tiny_llada.generate(prompt, max_new_tokens=8, stop_at_eos=False)
    banned = sorted(set(greedy[:, 4:].flatten().tolist()))
    out = tiny_llada.generate(prompt, max_new_tokens=8, stop_at_eos=False, suppress_tokens=banned[:2],
                              bad_words_ids=[[t] for t in banned[2:]])
    assert not torch.isin(out[:, 4:], torch.tensor(banned)).any()
    with pytest.raises(ValueError, match="bad_words_ids"):
        tiny_llada.generate(prompt, max_new_tokens=8, bad_words_ids=[[3, 4]])


@pytest.mark.parametrize("kwargs, name", [
    (dict(num_beams=2), "num_beams"),
    (dict(repetition_penalty=1.3), "repetition_penalty"),
    (dict(output_scores=True, return_dict_in_generate=True), "output_scores"),
    (dict(output_logits=True, return_dict_in_generate=True), "output_logits"),
    (dict(no_repeat_ngram_size=2), "no_repeat_ngram_size"),
    (dict(typical_p=0.9, do_sample=True), "typical_p"),
    (dict(min_p=0.1, do_sample=True), "min_p"),
    (dict(guidance_scale=2.0), "guidance_scale"),
    (dict(stop_strings=["the"]), "stop_strings"),  # no tokenizer to find its id
    (dict(min_length=3), "min_length"),
    (dict(logits_processor=LogitsProcessorList([RepetitionPenaltyLogitsProcessor(1.2)])), "logits_processor"),
    (dict(stopping_criteria=StoppingCriteriaList([MaxLengthCriteria(5)])), "stopping_criteria"),
    (dict(assistant_model=object()), "assistant_model"),
])
def test_unsupported_fields_are_refused_by_name(tiny_llada, prompt, kwargs, name):
    with pytest.raises(ValueError, match=name):
        tiny_llada.generate(prompt, max_new_tokens=4, **kwargs)


def test_neutral_values_and_empty_lists_are_accepted(tiny_llada, prompt):
    out = tiny_llada.generate(prompt, max_new_tokens=4, num_beams=1, repetition_penalty=1.0, output_scores=False,
                              logits_processor=LogitsProcessorList(), stopping_criteria=StoppingCriteriaList(),
                              use_cache=True, stop_at_eos=False)
    assert out.shape == (2, 8)


def test_unset_block_length_adapts_to_max_new_tokens(tiny_llada, prompt):
    tiny_llada.generation_config = MaskedDiffusionGenerationConfig(max_new_tokens=24, steps=24, block_length=8)
    counter = CallCounter(tiny_llada)
    out = tiny_llada.generate(prompt, max_new_tokens=10, stop_at_eos=False, return_dict_in_generate=True)
    assert out.sequences.shape == (2, 14) and not (out.sequences == MASK).any()
    assert counter.calls == 10  # blocks of 5 (largest divisor of 10 within 8), steps capped at the 10 tokens
    with pytest.raises(ValueError, match="block_length"):  # a block length the caller passed is never changed
        tiny_llada.generate(prompt, max_new_tokens=10, block_length=8)


def test_temperature_zero_logs_no_warning(tiny_llada, prompt, caplog):
    caplog.set_level(logging.WARNING)
    tiny_llada.generate(prompt, max_new_tokens=4, temperature=0.0, top_p=0.9, top_k=5)
    tiny_llada.generate(prompt, max_new_tokens=4, do_sample=False, temperature=0.7)
    assert not [r for r in caplog.records if "temperature" in r.getMessage() or "top_" in r.getMessage()]


@pytest.mark.parametrize("kwargs, name", [
    (dict(temperature=float("nan")), "temperature"), (dict(temperature=float("inf")), "temperature"),
    (dict(top_p=0.0), "top_p"), (dict(top_p=-0.5), "top_p"), (dict(top_k=0), "top_k"),
    (dict(cfg_scale=float("nan")), "cfg_scale"), (dict(threshold=float("nan")), "threshold"),
    (dict(sampler="maskgit"), "sampler"), (dict(sampler="dream", remasking="random"), "random"),
    (dict(alg="best"), "alg"),
])
def test_out_of_range_sampling_values_are_refused(tiny_llada, prompt, kwargs, name):
    with pytest.raises(ValueError, match=name):
        tiny_llada.generate(prompt, max_new_tokens=4, **kwargs)


@pytest.fixture(scope="module")
def saved_oracle_model(tmp_path_factory):
    from tests.utils.models import save_oracle_llada

    path = tmp_path_factory.mktemp("contract")
    return str(path), save_oracle_llada(path)


def test_pipeline_honours_max_length_and_num_return_sequences(saved_oracle_model):
    path, tok = saved_oracle_model
    generator = pipeline("text-generation", model=path)
    prompt = "the a of"
    out = generator(prompt, max_length=8, return_full_text=False)[0]["generated_text"]
    assert len(out.split()) == 8 - 3
    samples = generator(prompt, num_return_sequences=3, do_sample=True, temperature=1.0, return_full_text=False)
    assert len(samples) == 3 and all(len(s["generated_text"].split()) == 6 for s in samples)
    with pytest.raises(ValueError, match="num_beams"):
        generator(prompt, num_beams=2)
