"""transformers pipelines drive our models: text-generation (with the pipeline's injected defaults) and fill-mask."""

import re

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

from hf_dlm import denoise


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    from tests.utils.models import save_oracle_llada

    path = tmp_path_factory.mktemp("tiny_llada")
    return path, save_oracle_llada(path)


def test_text_generation_pipeline_from_a_path(saved_model):
    path, tok = saved_model
    generator = pipeline("text-generation", model=str(path))
    model = AutoModelForCausalLM.from_pretrained(path)
    prompt = "the a of"
    text = generator(prompt)[0]["generated_text"]
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    expected = prompt + tok.decode(model.generate(ids)[0, 3:])  # greedy: the saved config is not sampling
    assert text == expected
    assert len(text.split()) == 3 + 6


def test_pipeline_defaults_do_not_override_saved_settings(saved_model):
    path, _ = saved_model
    generator = pipeline("text-generation", model=str(path))
    out = generator("the", return_full_text=False)[0]["generated_text"]
    assert len(out.split()) == 6  # not the pipeline's max_new_tokens=256
    sampled = generator("the", do_sample=True, temperature=1.0, max_new_tokens=3, steps=3, block_length=3,
                        return_full_text=False)[0]["generated_text"]
    assert len(sampled.split()) == 3


def test_batched_pipeline_left_pads(saved_model):
    path, tok = saved_model
    generator = pipeline("text-generation", model=str(path), batch_size=2)
    prompts = ["the", "a of the in"]
    together = generator(prompts, return_full_text=False)
    alone = [generator(p, return_full_text=False)[0] for p in prompts]
    assert [t[0]["generated_text"] for t in together] == [a["generated_text"] for a in alone]


def test_fill_mask_pipeline_on_llada(saved_model):
    path, tok = saved_model
    model = AutoModelForCausalLM.from_pretrained(path)
    fill = pipeline("fill-mask", model=str(path))
    best = fill("the <mask> of", top_k=2)
    ids = tok("the <mask> of", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        probs = denoise(model, ids)[0, 1].softmax(-1)
    assert [b["token"] for b in best] == probs.topk(2).indices.tolist()


@pytest.mark.slow
def test_demo_verb_runs_end_to_end(tmp_path, capsys):
    """`hf-dlm demo`: both parts, tiny budgets; what it prints and what it saves."""
    from hf_dlm.cli import main

    assert main(["demo", "--output-dir", str(tmp_path / "demo"), "--max-steps", "3", "--batch-size", "16",
                 "--image-steps", "2"]) == 0
    printed = capsys.readouterr().out
    assert "trained 3 steps in" in printed and "trained 2 steps in" in printed
    assert "data (held-out continuations)" in printed and "pipeline('text-generation')" in printed
    assert (tmp_path / "demo" / "generation_config.json").exists() and (tmp_path / "demo" / "tokenizer.json").exists()
    assert AutoTokenizer.from_pretrained(tmp_path / "demo").mask_token == "<mask>"
    bits = re.search(r"([0-9.]+) with fp16 scales", printed)
    assert "Quant-dLLM 2-bit" in printed and (tmp_path / "demo-2bit" / "model.safetensors").exists()
    assert bits is not None and float(bits.group(1)) > 2
    assert "text-to-image" in printed and re.search(r"16 steps: [01]\.[0-9]{2} / ", printed)
    assert (tmp_path / "digits_grid.png").exists() and (tmp_path / "demo-digits" / "model_index.json").exists()
    for folder in ("demo", "demo-2bit", "demo-digits"):  # every saved artifact carries its card
        assert (tmp_path / folder / "README.md").exists()
    assert main(["demo", "--max-steps", "0"]) == 2
