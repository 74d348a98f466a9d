"""A tiny checkpoint in the exact Dream-v0-7B layout loads through the Auto classes without remote code; its
raw logits equal an independent plain-torch Qwen2-style bidirectional forward, and the denoiser contract shifts
them so that position i predicts token i."""

import json

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, pipeline

from hf_dlm import DreamConfig, DreamForMaskedLM, DreamModel, denoise
from hf_dlm.denoiser import predicts_next_token

from tests.utils.dream_layout import KV_HEADS, MASK, REAL_LAYOUT_CONFIG, _state_dict, plain_dream_forward


@pytest.fixture(scope="module")
def dream_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("dream7b_layout")
    (path / "config.json").write_text(json.dumps(REAL_LAYOUT_CONFIG, indent=2))
    sd = _state_dict(torch.Generator().manual_seed(0))
    save_file(sd, str(path / "model.safetensors"), metadata={"format": "pt"})
    return path, sd


@pytest.mark.parametrize("auto_class, expected", [(AutoModel, DreamModel), (AutoModelForCausalLM, DreamModel),
                                                  (AutoModelForMaskedLM, DreamForMaskedLM)])
def test_real_layout_loads_and_matches_plain_forward_with_shift(dream_checkpoint, auto_class, expected):
    path, sd = dream_checkpoint
    model = auto_class.from_pretrained(path, dtype=torch.float64).eval()
    assert type(model) is expected
    ids = torch.randint(0, 120, (2, 11), generator=torch.Generator().manual_seed(1))
    raw = plain_dream_forward(sd, ids)
    aligned = torch.cat([raw[:, :1], raw[:, :-1]], dim=1)  # Dream: hidden state i-1 predicts token i
    with torch.no_grad():
        logits, contract = model(ids).logits, denoise(model, ids)
    torch.testing.assert_close(logits, raw if expected is DreamModel else aligned, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(contract, aligned, rtol=1e-5, atol=1e-5)
    assert predicts_next_token(model) is (expected is DreamModel)


def test_config_fields(dream_checkpoint):
    config = AutoConfig.from_pretrained(dream_checkpoint[0])
    assert isinstance(config, DreamConfig) and config.model_type == "Dream"
    assert (config.num_key_value_heads, config.mask_token_id, config.tie_word_embeddings) == (KV_HEADS, MASK, False)
    assert DreamConfig().mask_token_id == 151666


def test_round_trip_and_generation(tmp_path, tiny_dream):
    tiny_dream.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, 90, (2, 8))
    assert torch.equal(reloaded(ids).logits, tiny_dream(ids).logits)
    out = reloaded.generate(ids, max_new_tokens=6, steps=3, return_dict_in_generate=True, stop_at_eos=False)
    assert out.sequences.shape == (2, 14) and out.nfe == 3
    assert not (out.sequences == 95).any()  # every mask was filled


def test_fill_mask_pipeline_uses_aligned_logits(dream_checkpoint):
    from hf_dlm.evaluation.oracle import OracleLanguage

    tokenizer = OracleLanguage(num_words=120).tokenizer()  # ids 0..124; mask id 121 in this tokenizer
    path, _ = dream_checkpoint
    model = AutoModelForMaskedLM.from_pretrained(path).eval()
    model.config.mask_token_id = tokenizer.mask_token_id
    fill = pipeline("fill-mask", model=model, tokenizer=tokenizer)
    text = "the <mask> of"
    best = fill(text, top_k=3)
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        probs = denoise(model, ids)[0, 1].softmax(-1)
    assert [b["token"] for b in best] == probs.topk(3).indices.tolist()
    assert best[0]["score"] == pytest.approx(float(probs.max()), rel=1e-5)


def test_dream_diffusion_generate_entry_point(tiny_dream):
    prompt = torch.randint(0, 90, (1, 4))
    out = tiny_dream.diffusion_generate(prompt, max_new_tokens=6, steps=6, alg="entropy", alg_temp=0.0,
                                        return_dict_in_generate=True, output_history=True, stop_at_eos=False)
    expected = tiny_dream.generate(prompt, max_new_tokens=6, steps=6, remasking="entropy", stop_at_eos=False)
    assert torch.equal(out.sequences, expected) and len(out.history) == 6
    with pytest.raises(ValueError, match="alg"):
        tiny_dream.diffusion_generate(prompt, alg="best")


def test_text_diffusion_streamer_shows_drafts(tiny_llada, capsys):
    from transformers import TextDiffusionStreamer

    from hf_dlm.evaluation.oracle import OracleLanguage

    tokenizer = OracleLanguage(num_words=92).tokenizer()  # ids 0..96 cover the tiny model's vocabulary
    streamer = TextDiffusionStreamer(tokenizer)
    out = tiny_llada.generate(torch.randint(0, 90, (1, 3)), max_new_tokens=4, steps=4, streamer=streamer,
                              stop_at_eos=False)
    printed = capsys.readouterr().out
    assert "\x1b[33m" in printed  # drafts are printed in yellow, then overwritten
    assert tokenizer.decode(out[0, 3:]).strip().split()[-1] in printed
