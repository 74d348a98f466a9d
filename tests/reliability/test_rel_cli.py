"""The hf-dlm command refuses bad input and reports faults as ONE line on stderr with the documented exit code
(0 ok, 2 bad input, 3 not found, 4 Hub refused or unreachable, 1 otherwise), without third-party noise or a
traceback (unless --debug); and its --help imports neither torch nor transformers nor diffusers.

Every case runs the real command in a fresh process (``python -m hf_dlm.cli``), so import-time log lines and
warnings of the libraries would show up in its stderr."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from tests.utils.models import tiny_llada_config

from hf_dlm import LLaDAModelLM
from hf_dlm.cli import main

VERBS = ["demo", "generate", "generate-image", "distill", "quantize", "eval", "push", "card", "add-to-cache"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny LLaDA saved without a tokenizer (vocabulary 96), a copy with its weights cut in half, and a valid
    distill config over it."""
    root = tmp_path_factory.mktemp("rel_cli")
    torch.manual_seed(0)
    LLaDAModelLM(tiny_llada_config()).save_pretrained(root / "llada")
    truncated = root / "truncated"
    truncated.mkdir()
    for path in (root / "llada").iterdir():
        data = path.read_bytes()
        (truncated / path.name).write_bytes(data[: len(data) // 2] if path.suffix == ".safetensors" else data)
    config = {"teacher": str(root / "llada"), "conditions": {"unconditional": 4},
              "dimo": {"output_dir": str(root / "dimo"), "max_steps": 1, "generation_length": 8, "report_to": [],
                       "use_cpu": True}}
    (root / "dimo.json").write_text(json.dumps(config))
    (root / "corpus.txt").write_text("w3 w4 w5\n")
    return root


def _environment(tmp_path: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_VERBOSITY")}
    env.update({"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub-cache"), "HF_HUB_DISABLE_TELEMETRY": "1",
                "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "default"})  # warnings on: the CLI must hush them
    env.update(extra)
    return env


def hf_dlm(tmp_path: Path, *argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hf_dlm.cli", *argv], capture_output=True, text=True, timeout=120,
                          env=env or _environment(tmp_path), cwd=tmp_path)


def assert_one_line(result: subprocess.CompletedProcess, code: int, *names: str) -> str:
    """Exit ``code``, stderr exactly one line starting with ``hf-dlm`` and naming each of ``names``."""
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("hf-dlm") and "Traceback" not in result.stderr, result.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


# (argv with {root} and {tmp} placeholders, exit code, words the line names)
CHEAP_CASES = {
    # a missing folder, for every verb that takes one: exit 3 and "no such folder" (no repo-id syntax, no Hub)
    "generate-missing-folder": (["generate", "{tmp}/missing"], 3, ["`model`", "no such folder"]),
    "generate-image-missing-folder": (["generate-image", "{tmp}/missing", "--prompt", "a"], 3,
                                      ["`pipeline`", "no such folder"]),
    "quantize-missing-folder": (["quantize", "{tmp}/missing", "{tmp}/out"], 3, ["`model`", "no such folder"]),
    "card-missing-folder": (["card", "{tmp}/missing"], 3, ["`folder`", "no such folder"]),
    "push-missing-folder": (["push", "{tmp}/missing", "org/name"], 3, ["`folder`", "no such folder"]),
    "add-to-cache-missing-folder": (["add-to-cache", "{tmp}/missing", "org/name"], 3, ["`folder`", "no such folder"]),
    "distill-missing-config": (["distill", "{tmp}/missing.json"], 3, ["`config`", "no such file"]),
    "relative-missing-folder": (["generate", "./missing"], 3, ["'./missing'", "no such folder"]),
    "hub-id-not-in-offline-cache": (["generate", "org/not-cached"], 3, ["'org/not-cached'", "local Hub cache"]),
    # numbers: type and range
    "non-integer-steps": (["generate", "{root}/llada", "--steps", "ten"], 2, ["--steps", "'ten'", "integer"]),
    "negative-steps": (["generate", "{root}/llada", "--steps", "-3"], 2, ["--steps", "'-3'", ">= 1"]),
    "zero-max-new-tokens": (["generate", "{root}/llada", "--max-new-tokens", "0"], 2, ["--max-new-tokens"]),
    "nan-temperature": (["generate", "{root}/llada", "--temperature", "nan"], 2, ["--temperature", "'nan'"]),
    "non-integer-prompt-ids": (["generate", "{root}/llada", "--prompt-ids", "1,x"], 2, ["--prompt-ids", "'1,x'"]),
    "negative-prompt-ids": (["generate", "{root}/llada", "--prompt-ids", "3,-1"], 2, ["--prompt-ids", "-1"]),
    "unknown-remasking": (["generate", "{root}/llada", "--remasking", "best"], 2, ["--remasking", "'best'"]),
    "zero-images": (["generate-image", "{root}/llada", "--prompt", "a", "--num-images", "0"], 2, ["--num-images"]),
    "negative-class-label": (["generate-image", "{root}/llada", "--class-label", "-1"], 2, ["--class-label"]),
    "jpeg-output": (["generate-image", "{root}/llada", "--prompt", "a", "--output", "x.jpg"], 2, ["--output", ".png"]),
    "fraction-out-of-range": (["quantize", "{root}/llada", "{tmp}/q", "--abmp-fraction", "1.5"], 2,
                              ["--abmp-fraction", "'1.5'"]),
    "missing-calibration": (["quantize", "{root}/llada", "{tmp}/q", "--calibration", "{tmp}/none.txt"], 3,
                            ["--calibration", "no such file"]),
    "output-is-a-file": (["quantize", "{root}/llada", "{root}/corpus.txt"], 2, ["`output`", "not a folder"]),
    "invalid-repo-id": (["push", "{root}/llada", "not/a/valid/id"], 2, ["`repo_id`", "not a valid hub id"]),
    "seed-out-of-range": (["generate", "{root}/llada", "--seed", "-1"], 2, ["--seed"]),
    "folder-without-model": (["generate", "{tmp}"], 2, ["`model`", "config.json"]),
    "card-steps-without-benchmark": (["card", "{root}/llada", "--steps", "4"], 2, ["--steps", "--benchmark"]),
    "unknown-verb": (["frobnicate"], 2, ["invalid choice", "'frobnicate'"]),
    "unknown-flag": (["generate", "{root}/llada", "--stepz", "4"], 2, ["unrecognized arguments", "--stepz"]),
}


@pytest.mark.parametrize("case", sorted(CHEAP_CASES))
def test_bad_input_is_one_line_with_its_exit_code(case, saved, tmp_path):
    argv, code, names = CHEAP_CASES[case]
    argv = [a.format(root=saved, tmp=tmp_path) for a in argv]
    assert_one_line(hf_dlm(tmp_path, *argv), code, *names)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: connecting is refused


@contextlib.contextmanager
def answering(status: int, error_code: str | None = None):
    """A local "Hub" answering every request with ``status`` (and an ``X-Error-Code``); yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = b'{"error": "You do not have access to this repository"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            if error_code:
                self.send_header("X-Error-Code", error_code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_HEAD = _answer  # noqa: N815

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def loading_runs(saved, tmp_path_factory):
    """The cases that must import torch and load a model, started together (they are the slow ones)."""
    tmp = tmp_path_factory.mktemp("rel_cli_runs")
    config = json.loads((saved / "dimo.json").read_text())
    config["dimo"]["max_steps"] = "ten"
    (tmp / "ten.json").write_text(json.dumps(config))
    argvs = {"out-of-vocabulary": ["generate", str(saved / "llada"), "--prompt-ids", "5,99999", "--steps", "2",
                                   "--max-new-tokens", "4"],
             "truncated": ["generate", str(saved / "truncated"), "--prompt-ids", "5", "--steps", "2",
                           "--max-new-tokens", "4"],
             "wrong-typed-field": ["distill", str(tmp / "ten.json")]}
    processes = {name: subprocess.Popen([sys.executable, "-m", "hf_dlm.cli", *argv], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, env=_environment(tmp), cwd=tmp)
                 for name, argv in argvs.items()}
    results = {}
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=300)
        results[name] = subprocess.CompletedProcess(argvs[name], process.returncode, stdout, stderr)
    return results


def test_distill_config_not_json(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    assert_one_line(hf_dlm(tmp_path, "distill", str(tmp_path / "broken.json")), 2, "`config`", "not valid JSON")


def test_distill_config_with_a_wrong_typed_field(loading_runs):
    assert_one_line(loading_runs["wrong-typed-field"], 2, "`dimo.max_steps`", "'ten'", "int")


def test_distill_teacher_folder_missing(saved, tmp_path):
    config = json.loads((saved / "dimo.json").read_text())
    config["teacher"] = str(tmp_path / "no-teacher")
    (tmp_path / "c.json").write_text(json.dumps(config))
    assert_one_line(hf_dlm(tmp_path, "distill", str(tmp_path / "c.json")), 3, "`teacher`", "no such folder")


def test_out_of_vocabulary_prompt_ids(loading_runs):
    assert_one_line(loading_runs["out-of-vocabulary"], 2, "--prompt-ids", "99999", "vocabulary", "95")


def test_truncated_safetensors_file(loading_runs):
    assert_one_line(loading_runs["truncated"], 2, "`model`", "could not be loaded", "model.safetensors")


def test_hub_id_with_the_hub_unreachable_exits_4(tmp_path):
    env = _environment(tmp_path, HF_HUB_OFFLINE="0", HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}")
    assert_one_line(hf_dlm(tmp_path, "generate", "org/tiny", env=env), 4, "`model`", "'org/tiny'",
                    "could not be reached")


def test_hub_id_the_hub_does_not_have_exits_3(tmp_path):
    with answering(404, "RepoNotFound") as url:
        env = _environment(tmp_path, HF_HUB_OFFLINE="0", HF_ENDPOINT=url)
        assert_one_line(hf_dlm(tmp_path, "generate-image", "org/tiny", "--prompt", "a", env=env), 3, "`pipeline`",
                        "'org/tiny'", "no repository")


def test_push_to_an_unreachable_hub_exits_4(saved, tmp_path):
    env = _environment(tmp_path, HF_HUB_OFFLINE="0", HF_TOKEN="hf_test",
                       HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}")
    line = assert_one_line(hf_dlm(tmp_path, "push", str(saved / "llada"), "org/tiny", env=env), 4,
                           "could not be reached", "127.0.0.1")
    assert "refused" in line.lower()


def test_push_the_hub_refuses_exits_4(saved, tmp_path):
    with answering(403) as url:
        env = _environment(tmp_path, HF_HUB_OFFLINE="0", HF_TOKEN="hf_test", HF_ENDPOINT=url)
        assert_one_line(hf_dlm(tmp_path, "push", str(saved / "llada"), "org/tiny", env=env), 4, "refused", "403")


def test_debug_adds_the_traceback_and_keeps_the_exit_code(tmp_path):
    result = hf_dlm(tmp_path, "generate", str(tmp_path / "missing"), "--debug")
    assert result.returncode == 3
    assert "Traceback" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("hf-dlm generate:")


def test_every_help_answers_without_importing_torch(tmp_path):
    """``hf-dlm --help`` and each verb's ``--help``: exit 0, an example of the verb, nothing on stderr, and no import
    of torch / transformers / diffusers (checked with ``python -X importtime``)."""
    for argv in ([], *([verb] for verb in VERBS)):
        result = subprocess.run([sys.executable, "-X", "importtime", "-m", "hf_dlm.cli", *argv, "--help"],
                                capture_output=True, text=True, timeout=60, env=_environment(tmp_path))
        assert result.returncode == 0, result.stderr
        assert f"hf-dlm {argv[0] if argv else 'generate'}" in result.stdout.split("example", 1)[1]
        imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()
                    if line.startswith("import time")}
        assert not imported & {"torch", "transformers", "diffusers", "numpy"}, argv
        assert all(line.startswith("import time") for line in result.stderr.splitlines()), result.stderr


def test_console_script_help(tmp_path):
    script = Path(sys.executable).with_name("hf-dlm")
    if not script.exists():
        pytest.skip("the hf-dlm console script is not installed next to this Python")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == "" and "exit codes" in result.stdout


def test_in_process_main_restores_third_party_logging(saved, tmp_path, capfd):
    """``main`` silences third-party loggers for its run only: a program (or test) calling it keeps its levels."""
    import logging

    before = {name: logging.getLogger(name).level for name in ("transformers", "diffusers", "huggingface_hub")}
    assert main(["generate", str(tmp_path / "missing")]) == 3
    err = capfd.readouterr().err.splitlines()
    assert len(err) == 1 and "no such folder" in err[0]
    assert {name: logging.getLogger(name).level for name in before} == before


def test_cli_constants_match_the_library():
    """The choices --help shows without importing the library are the library's."""
    from hf_dlm.cli import generate
    from hf_dlm.generation import REMASKING_STRATEGIES
    from hf_dlm.generation.logit_fm.configuration import SCHEMES

    assert generate.REMASKING == REMASKING_STRATEGIES and generate.SCHEMES == SCHEMES
