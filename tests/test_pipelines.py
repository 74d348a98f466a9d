"""transformers pipelines drive our models: text-generation (with the pipeline's injected defaults) and fill-mask."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

from hf_dlm import MaskedDiffusionGenerationConfig, denoise
from hf_dlm.evaluation.oracle import OracleLanguage


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    from conftest import tiny_llada_config

    from hf_dlm import LLaDAModelLM

    tok = OracleLanguage().tokenizer()
    torch.manual_seed(0)
    model = LLaDAModelLM(tiny_llada_config(vocab_size=len(tok), embedding_size=len(tok), n_kv_heads=4,
                                           mask_token_id=tok.mask_token_id, pad_token_id=tok.pad_token_id,
                                           eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id))
    model.generation_config = MaskedDiffusionGenerationConfig(max_new_tokens=6, steps=6, block_length=3,
                                                              suppress_tokens=tok.all_special_ids)
    path = tmp_path_factory.mktemp("tiny_llada")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path, tok


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


def test_demo_runs_end_to_end(tmp_path):
    from hf_dlm._demo import run_demo

    lines = []
    figures = run_demo(output_dir=str(tmp_path / "demo"), max_steps=3, max_seconds=60, batch_size=16,
                       report=lines.append)
    printed = "\n".join(lines)
    assert "data (held-out continuations)" in printed and "pipeline('text-generation')" in printed
    assert (tmp_path / "demo" / "generation_config.json").exists() and (tmp_path / "demo" / "tokenizer.json").exists()
    assert figures["train_steps"] == 3 and figures["model_nll_steps24"] > 0
    assert AutoTokenizer.from_pretrained(tmp_path / "demo").mask_token == "<mask>"
    assert "Quant-dLLM 2-bit" in printed and (tmp_path / "demo-2bit" / "model.safetensors").exists()
    assert figures["quantized_nll_steps12"] > 0 and figures["quantized_bits_per_weight"] > 2


def test_image_demo_runs_end_to_end(tmp_path):
    from hf_dlm._demo import run_image_demo

    lines = []
    figures = run_image_demo(output_dir=str(tmp_path / "demo-digits"), max_steps=2, report=lines.append)
    assert figures["image_steps"] == 2 and 0 <= figures["class_consistency_steps16"] <= 1
    assert (tmp_path / "digits_grid.png").exists() and (tmp_path / "demo-digits" / "model_index.json").exists()
    assert any("text-to-image" in line for line in lines)
