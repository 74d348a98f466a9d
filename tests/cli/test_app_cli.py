"""`hf-dlm app` (the Gradio demo served on 127.0.0.1) and `hf-dlm push --space` (the demo uploaded as a Space)."""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest

from hf_dlm.cli import main
from tests.utils.space_app import SPACE, free_port

ROLES_OFF = ["--teacher", "none", "--student", "none", "--quantized", "none", "--image", "none"]


def test_app_refuses_what_it_cannot_serve(tmp_path, capsys):
    assert main(["app", "--app-dir", str(tmp_path)]) == 3
    assert "no app.py" in capsys.readouterr().err
    assert main(["app", "--port", "70000"]) == 2
    assert "`--port` must be between 1 and 65535, got 70000" in capsys.readouterr().err
    assert main(["app", "--port", "0"]) == 2


@pytest.mark.slow
def test_app_serves_the_page_on_localhost(tmp_path):
    pytest.importorskip("gradio", reason="`hf-dlm app` needs gradio (the `dev` and `app` extras install it)")
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    process = subprocess.Popen([sys.executable, "-m", "hf_dlm.cli", "app", "--port", str(port), *ROLES_OFF],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, page = time.monotonic() + 120, None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5) as response:
                    page = response.read().decode()
                break
            except OSError:
                time.sleep(0.5)
        assert page is not None, process.stdout.read() if process.poll() is not None else "no answer in 120 s"
        config = json.loads(page)
        assert config["title"] == "hf-dlm: masked diffusion at work"
        ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
        assert {"text-canvas", "compare-table", "image-final"} <= ids
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.hub
def test_push_space_uploads_app_package_and_model_ids(tmp_path):
    from tests.utils.hub_server import HubServer

    server = HubServer().start()
    try:
        env = {**os.environ, "HF_ENDPOINT": server.url, "HF_HUB_OFFLINE": "0", "HF_TOKEN": "hf_test_token",
               "HF_HUB_CACHE": str(tmp_path / "cache"), "HF_HUB_DISABLE_TELEMETRY": "1"}
        result = subprocess.run([sys.executable, "-m", "hf_dlm.cli", "push", "--space", str(SPACE), "org/demo",
                                 "--teacher", "org/tiny-llada", "--image", "org/digits"], env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        repo = server.repos["org/demo"]
        assert (repo.type, repo.sdk) == ("space", "gradio")
        assert len(repo.commit_files) == 2  # one commit
        files = set(repo.files)
        assert {"app.py", "README.md", "requirements.txt", "space_config.json", "hf_dlm/__init__.py",
                "hf_dlm/pipelines/images.py", "hf_dlm/model_cards/diffusion_lm.md"} <= files
        assert not any("__pycache__" in name for name in files)
        assert json.loads(repo.files["space_config.json"]) == {"teacher": "org/tiny-llada", "student": None,
                                                               "quantized": None, "image": "org/digits"}
        assert repo.files["app.py"] == (SPACE / "app.py").read_bytes()
    finally:
        server.stop()


def test_push_space_checks_the_folder_and_the_flags(tmp_path, capsys):
    assert main(["push", "outputs/demo", "org/x", "--teacher", "org/t"]) == 2
    assert "`--teacher` names a model of the Space app; it needs `--space`" in capsys.readouterr().err
    space = tmp_path / "space"
    shutil.copytree(SPACE, space)
    (space / "README.md").write_text("# no front matter\n")
    assert main(["push", "--space", str(space), "org/x"]) == 2
    assert "Space front matter" in capsys.readouterr().err
    (space / "requirements.txt").unlink()
    assert main(["push", "--space", str(space), "org/x"]) == 2
    assert "no requirements.txt" in capsys.readouterr().err
    assert main(["push", "--space", str(SPACE), "org/x", "--teacher", "not/a/valid/id"]) == 2
    assert main(["push", "--space", str(SPACE), "org/x", "--create-pr"]) == 2


@pytest.mark.parametrize("verb", ["generate-image", "push", "app"])
def test_help_prose_is_wrapped_and_examples_keep_their_lines(verb, capsys):
    with pytest.raises(SystemExit):
        main([verb, "--help"])
    text = capsys.readouterr().out
    description = text.split("\n\n", 1)[1].split("positional arguments:")[0]
    assert "examples:\n  hf-dlm " in description  # one example per line, indented
    prose = [line for line in description.splitlines() if line and not line.startswith(" ")]
    assert prose and all(len(line) <= 100 for line in prose), prose
