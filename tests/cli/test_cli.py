"""The hf-dlm command: every verb end to end on tiny artifacts, its --help examples and its exit codes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.utils.models import TINY_QUANT, tiny_llada_config
from huggingface_hub import ModelCard
from PIL import Image

from hf_dlm import LLaDAModelLM, LogitFMConfig, LogitFMModel, QuantDLLMConfig, QuantDLLMQuantizer
from hf_dlm._io import save_atomically
from hf_dlm.cli import build_parser, main
from hf_dlm.evaluation.oracle import OracleLanguage
from hf_dlm.pipelines import MaskedImagePipeline
from hf_dlm.recipes.digits import build_digits_pipeline

VERBS = ["demo", "generate", "generate-image", "distill", "quantize", "eval", "push", "card", "add-to-cache", "app"]
ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def oracle():
    return OracleLanguage(num_words=91)


@pytest.fixture(scope="module")
def text_model(tmp_path_factory, oracle):
    """A tiny LLaDA with the oracle tokenizer, saved."""
    tokenizer = oracle.tokenizer()
    torch.manual_seed(0)
    model = LLaDAModelLM(tiny_llada_config(vocab_size=len(tokenizer), embedding_size=len(tokenizer),
                                           mask_token_id=tokenizer.mask_token_id, pad_token_id=tokenizer.pad_token_id,
                                           eos_token_id=tokenizer.eos_token_id,
                                           bos_token_id=tokenizer.bos_token_id)).eval()
    folder = tmp_path_factory.mktemp("cli") / "llada"
    save_atomically(folder, model, tokenizer)
    return folder, model, tokenizer


@pytest.fixture(scope="module")
def image_pipeline(tmp_path_factory):
    pipe = build_digits_pipeline(hidden_size=32, num_layers=1, text_hidden_size=32)
    folder = tmp_path_factory.mktemp("cli") / "digits"
    pipe.save_pretrained(folder)
    return folder


def test_help_lists_every_verb_with_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert all(verb in text for verb in VERBS) and "exit codes" in text
    for verb in VERBS:
        with pytest.raises(SystemExit):
            main([verb, "--help"])
        assert f"hf-dlm {verb}" in capsys.readouterr().out.split("example", 1)[1]  # a real example of the verb


def test_generate_matches_the_library(text_model, capsys):
    folder, model, tokenizer = text_model
    words = " ".join(OracleLanguage(num_words=91).words[3:6])
    assert main(["generate", str(folder), "--prompt", words, "--max-new-tokens", "8", "--steps", "4",
                 "--temperature", "1.0", "--seed", "3"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    prompt = tokenizer([words], return_tensors="pt")
    expected = model.generate(prompt.input_ids, attention_mask=prompt.attention_mask, max_new_tokens=8, steps=4,
                              temperature=1.0, do_sample=True, generator=torch.Generator().manual_seed(3))
    assert printed == [tokenizer.decode(expected[0, prompt.input_ids.shape[1]:], skip_special_tokens=True).strip()]
    assert main(["generate", str(folder), "--prompt-ids", "3,4", "--max-new-tokens", "4", "--steps", "2"]) == 0
    ids = capsys.readouterr().out.strip()
    assert ids and "," not in ids  # decoded text, since the folder has a tokenizer


def test_generate_logit_fm_and_bad_input(tmp_path, text_model, image_pipeline, capsys):
    torch.manual_seed(0)
    model = LogitFMModel(LogitFMConfig(vocab_size=30, hidden_size=32, num_hidden_layers=1, num_attention_heads=2))
    model.save_pretrained(tmp_path / "lfm")
    assert main(["generate", str(tmp_path / "lfm"), "--prompt-ids", "1,2", "--max-new-tokens", "6",
                 "--scheme", "hybrid", "--num-steps", "4"]) == 0
    tokens = capsys.readouterr().out.strip().split(",")
    assert len(tokens) == 6 and all(0 <= int(t) < 30 for t in tokens)
    folder = str(text_model[0])
    assert main(["generate", folder, "--scheme", "ode"]) == 2  # a Logit-FM setting on a masked-diffusion model
    assert "--scheme" in capsys.readouterr().err
    assert main(["generate", str(tmp_path / "lfm"), "--prompt", "hello"]) == 2  # no tokenizer
    assert main(["generate", folder, "--prompt-ids", "1,x"]) == 2
    assert main(["generate", str(image_pipeline)]) == 2
    assert "generate-image" in capsys.readouterr().err
    assert main(["generate", "hf-dlm-test/does-not-exist"]) == 3


def test_generate_image_writes_the_pipeline_images(image_pipeline, tmp_path, capsys):
    out = tmp_path / "img" / "seven.png"
    assert main(["generate-image", str(image_pipeline), "--prompt", "a handwritten seven", "--steps", "2",
                 "--num-images", "2", "--seed", "1", "--output", str(out)]) == 0
    paths = capsys.readouterr().out.split()
    assert paths == [str(tmp_path / "img" / "seven-0.png"), str(tmp_path / "img" / "seven-1.png")]
    pipe = MaskedImagePipeline.from_pretrained(image_pipeline)
    expected = pipe(prompt=["a handwritten seven"], num_inference_steps=2, num_images_per_prompt=2,
                    generator=torch.Generator().manual_seed(1)).images
    for path, image in zip(paths, expected):  # viewable by default: 32x nearest-neighbour, dark ink on white
        saved = Image.open(path)
        assert saved.size == (256, 256)
        assert np.array_equal(np.asarray(saved)[::32, ::32], 255 - np.asarray(image))
    raw = tmp_path / "raw.png"  # --raw: the decoder's exact 8x8 pixels
    assert main(["generate-image", str(image_pipeline), "--prompt", "a handwritten seven", "--steps", "2",
                 "--seed", "1", "--raw", "--output", str(raw)]) == 0
    alone = pipe(prompt=["a handwritten seven"], num_inference_steps=2,
                 generator=torch.Generator().manual_seed(1)).images[0]
    assert Image.open(raw).size == (8, 8) and np.array_equal(np.asarray(Image.open(raw)), np.asarray(alone))
    scaled = tmp_path / "scaled.png"
    assert main(["generate-image", str(image_pipeline), "--prompt", "a handwritten seven", "--steps", "2",
                 "--seed", "1", "--scale", "3", "--output", str(scaled)]) == 0
    assert Image.open(scaled).size == (24, 24)
    assert main(["generate-image", str(image_pipeline), "--prompt", "x", "--raw", "--scale", "4"]) == 2
    assert "--raw" in capsys.readouterr().err
    assert main(["generate-image", str(image_pipeline), "--prompt", "x", "--class-label", "1"]) == 2
    assert main(["generate-image", str(image_pipeline), "--prompt", "x", "--output", "x.jpg"]) == 2
    assert main(["generate-image", str(tmp_path)]) == 2  # neither a prompt nor a label


def test_distill_text_from_a_config_file(text_model, tmp_path, capsys):
    folder, _, _ = text_model
    config = {"teacher": str(folder), "conditions": {"prompts": ["w3 w4", "w5"]},
              "dimo": {"output_dir": str(tmp_path / "dimo"), "max_steps": 2, "per_device_train_batch_size": 2,
                       "generation_length": 8, "memory_mode": "lora", "lora_r": 4, "r_init": 0.5,
                       "report_to": [], "use_cpu": True, "save_strategy": "no", "disable_tqdm": True}}
    path = tmp_path / "dimo.json"
    path.write_text(json.dumps(config))
    assert main(["distill", str(path)]) == 0
    student = tmp_path / "dimo" / "generator"
    assert str(student) in capsys.readouterr().out
    saved = json.loads((student / "config.json").read_text())
    assert saved["dimo_initial_state"]["r_init"] == 0.5
    assert json.loads((student / "generation_config.json").read_text())["steps"] == 1
    assert ModelCard.load(student / "README.md").data.tags[:2] == ["hf-dlm", "dimo"]
    assert main(["generate", str(student), "--prompt", "w3"]) == 0  # the one-step generator runs
    # bad configs
    path.write_text(json.dumps({**config, "extra": 1}))
    assert main(["distill", str(path)]) == 2
    path.write_text(json.dumps({**config, "dimo": {**config["dimo"], "r_init": 2.0}}))
    assert main(["distill", str(path)]) == 2
    assert "r_init" in capsys.readouterr().err
    path.write_text(json.dumps({**config, "conditions": {"class_labels": [1]}}))
    assert main(["distill", str(path)]) == 2
    assert main(["distill", str(tmp_path / "missing.json")]) == 3


def test_distill_image_pipeline_with_captions(image_pipeline, tmp_path):
    config = {"teacher": str(image_pipeline), "conditions": {"captions": ["a seven", "a one"]},
              "output": str(tmp_path / "one-step"),
              "dimo": {"output_dir": str(tmp_path / "dimo"), "max_steps": 1, "per_device_train_batch_size": 2,
                       "memory_mode": "lora", "lora_r": 4, "teacher_cfg_scale": 1.5, "report_to": [],
                       "use_cpu": True, "save_strategy": "no", "disable_tqdm": True}}
    (tmp_path / "dimo.json").write_text(json.dumps(config))
    assert main(["distill", str(tmp_path / "dimo.json")]) == 0
    pipe = MaskedImagePipeline.from_pretrained(tmp_path / "one-step")
    assert pipe.transformer.config.dimo_initial_state["r_init"] == 0.6
    assert ModelCard.load(tmp_path / "one-step" / "README.md").data.pipeline_tag == "text-to-image"
    assert main(["generate-image", str(tmp_path / "one-step"), "--prompt", "a seven", "--steps", "1",
                 "--output", str(tmp_path / "one.png")]) == 0


def test_quantize_matches_the_library(text_model, oracle, tmp_path, capsys):
    folder, _, tokenizer = text_model
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(tokenizer.decode(row) for row in oracle.sample(16, 30, seed=0).tolist()))
    argv = [f"--{k.replace('_', '-')}={v}" for k, v in TINY_QUANT.items()]
    assert main(["quantize", str(folder), str(tmp_path / "q"), "--calibration", str(corpus), *argv]) == 0
    assert "bits per weight" in capsys.readouterr().out
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "q").eval()
    reference = AutoModelForCausalLM.from_pretrained(folder).eval()
    QuantDLLMQuantizer(QuantDLLMConfig(**TINY_QUANT)).quantize_model(reference, tokenizer=tokenizer,
                                                                calibration_data=str(corpus), show_progress=False)
    ids = torch.randint(0, 90, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, reference(ids).logits)
    card = ModelCard.load(tmp_path / "q" / "README.md")
    assert "quant-dllm" in card.data.tags and card.data.eval_results[0].metric_type == "bits_per_weight"
    (tmp_path / "bad.json").write_text(json.dumps({"bogus": 1}))
    assert main(["quantize", str(folder), str(tmp_path / "q2"), "--config", str(tmp_path / "bad.json")]) == 2
    assert "bogus" in capsys.readouterr().err
    assert main(["quantize", str(folder), str(tmp_path / "q2"), "--calibration", str(tmp_path / "none.txt")]) == 3
    assert not (tmp_path / "q2").exists()


def test_card_quotes_a_benchmark_and_keeps_metrics(text_model, tmp_path, capsys):
    folder = tmp_path / "llada"
    import shutil

    shutil.copytree(text_model[0], folder)
    assert main(["card", str(folder), "--repo-id", "my-org/tiny", "--benchmark",
                 str(ROOT / "benchmarks/results/quality_vs_steps.json"), "--row", "masked diffusion",
                 "--steps", "64"]) == 0
    card = ModelCard.load(folder / "README.md")
    values = {r.metric_type: r.metric_value for r in card.data.eval_results}
    rows = json.loads((ROOT / "benchmarks/results/quality_vs_steps.json").read_text())["rows"]
    row = next(r for r in rows if r["model"] == "masked diffusion" and r["steps"] == 64)
    assert values["perplexity"] == round(row["gen_ppl"], 4) and values["entropy"] == round(row["entropy"], 4)
    assert 'from_pretrained("my-org/tiny")' in card.content
    assert main(["card", str(folder)]) == 0  # refreshed: the measured metrics stay
    assert len(ModelCard.load(folder / "README.md").data.eval_results) == len(card.data.eval_results)
    capsys.readouterr()
    broken = tmp_path / "t.md"
    broken.write_text("{{ card_data }} {{ usage }}")
    assert main(["card", str(folder), "--template", str(broken)]) == 2
    assert "missing required field" in capsys.readouterr().err
    assert main(["card", str(folder), "--row", "x"]) == 2
    assert main(["card", str(folder), "--benchmark", str(ROOT / "benchmarks/results/dimo.json"),
                 "--row", "nobody"]) == 2
    assert main(["card", str(tmp_path)]) == 2  # not a saved artifact


@pytest.mark.hub
def test_push_verb_against_the_test_hub(text_model, tmp_path):
    from tests.utils.hub_server import HubServer

    server = HubServer().start()
    try:
        env = {**os.environ, "HF_ENDPOINT": server.url, "HF_HUB_OFFLINE": "0", "HF_TOKEN": "hf_test_token",
               "HF_HUB_CACHE": str(tmp_path / "cache"), "HF_HUB_DISABLE_TELEMETRY": "1"}
        result = subprocess.run([sys.executable, "-m", "hf_dlm.cli", "push", str(text_model[0]), "org/cli-llada",
                                 "--commit-message", "tiny"], env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "org/cli-llada" in result.stdout
        repo = server.repos["org/cli-llada"]
        assert len(repo.commit_files) == 2  # the repository's first commit plus the push
        assert {"README.md", "config.json", "model.safetensors", "generation_config.json",
                "tokenizer.json"} <= set(repo.commit_files[1])
        card = repo.files["README.md"].decode()
        assert 'from_pretrained("org/cli-llada")' in card and "# cli-llada" in card
        bad = subprocess.run([sys.executable, "-m", "hf_dlm.cli", "push", str(tmp_path), "org/x"], env=env,
                             capture_output=True, text=True, timeout=300)
        assert bad.returncode == 2 and "not a saved artifact" in bad.stderr
    finally:
        server.stop()
    assert main(["push", str(text_model[0]), "not/a/valid/id"]) == 2


def test_parser_is_importable_without_running():
    parser = build_parser()
    assert parser.prog == "hf-dlm"
