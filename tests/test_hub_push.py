"""push_to_hub → load back by id → identical outputs, against the local test Hub server (tests/hub_server.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub_server import HubServer


@pytest.fixture()
def hub_server():
    server = HubServer().start()
    yield server
    server.stop()


def test_push_and_load_back_by_id(hub_server, tmp_path):
    script = Path(__file__).parent / "scripts" / "push_and_reload.py"
    env = {**os.environ, "HF_ENDPOINT": hub_server.url, "HF_HUB_OFFLINE": "0", "HF_TOKEN": "hf_test_token",
           "HF_HUB_CACHE": str(tmp_path / "cache"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout[-2000:] + result.stderr[-4000:]
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), output
    pushed = {repo: sorted(r.files) for repo, r in hub_server.repos.items()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(pushed["hf-dlm-test/tiny-llada"])
    assert "model_index.json" in pushed["hf-dlm-test/digits"]
    assert "transformer/diffusion_pytorch_model.safetensors" in pushed["hf-dlm-test/digits"]
    assert "config.json" in pushed["hf-dlm-test/tiny-llada-2bit"]
    assert any((tmp_path / "cache").glob("models--hf-dlm-test--*"))  # the loads went through the (empty) cache
