"""push_to_hub → load back by id → identical outputs, against the local test Hub server (tests/utils/hub_server.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.utils.hub_server import HubServer


@pytest.fixture()
def hub_server():
    server = HubServer().start()
    yield server
    server.stop()


@pytest.mark.hub
def test_push_and_load_back_by_id(hub_server, tmp_path):
    script = Path(__file__).parents[1] / "scripts" / "push_and_reload.py"
    env = {**os.environ, "HF_ENDPOINT": hub_server.url, "HF_HUB_OFFLINE": "0", "HF_TOKEN": "hf_test_token",
           "HF_HUB_CACHE": str(tmp_path / "cache"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout[-2000:] + result.stderr[-4000:]
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), output
    # each push is one commit holding weights, configs, generation config, (tokenizer,) and the card
    commits = {repo: r.commit_files[1:] for repo, r in hub_server.repos.items()}
    assert all(len(files) == 1 for files in commits.values()), commits
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
            "README.md", "hf_dlm_auto.py"} <= set(commits["hf-dlm-test/tiny-llada"][0])
    assert {"config.json", "model.safetensors", "generation_config.json", "README.md"} <= set(
        commits["hf-dlm-test/tiny-llada-2bit"][0])
    assert {"model_index.json", "README.md", "transformer/diffusion_pytorch_model.safetensors",
            "scheduler/scheduler_config.json", "vqvae/config.json"} <= set(commits["hf-dlm-test/digits"][0])
    card = hub_server.repos["hf-dlm-test/digits"].files["README.md"].decode()
    assert "library_name: hf-dlm" in card and 'MaskedImagePipeline.from_pretrained("hf-dlm-test/digits")' in card
    assert any((tmp_path / "cache").glob("models--hf-dlm-test--*"))  # the loads went through the (empty) cache
