"""Offline hub ids: ``hf_dlm.hub.add_to_cache`` and the ``hf-dlm add-to-cache`` verb."""

import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.utils.models import tiny_llada_config
from hf_dlm import LLaDAModelLM
from hf_dlm.cli import main as cli_main
from hf_dlm.evaluation.oracle import OracleLanguage
from hf_dlm.hub import add_to_cache, artifact_kind, check_repo_id, folder_commit_hash


@pytest.fixture()
def saved_llada(tmp_path):
    tokenizer = OracleLanguage(num_words=91).tokenizer()
    torch.manual_seed(0)
    model = LLaDAModelLM(tiny_llada_config(vocab_size=len(tokenizer), embedding_size=len(tokenizer),
                                           mask_token_id=tokenizer.mask_token_id,
                                           pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                                           bos_token_id=tokenizer.bos_token_id)).eval()
    folder = tmp_path / "saved"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, folder


def test_model_loads_by_id_offline(saved_llada, tmp_path):
    model, folder = saved_llada
    cache = tmp_path / "hub"
    snapshot = add_to_cache(folder, "hf-dlm-test/tiny-llada", cache_dir=cache)
    repo = cache / "models--hf-dlm-test--tiny-llada"
    assert snapshot == repo / "snapshots" / folder_commit_hash(folder)
    assert (repo / "refs" / "main").read_text() == snapshot.name
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    loaded = AutoModelForCausalLM.from_pretrained("hf-dlm-test/tiny-llada", cache_dir=cache).eval()
    tokenizer = AutoTokenizer.from_pretrained("hf-dlm-test/tiny-llada", cache_dir=cache)
    ids = torch.randint(0, 91, (2, 12))
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
    assert tokenizer.mask_token_id == model.config.mask_token_id
    # the same files again: same snapshot; other files: a new snapshot and the ref moves
    assert add_to_cache(folder, "hf-dlm-test/tiny-llada", cache_dir=cache) == snapshot
    (folder / "README.md").write_text("a card")
    moved = add_to_cache(folder, "hf-dlm-test/tiny-llada", cache_dir=cache)
    assert moved != snapshot and (repo / "refs" / "main").read_text() == moved.name
    assert not [p for p in (repo / "snapshots").iterdir() if p.name.startswith(".")]  # no staging left behind


def test_image_pipeline_loads_by_id_offline(tmp_path):
    from diffusers import VQModel  # noqa: F401  (diffusers registered)

    from hf_dlm.pipelines import MaskedImagePipeline
    from hf_dlm.recipes.digits import build_digits_pipeline

    pipe = build_digits_pipeline(hidden_size=32, num_layers=1, text_hidden_size=32)
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(tmp_path / "pipe")
    assert artifact_kind(tmp_path / "pipe") == "pipeline:MaskedImagePipeline"
    add_to_cache(tmp_path / "pipe", "hf-dlm-test/digits", cache_dir=tmp_path / "hub")
    loaded = MaskedImagePipeline.from_pretrained("hf-dlm-test/digits", cache_dir=tmp_path / "hub")
    loaded.set_progress_bar_config(disable=True)

    def run(p):
        return p(prompt=["a handwritten seven"], num_inference_steps=3, generator=torch.Generator().manual_seed(0),
                 output_type="latent").images

    assert torch.equal(run(loaded), run(pipe))


def test_cli_add_to_cache(saved_llada, tmp_path, capsys):
    _, folder = saved_llada
    assert cli_main(["add-to-cache", str(folder), "org/name", "--cache-dir", str(tmp_path / "hub")]) == 0
    assert capsys.readouterr().out.strip().endswith(folder_commit_hash(folder))
    assert cli_main(["add-to-cache", str(tmp_path), "org/name", "--cache-dir", str(tmp_path / "hub")]) == 2
    assert "not a saved artifact" in capsys.readouterr().err
    result = subprocess.run([sys.executable, "-m", "hf_dlm.cli", "--help"], capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert result.returncode == 0 and "add-to-cache" in result.stdout


def test_bad_input(saved_llada, tmp_path):
    _, folder = saved_llada
    for bad in ("bad//id", "a/b/c", "", 3):
        with pytest.raises(ValueError, match="repo_id"):
            check_repo_id(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a saved artifact"):
        add_to_cache(tmp_path / "empty", "org/name", cache_dir=tmp_path / "hub")
    with pytest.raises(ValueError, match="not a directory"):
        add_to_cache(tmp_path / "missing", "org/name", cache_dir=tmp_path / "hub")
    with pytest.raises(ValueError, match="revision"):
        add_to_cache(folder, "org/name", revision="a/b", cache_dir=tmp_path / "hub")
    assert not (tmp_path / "hub").exists()  # nothing written on bad input
