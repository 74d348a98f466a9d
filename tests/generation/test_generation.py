"""Masked-diffusion decoding: batching, blocks, threshold decoding, the improvement switches, the sampling maths,
settings round trips and input errors (fidelity to the authors' samplers: test_sampler_fidelity.py)."""

import pytest
import torch
from tests.utils.models import CallCounter

from hf_dlm import MaskedDiffusionGenerationConfig
from hf_dlm.generation.sampling import (add_gumbel_noise, confidence_scores, filter_logits, num_transfer_tokens,
                                        select_above_threshold, select_top, trim_after_eos)

MASK = 95


def test_mask_token_and_padded_rows_are_never_proposed(tiny_llada):
    bias = torch.zeros(100)
    bias[95], bias[97] = 100.0, 90.0  # the mask id and a padded row (vocab_size 96 < embedding_size 100) dominate
    tiny_llada.model.transformer.ff_out.bias = torch.nn.Parameter(bias)
    out = tiny_llada.generate(torch.randint(0, 90, (2, 3)), max_new_tokens=8, steps=4, stop_at_eos=False,
                              suppress_mask_token=True)
    assert ((out[:, 3:] != 95) & (out[:, 3:] < 96)).all()
    raw = tiny_llada.generate(torch.randint(0, 90, (2, 3)), max_new_tokens=8, steps=4, stop_at_eos=False)
    assert (raw[:, 3:] == 95).all()  # the authors' behaviour (default): the "decoded" mask leaves the position masked


def test_left_padded_batch_equals_one_by_one(tiny_llada):
    model = tiny_llada.double()
    gen = torch.Generator().manual_seed(5)
    prompts = [torch.randint(0, 90, (n,), generator=gen) for n in (3, 7, 5)]
    width = max(len(p) for p in prompts)
    batch = torch.full((3, width), 94)
    mask = torch.zeros(3, width, dtype=torch.long)
    for i, p in enumerate(prompts):
        batch[i, width - len(p):], mask[i, width - len(p):] = p, 1
    settings = dict(max_new_tokens=8, steps=8, block_length=4, stop_at_eos=False)
    together = model.generate(batch, attention_mask=mask, **settings)
    for i, p in enumerate(prompts):
        alone = model.generate(p[None], **settings)
        assert torch.equal(together[i, width:], alone[0, len(p):])


def test_one_step_per_block_calls_the_model_once_per_block(tiny_llada):
    counter = CallCounter(tiny_llada)
    out = tiny_llada.generate(torch.randint(0, 90, (2, 4)), max_new_tokens=12, steps=3, block_length=4,
                              return_dict_in_generate=True, stop_at_eos=False)
    assert counter.calls == 3 and out.nfe == 3
    assert not (out.sequences == MASK).any()


def test_threshold_decoding_lowers_nfe_and_reports_it(tiny_llada):
    prompt = torch.randint(0, 90, (1, 4))
    base = tiny_llada.generate(prompt, max_new_tokens=8, steps=8, return_dict_in_generate=True, stop_at_eos=False)
    counter = CallCounter(tiny_llada)
    fast = tiny_llada.generate(prompt, max_new_tokens=8, steps=8, threshold=0.0, return_dict_in_generate=True,
                               stop_at_eos=False)
    assert base.nfe == 8
    assert fast.nfe == counter.calls == 1  # threshold 0: every masked token is confident enough at once
    medium = tiny_llada.generate(prompt, max_new_tokens=8, steps=8, threshold=0.03, return_dict_in_generate=True,
                                 stop_at_eos=False)
    assert 1 <= medium.nfe <= 8 and not (medium.sequences == MASK).any()


def test_history_streamer_and_remasking_variants(tiny_llada):
    class Recorder:
        def __init__(self):
            self.puts, self.drafts, self.ended = [], [], False

        def put(self, value):
            self.puts.append(value.clone())

        def put_draft(self, value):
            self.drafts.append(value.clone())

        def end(self):
            self.ended = True

    streamer = Recorder()
    out = tiny_llada.generate(torch.randint(0, 90, (1, 3)), max_new_tokens=8, steps=4, block_length=4,
                              streamer=streamer, output_history=True, return_dict_in_generate=True, stop_at_eos=False)
    assert len(out.history) == 4 and streamer.ended and len(streamer.drafts) == 4
    assert torch.equal(out.history[-1], out.sequences)
    assert (out.history[0] == MASK).sum() == 8 - 2  # 2 tokens committed per step
    assert torch.equal(torch.cat([p.view(-1) for p in streamer.puts]), out.sequences[0])
    for remasking in ("random", "margin", "entropy", "origin"):
        seq = tiny_llada.generate(torch.randint(0, 90, (2, 3)), max_new_tokens=8, steps=4, remasking=remasking,
                                  do_sample=True, temperature=1.0, top_k=20, top_p=0.9, stop_at_eos=False)
        assert seq.shape == (2, 11) and not (seq == MASK).any()
    seq = tiny_llada.generate(torch.randint(0, 90, (2, 3)), max_new_tokens=8, steps=4, alg_temp=0.5,
                              stop_at_eos=False)
    assert not (seq == MASK).any()


def test_sampling_is_reproducible_with_a_generator(tiny_llada):
    prompt = torch.randint(0, 90, (2, 3))
    runs = [tiny_llada.generate(prompt, max_new_tokens=8, steps=4, temperature=1.0, stop_at_eos=False,
                                generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(*runs)


def test_eos_stops_and_trims(tiny_llada):
    eos = 93
    bias = torch.zeros(100)
    bias[eos] = 100.0  # the model now always proposes EOS
    tiny_llada.model.transformer.ff_out.bias = torch.nn.Parameter(bias)
    counter = CallCounter(tiny_llada)
    prompt = torch.randint(0, 90, (2, 3))
    out = tiny_llada.generate(prompt, max_new_tokens=12, steps=12, block_length=4,
                              return_dict_in_generate=True, eos_token_id=eos, pad_token_id=94)
    # EOS everywhere: decoding stops once each row's first EOS has no mask before it (later blocks and the rest of
    # block 1 are not generated), which cannot change the returned tokens
    assert counter.calls < 4 and out.nfe == counter.calls
    assert out.sequences.shape == (2, 4)  # prompt + first EOS; trailing padding columns are cut
    assert (out.sequences[:, 3] == eos).all()
    full = tiny_llada.generate(prompt, max_new_tokens=12, steps=12, block_length=4, eos_token_id=eos,
                               pad_token_id=94, stop_at_eos=False)
    assert torch.equal(out.sequences, trim_after_eos(full, 3, [eos], 94))


def test_trim_after_eos_by_hand():
    seq = torch.tensor([[1, 2, 5, 9, 7, 9], [1, 2, 4, 4, 4, 4]])
    out = trim_after_eos(seq, prompt_length=2, eos_token_ids=[9], pad_token_id=0)
    assert out.tolist() == [[1, 2, 5, 9, 0, 0], [1, 2, 4, 4, 4, 4]]
    out = trim_after_eos(torch.tensor([[1, 9, 3, 3], [1, 4, 9, 3]]), 1, [9], 0)
    assert out.tolist() == [[1, 9, 0], [1, 4, 9]]


def test_num_transfer_tokens_by_hand():
    mask = torch.tensor([[True] * 10, [True] * 3 + [False] * 7])
    assert num_transfer_tokens(mask, 4).tolist() == [[3, 3, 2, 2], [1, 1, 1, 0]]


def test_gumbel_noise_samples_the_tempered_distribution():
    logits = torch.tensor([[1.0, 0.0, -1.0]]).expand(40000, 3)
    gen = torch.Generator().manual_seed(0)
    for tau in (1.0, 0.5):
        picks = add_gumbel_noise(logits, tau, gen).argmax(-1)
        freq = torch.bincount(picks, minlength=3).double() / len(picks)
        expected = torch.softmax(torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64) / tau, -1)
        assert torch.allclose(freq, expected, atol=0.01)
    assert add_gumbel_noise(logits, 1.0, gen).dtype == torch.float64
    assert torch.equal(add_gumbel_noise(logits, 0.0), logits)


def test_scores_and_filters_by_hand():
    logits = torch.log(torch.tensor([[[0.5, 0.3, 0.2]]]))
    proposal = torch.tensor([[1]])
    assert confidence_scores(logits, proposal, "low_confidence").item() == pytest.approx(0.3)
    assert confidence_scores(logits, proposal, "margin").item() == pytest.approx(0.2)
    entropy = -(0.5 * torch.log(torch.tensor(0.5)) + 0.3 * torch.log(torch.tensor(0.3)) + 0.2 * torch.log(torch.tensor(0.2)))
    assert confidence_scores(logits, proposal, "entropy").item() == pytest.approx(-entropy.item(), rel=1e-6)
    assert torch.isinf(filter_logits(logits, top_k=2)[0, 0, 2])
    kept = torch.isfinite(filter_logits(logits, top_p=0.6))[0, 0].tolist()
    assert kept == [True, True, False]  # 0.5 < 0.6, so the nucleus needs the second token too
    conf = torch.tensor([[0.9, float("-inf"), 0.2, 0.95], [0.1, 0.2, float("-inf"), 0.05]])
    assert select_top(conf, torch.tensor([2, 1])).tolist() == [[True, False, False, True], [False, True, False, False]]
    assert select_above_threshold(conf, 0.5).tolist() == [[True, False, False, True], [False, True, False, False]]


def test_generation_settings_round_trip(tmp_path):
    config = MaskedDiffusionGenerationConfig(max_new_tokens=64, steps=32, block_length=16, remasking="margin",
                                             threshold=0.9, cfg_scale=0.5, temperature=0.7, top_k=5)
    assert config.do_sample  # temperature > 0 turns sampling on
    config.save_pretrained(tmp_path)
    loaded = MaskedDiffusionGenerationConfig.from_pretrained(tmp_path)
    assert loaded == config and loaded.remasking == "margin" and loaded.threshold == 0.9


@pytest.mark.parametrize("kwargs, match", [
    (dict(max_new_tokens=10, block_length=4), "divisible by `block_length`"),
    (dict(max_new_tokens=12, block_length=4, steps=4), "divisible by the number of blocks"),
    (dict(steps=0), "steps"),
    (dict(remasking="best"), "remasking"),
    (dict(remasking="random", threshold=0.9), "threshold"),
    (dict(pad_token_id=95), "pad_token_id"),
    (dict(unknown_knob=1), "unknown_knob"),
])
def test_bad_generation_input_raises(tiny_llada, kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_llada.generate(torch.randint(0, 90, (1, 3)), **kwargs)


def test_missing_mask_token_raises():
    from hf_dlm import get_mask_token_id

    with pytest.raises(ValueError, match="mask_token_id"):
        get_mask_token_id(torch.nn.Linear(2, 2))


def test_streamer_needs_batch_of_one(tiny_llada):
    with pytest.raises(ValueError, match="batch size 1"):
        tiny_llada.generate(torch.randint(0, 90, (2, 3)), streamer=object(), max_new_tokens=4)
