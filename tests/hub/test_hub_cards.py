"""Model cards for every artifact kind: metadata round-trips through ModelCard.load with the benchmark metrics, the
usage snippets run, templates are checked; auto_map tells users without the plugin what to install."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tests.utils.models import tiny_llada_config, tiny_quantized_llada
from huggingface_hub import EvalResult, ModelCard

from hf_dlm import LLaDAModelLM, LogitFMConfig, LogitFMModel
from hf_dlm._io import save_atomically
from hf_dlm.evaluation.oracle import OracleLanguage
from hf_dlm.hub import (KINDS, CardTemplateError, add_to_cache, card_kind, check_template,
                        eval_results_from_benchmark, model_card, push_to_hub, set_card_metadata, usage_snippet,
                        write_model_card)
from hf_dlm.hub.templates import template_text
from hf_dlm.recipes.digits import build_digits_pipeline
from hf_dlm.quantization import quantization_report
from hf_dlm.training.dimo import ConditionDataset, DiMOConfig, DiMOTrainer

ROOT = Path(__file__).parents[2]
RESULTS = ROOT / "benchmarks" / "results"
# (benchmark file, row label, steps) each kind's card quotes
BENCHMARK_ROWS = {
    "diffusion-lm": ("quality_vs_steps.json", "masked diffusion", 64),
    "distilled-generator": ("dimo.json", "Di[M]O student (lora, fkl)", 1),
    "quant-dllm": ("quant_dllm.json", "Quant-dLLM", None),
    "logit-fm": ("logit_fm.json", "Logit-FM (randomized)", 64),
    "image-pipeline": ("digits_text_to_image.json", "steps4_cfg1", None),
}


def _oracle_llada(tokenizer) -> LLaDAModelLM:
    torch.manual_seed(0)
    return LLaDAModelLM(tiny_llada_config(vocab_size=len(tokenizer), embedding_size=len(tokenizer),
                                          mask_token_id=tokenizer.mask_token_id, pad_token_id=tokenizer.pad_token_id,
                                          eos_token_id=tokenizer.eos_token_id,
                                          bos_token_id=tokenizer.bos_token_id)).eval()


def _distilled(tmp_path, tokenizer) -> LLaDAModelLM:
    teacher = _oracle_llada(tokenizer)
    teacher.config._name_or_path = "hf-dlm-test/teacher"  # as if loaded by id: the card names it as base_model
    args = DiMOConfig(output_dir=str(tmp_path / "dimo"), per_device_train_batch_size=2, max_steps=1,
                      generation_length=8, memory_mode="full", report_to=[], use_cpu=True, save_strategy="no",
                      disable_tqdm=True, r_init=0.5)
    trainer = DiMOTrainer(teacher, args, train_dataset=ConditionDataset.from_prompts(torch.full((4, 2), 5)))
    return trainer.get_generator()


def _distilled_pipeline():
    pipe = build_digits_pipeline(hidden_size=32, num_layers=1, text_hidden_size=32)
    pipe.transformer.register_to_config(dimo_initial_state={"r_init": 0.6, "vocab_size": 16})
    return pipe


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """kind → (artifact, saved folder, tokenizer or None), each saved with its benchmark metrics attached."""
    tmp = tmp_path_factory.mktemp("cards")
    tokenizer = OracleLanguage(num_words=91).tokenizer()
    torch.manual_seed(0)
    built = {
        "diffusion-lm": (_oracle_llada(tokenizer), tokenizer),
        "distilled-generator": (_distilled(tmp, tokenizer), tokenizer),
        "quant-dllm": (tiny_quantized_llada(), None),
        "logit-fm": (LogitFMModel(LogitFMConfig(vocab_size=30, hidden_size=32, num_hidden_layers=1,
                                                num_attention_heads=2)).eval(), None),
        "image-pipeline": (build_digits_pipeline(hidden_size=32, num_layers=1, text_hidden_size=32), None),
        "distilled-pipeline": (_distilled_pipeline(), None),
    }
    out = {}
    for name, (artifact, tok) in built.items():
        kind = "distilled-generator" if name == "distilled-pipeline" else name
        if name in BENCHMARK_ROWS:
            file, row, steps = BENCHMARK_ROWS[name]
            set_card_metadata(artifact, eval_results=eval_results_from_benchmark(RESULTS / file, row, steps=steps))
        if name == "quant-dllm":
            set_card_metadata(artifact, base_model="hf-dlm-test/tiny-llada")
        folder = tmp / name
        save_atomically(folder, artifact, *([tok] if tok is not None else []))
        out[name] = (artifact, folder, kind)
    return out


def _expected_metrics(name: str) -> list[tuple]:
    """(metric type, value, config) read by hand from the benchmark JSON."""
    file, row, steps = BENCHMARK_ROWS[name]
    data = json.loads((RESULTS / file).read_text())
    if "results" in data:
        found = [{"model": row, **data["results"][row]}]
    else:
        rows = data["rows"] if "rows" in data else data["text"]["rows"] + data["image"]["rows"]
        found = [r for r in rows if r.get("model", r.get("variant")) == row
                 and (steps is None or r.get("steps", r.get("nfe")) == steps)]
    assert len(found) == 1
    names = {"gen_ppl": "perplexity", "entropy": "entropy", "heldout_nll": "nll", "nll": "nll", "fd_digits": "fd",
             "class_consistency": "accuracy", "precision": "precision", "recall": "recall"}
    r = found[0]
    setting = ", ".join(f"{k}={r[k]}" for k in ("steps", "nfe", "guidance_scale") if r.get(k) is not None) or None
    return [(names[k], round(float(r[k]), 4), setting) for k in names if isinstance(r.get(k), (int, float))]


@pytest.mark.parametrize("name", ["diffusion-lm", "distilled-generator", "quant-dllm", "logit-fm", "image-pipeline",
                                  "distilled-pipeline"])
def test_saved_card_metadata_round_trips(artifacts, name):
    artifact, folder, kind = artifacts[name]
    assert card_kind(artifact) == kind
    card = ModelCard.load(folder / "README.md")
    data = card.data
    assert data.library_name == "hf-dlm"
    assert set(KINDS[kind].tags) <= set(data.tags) and "hf-dlm" in data.tags
    image = name in ("image-pipeline", "distilled-pipeline")
    assert data.pipeline_tag == ("text-to-image" if image else "text-generation")
    # the card built in memory and the one read back from disk carry the same metadata
    rebuilt = model_card(artifact, repo_id=folder.name, has_tokenizer=(folder / "tokenizer_config.json").exists())
    assert rebuilt.data.to_dict() == data.to_dict()
    results = [(r.metric_type, r.metric_value, r.metric_config) for r in (data.eval_results or [])]
    expected = _expected_metrics(name) if name in BENCHMARK_ROWS else []
    if name == "quant-dllm":
        bits = round(quantization_report(artifact)["bits_per_weight"], 4)
        expected.append(("bits_per_weight", bits, "sign planes + fp16 scales, measured on the saved layers"))
        assert data.base_model == "hf-dlm-test/tiny-llada"
        assert f"**{bits:.3f}**" in card.content and '"quant_method": "quant_dllm"' in card.content
    assert sorted(results, key=str) == sorted(expected, key=str)
    if name == "distilled-generator":
        assert data.base_model == "hf-dlm-test/teacher"  # from the teacher's name, carried by the generator
        assert '"r_init": 0.5' in card.content and "@inproceedings{zhu2025dimo" in card.content
    if name == "diffusion-lm":
        assert "AutoTokenizer" in usage_snippet(card)  # saved together with its tokenizer
        assert "@article{nie2025llada" in card.content


def test_benchmark_metrics_by_hand(tmp_path):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"text": {"rows": [
        {"model": "student", "steps": 1, "gen_ppl": 28.36311, "entropy": 3.38, "seconds": 0.4},
        {"model": "teacher", "steps": 4, "gen_ppl": 43.8}]}}))
    results = eval_results_from_benchmark(path, "student")
    assert [(r.metric_type, r.metric_name, r.metric_value, r.metric_config, r.dataset_name) for r in results] == [
        ("perplexity", "oracle gen-PPL", 28.3631, "steps=1", "hf-dlm oracle language"),
        ("entropy", "unigram entropy", 3.38, "steps=1", "hf-dlm oracle language")]
    assert [r.metric_type for r in eval_results_from_benchmark(path, "student", metrics=["entropy"])] == ["entropy"]
    with pytest.raises(ValueError, match=r"`row` 'nobody'.*'student' \(steps 1\), 'teacher' \(steps 4\)"):
        eval_results_from_benchmark(path, "nobody")
    with pytest.raises(ValueError, match="`metrics`"):
        eval_results_from_benchmark(path, "student", metrics=["speed"])
    with pytest.raises(ValueError, match="not a file"):
        eval_results_from_benchmark(tmp_path / "missing.json", "student")


@pytest.mark.slow
def test_usage_snippets_run_by_hub_id(artifacts, tmp_path):
    """Each card's snippet, pointed at a hub id put into an offline cache, runs as a user would paste it."""
    cache, run, snippets = tmp_path / "cache", tmp_path / "run", []
    run.mkdir()
    for name, (artifact, folder, _) in artifacts.items():
        repo_id = f"hf-dlm-test/{name}"
        write_model_card(artifact, folder, repo_id=repo_id)
        add_to_cache(folder, repo_id, cache_dir=cache)
        snippet = tmp_path / f"{name.replace('-', '_')}.py"
        snippet.write_text(usage_snippet(folder / "README.md"))
        assert f'from_pretrained("{repo_id}")' in snippet.read_text()
        snippets.append(str(snippet))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    result = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "scripts" / "run_snippets.py"), *snippets],
                            cwd=run, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stdout + result.stderr[-4000:]
    assert (run / "sample.png").is_file()  # the image snippets saved their sample


def test_packaged_templates_have_every_required_field():
    for kind in KINDS:
        text, source = template_text(kind)
        check_template(text, kind, source)


def test_template_missing_a_field_is_refused(tmp_path, artifacts):
    text, _ = template_text("diffusion-lm")
    broken = tmp_path / "no_citation.md"
    broken.write_text(text.replace("{{ citation }}", ""))
    model, folder, _ = artifacts["diffusion-lm"]
    before = (folder / "README.md").read_text()
    with pytest.raises(CardTemplateError, match=r"no_citation\.md.*missing required field\(s\) \['citation'\]"):
        write_model_card(model, folder, template=broken)
    assert (folder / "README.md").read_text() == before  # nothing written
    unparsable = tmp_path / "bad.md"
    unparsable.write_text("{{ card_data }} {% if %}")
    with pytest.raises(CardTemplateError, match="does not parse"):
        model_card(model, template=unparsable)
    with pytest.raises(CardTemplateError, match="does not exist"):
        model_card(model, template=tmp_path / "missing.md")
    with pytest.raises(CardTemplateError, match=r"'initial_state'"):  # a distilled card needs the initial state
        model_card(artifacts["distilled-generator"][0], template=tmp_path / "no_citation.md")


def test_bad_card_input(artifacts, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    with pytest.raises(ValueError, match="GPT2LMHeadModel.*'gpt2'"):
        card_kind(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50)))
    model = artifacts["logit-fm"][0]
    with pytest.raises(ValueError, match="`base_model` must be a Hub id"):
        set_card_metadata(model, base_model="not a valid id")
    with pytest.raises(ValueError, match="`eval_results`"):
        set_card_metadata(model, eval_results=[{"metric": 1}])
    with pytest.raises(ValueError, match="`tags`"):
        set_card_metadata(model, tags=[""])
    # pushing: bad ids and folders are refused before any network call
    with pytest.raises(ValueError, match="`repo_id` 'bad//id'"):
        push_to_hub(model, "bad//id")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    with pytest.raises(ValueError, match="is not a saved artifact"):
        push_to_hub(tmp_path / "notes", "org/name")


def test_set_card_metadata_merges(artifacts):
    model = LogitFMModel(LogitFMConfig(vocab_size=30, hidden_size=32, num_hidden_layers=1, num_attention_heads=2))
    first = EvalResult(task_type="text-generation", dataset_type="oracle-language", dataset_name="d",
                       metric_type="perplexity", metric_value=50.0)
    second = EvalResult(task_type="text-generation", dataset_type="oracle-language", dataset_name="d",
                        metric_type="perplexity", metric_value=45.0)
    set_card_metadata(model, eval_results=[first], tags=["tinystories"])
    set_card_metadata(model, eval_results=[second], tags=["tinystories", "demo"])
    card = model_card(model, repo_id="org/lf")
    assert [r.metric_value for r in card.data.eval_results] == [45.0]
    assert card.data.tags[-2:] == ["tinystories", "demo"]


def test_auto_map_tells_users_without_the_plugin_what_to_install(artifacts, tmp_path):
    _, folder, _ = artifacts["diffusion-lm"]
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"]["AutoModelForCausalLM"] == "hf_dlm_auto.LLaDAModelLM"
    assert "import hf_dlm" in (folder / "hf_dlm_auto.py").read_text()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    result = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "scripts" / "remote_code_load.py"),
                             str(folder)], env=env, capture_output=True, text=True, timeout=300,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stdout + result.stderr[-4000:]


def test_dream_card_and_auto_map(tmp_path):
    from tests.utils.models import tiny_dream_config

    from hf_dlm import DreamModel

    model = DreamModel(tiny_dream_config()).eval()
    model.save_pretrained(tmp_path / "dream")
    card = ModelCard.load(tmp_path / "dream" / "README.md")
    assert card_kind(model) == "diffusion-lm" and "Dream" in card.data.tags
    assert "@misc{ye2025dream" in card.content
    config = json.loads((tmp_path / "dream" / "config.json").read_text())
    assert config["auto_map"]["AutoModelForMaskedLM"] == "hf_dlm_auto.DreamForMaskedLM"
