"""``hf-dlm eval``: lm-evaluation-harness tasks on a saved tiny model, the harness's results JSON, scores recorded on
the model card (merged, atomically), and one-line errors with exit 2 for bad arguments."""

import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tests.utils.models import save_oracle_llada, tiny_llada_config
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from hf_dlm import LLaDAModelLM, LogitFMConfig, LogitFMModel, _io
from hf_dlm.cli import evaluate, main
from hf_dlm.hub.eval_results import SOURCE_NAME, eval_results_from_harness, record_eval_results

TASKS = Path(__file__).parents[2] / "integrations" / "lm_eval" / "tasks"
FAST = ["--tasks", "oracle_mc", "--limit", "3", "--include-path", str(TASKS),
        "--model-args", "mc_num=4,batch_size=4,is_check_greedy=false"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny LLaDA with the oracle tokenizer, saved (with its hf-dlm card)."""
    folder = tmp_path_factory.mktemp("eval") / "llada"
    save_oracle_llada(folder)
    return folder


def _copy(saved, tmp_path):
    return shutil.copytree(saved, tmp_path / "model")


def _scores(folder):
    return {(r.dataset_name, r.metric_name): r for r in ModelCard.load(folder / "README.md").data.eval_results}


def _error(capsys):
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hf-dlm eval: "), captured.err
    return lines[0]


# ---------------------------------------------------------------------------------------------------- end to end
def test_eval_writes_the_harness_results_and_records_them_on_the_card(saved, tmp_path, capsys):
    model = _copy(saved, tmp_path)
    body = ModelCard.load(model / "README.md").text
    assert main(["eval", str(model), *FAST, "--output-path", str(tmp_path / "out" / "results.json"),
                 "--log-samples", "--card"]) == 0
    captured = capsys.readouterr()
    assert "oracle_mc" in captured.out and "acc_norm" in captured.out and "|Metric" in captured.out.replace(" ", "")
    assert "subset" in captured.err  # --limit with --card: one warning line
    (written,) = (tmp_path / "out").glob("results_*.json")  # the harness's name: <stem>_<date>.json
    assert f"results: {written}" in captured.out
    assert len(list((tmp_path / "out").glob("samples_oracle_mc_*.jsonl"))) == 1
    results = json.loads(written.read_text())
    assert {"results", "configs", "versions", "n-shot", "higher_is_better", "n-samples", "config",
            "task_hashes", "model_name"} <= set(results)
    assert results["n-samples"]["oracle_mc"]["effective"] == 3 and results["config"]["model"] == "hf-dlm"
    assert results["config"]["model_args"]["mc_num"] == 4 and results["config"]["limit"] == 3
    # the card: one EvalResult per metric, the harness's values, the rest of the card untouched
    card = ModelCard.load(model / "README.md")
    assert card.text == body and card.data.library_name == "hf-dlm"
    scores = _scores(model)
    assert set(scores) == {("oracle_mc", "acc"), ("oracle_mc", "acc_norm")}
    for (_, metric), result in scores.items():
        assert result.metric_value == results["results"]["oracle_mc"][f"{metric},none"]
        assert result.source_name == SOURCE_NAME and result.task_type == "text-generation"
    # a second run replaces the scores, it does not add a second copy
    assert main(["eval", str(model), *FAST[:-1], "mc_num=8,batch_size=4,is_check_greedy=false", "--card"]) == 0
    assert len(ModelCard.load(model / "README.md").data.eval_results) == 2


def test_a_likelihood_task_on_a_flow_model_is_one_line(tmp_path, capsys):
    from hf_dlm.evaluation.oracle import OracleLanguage

    tokenizer = OracleLanguage().tokenizer()
    torch.manual_seed(0)
    LogitFMModel(LogitFMConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                               num_attention_heads=2)).save_pretrained(tmp_path / "lfm")
    tokenizer.save_pretrained(tmp_path / "lfm")
    assert main(["eval", str(tmp_path / "lfm"), *FAST]) == 2
    assert "Logit-FM" in _error(capsys)


def test_unknown_task_names_close_matches(saved, capsys, monkeypatch):
    from lm_eval import tasks

    class WithoutBuiltins(tasks.TaskManager):  # indexing the harness's ~15,000 task YAMLs takes seconds
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "include_defaults": False})

    monkeypatch.setattr(tasks, "TaskManager", WithoutBuiltins)
    assert main(["eval", str(saved), "--tasks", "oracle_mc,oracle_mcq", "--include-path", str(TASKS)]) == 2
    line = _error(capsys)
    assert "`--tasks`" in line and "'oracle_mcq'" in line and "oracle_mc" in line.split("close matches")[1]


def test_tasks_of_the_include_path_alone_skip_the_builtin_index():
    from lm_eval.tasks import TaskManager

    manager, names = evaluate.resolve_tasks(["oracle_mc", "oracle_ppl"], [str(TASKS)])
    assert names == ["oracle_mc", "oracle_ppl"] and "hellaswag" not in manager.all_tasks
    local = TaskManager(include_path=str(TASKS), include_defaults=False).task_index
    assert evaluate._self_contained(local, "oracle_mc", set())
    assert not evaluate._self_contained(local, "oracle", set())  # a tag: built-in tasks may carry it too
    assert not evaluate._self_contained(local, "oracle_*", set())


# ---------------------------------------------------------------------------------------------------- arguments
@pytest.mark.parametrize("argv, named", [
    (["--limit", "0"], "--limit"),
    (["--limit", "1.5"], "--limit"),
    (["--limit", "some"], "--limit"),
    (["--num-fewshot", "-1"], "--num-fewshot"),
    (["--model-args", "mc_num=4,colour=red"], "'colour'"),
    (["--model-args", "pretrained=other"], "pretrained"),
    (["--model-args", "mc_num"], "--model-args"),
    (["--batch-size", "4", "--model-args", "batch_size=2"], "--batch-size"),
    (["--gen-kwargs", "temperature"], "--gen-kwargs"),
    (["--log-samples"], "--output-path"),
    (["--seed", "1,2"], "--seed"),
    (["--output-path", "README.md"], "--output-path"),
])
def test_bad_arguments_exit_2_with_one_line_naming_them(saved, argv, named, capsys, monkeypatch):
    monkeypatch.chdir(saved)  # README.md: a file where --output-path needs a folder
    assert main(["eval", str(saved), "--tasks", "oracle_mc", *argv]) == 2
    assert named in _error(capsys)


def test_missing_task_folders_and_files_are_not_found(saved, capsys):
    assert main(["eval", str(saved), "--tasks", "oracle_mc", "--include-path", "no/such/folder"]) == 3
    assert "--include-path" in _error(capsys)
    assert main(["eval", str(saved), "--tasks", "no/such/task.yaml"]) == 3
    assert "--tasks" in _error(capsys)


def test_unknown_model_arg_lists_the_allowed_ones(saved, capsys):
    assert main(["eval", str(saved), "--tasks", "oracle_mc", "--model-args", "colour=red"]) == 2
    line = _error(capsys)
    assert all(name in line for name in evaluate.MODEL_ARGS)


def test_card_with_a_hub_id_is_refused(capsys):
    assert main(["eval", "my-org/tiny-llada", "--tasks", "oracle_mc", "--card"]) == 2  # before the Hub is asked
    line = _error(capsys)
    assert "--card" in line and "local folder" in line and "push" in line


def test_without_the_harness_it_says_what_to_install(saved, monkeypatch, capsys):
    find_spec = evaluate.importlib.util.find_spec
    monkeypatch.setattr(evaluate.importlib.util, "find_spec", lambda name, *a: None if name == "lm_eval"
                        else find_spec(name, *a))
    assert main(["eval", str(saved), "--tasks", "oracle_mc"]) == 2
    assert 'pip install "hf-dlm[eval]"' in _error(capsys)


def test_help_answers_without_importing_torch_or_the_harness():
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "hf_dlm.cli", "eval", "--help"],
                            capture_output=True, text=True, timeout=60, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0 and "hf-dlm eval" in result.stdout.split("example", 1)[1]
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time")}
    assert not imported & {"torch", "transformers", "numpy", "lm_eval"}


def test_model_args_are_those_of_the_harness_model():
    from hf_dlm.integrations.lm_eval_harness import DiffusionLM

    names = [n for n in inspect.signature(DiffusionLM.__init__).parameters if n not in ("self", "pretrained")]
    assert tuple(n for n in names if n != "max_batch_size") == evaluate.MODEL_ARGS


# ---------------------------------------------------------------------------------------------------- the card
HARNESS = {"results": {
    "oracle_mc": {"alias": "oracle_mc", "sample_len": 3, "acc,none": 0.5, "acc_stderr,none": 0.1,
                  "acc_norm,none": 0.25, "acc_norm_stderr,none": "N/A"},
    "gsm8k": {"exact_match,strict-match": 0.125, "exact_match,flexible-extract": 0.25, "bad,none": float("nan")},
}}


def _card_with(folder, results):
    folder.mkdir()
    data = ModelCardData(library_name="hf-dlm", model_name="tiny", eval_results=results)
    ModelCard(f"---\n{data.to_yaml()}\n---\n\n# tiny\n\nHand-written text.\n").save(folder / "README.md")


def test_eval_results_from_harness_keeps_numeric_metrics_only():
    found = {(r.dataset_name, r.metric_type, r.metric_name): r.metric_value for r in eval_results_from_harness(HARNESS)}
    assert found == {("oracle_mc", "acc", "acc"): 0.5, ("oracle_mc", "acc_norm", "acc_norm"): 0.25,
                     ("gsm8k", "exact_match", "exact_match (strict-match)"): 0.125,
                     ("gsm8k", "exact_match", "exact_match (flexible-extract)"): 0.25}
    with pytest.raises(ValueError, match="results"):
        eval_results_from_harness({"oracle_mc": {}})


def test_record_merges_with_the_scores_already_on_the_card(tmp_path):
    folder = tmp_path / "model"
    other = EvalResult(task_type="text-generation", dataset_type="oracle", dataset_name="hf-dlm oracle language",
                       metric_type="perplexity", metric_name="oracle gen-PPL", metric_value=12.5)
    stale = EvalResult(task_type="text-generation", dataset_type="oracle_mc", dataset_name="oracle_mc",
                       metric_type="acc", metric_name="acc", metric_value=0.0)
    _card_with(folder, [other, stale])
    assert record_eval_results(folder, HARNESS) == folder / "README.md"
    scores = _scores(folder)
    assert scores[("hf-dlm oracle language", "oracle gen-PPL")].metric_value == 12.5  # kept
    assert scores[("oracle_mc", "acc")].metric_value == 0.5  # replaced
    assert len(scores) == 5 and ("gsm8k", "exact_match (strict-match)") in scores
    card = ModelCard.load(folder / "README.md")
    assert "Hand-written text." in card.text and card.data.library_name == "hf-dlm"
    record_eval_results(folder, HARNESS, model_name="renamed")
    assert len(_scores(folder)) == 5 and ModelCard.load(folder / "README.md").data.model_name == "renamed"


def test_record_creates_a_card_when_there_is_none(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    record_eval_results(plain, HARNESS)
    assert ModelCard.load(plain / "README.md").data.model_name == "plain" and len(_scores(plain)) == 4
    built = tmp_path / "built"
    built.mkdir()
    record_eval_results(built, HARNESS, artifact=LLaDAModelLM(tiny_llada_config()))
    card = ModelCard.load(built / "README.md")
    assert "diffusion-lm" in card.data.tags and len(_scores(built)) == 4 and "## Usage" in card.text


def test_record_refuses_nothing_to_record_and_a_missing_folder(tmp_path):
    _card_with(tmp_path / "model", None)
    with pytest.raises(ValueError, match="no numeric score"):
        record_eval_results(tmp_path / "model", {"results": {"t": {"acc,none": "N/A"}}})
    with pytest.raises(NotADirectoryError):
        record_eval_results(tmp_path / "missing", HARNESS)


def test_a_failed_or_killed_write_leaves_the_old_card_whole(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    _card_with(folder, None)
    before = (folder / "README.md").read_bytes()

    def full_disk(path):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(_io, "_fsync", full_disk)  # after the new text is written to the temporary, before the rename
        with pytest.raises(OSError, match="No space"):
            record_eval_results(folder, HARNESS)
    assert (folder / "README.md").read_bytes() == before and os.listdir(folder) == ["README.md"]
    pid = os.fork()
    if pid == 0:  # the child is killed once the new card is written, before it is renamed into place
        _io._fsync = lambda path: os.kill(os.getpid(), 9)
        try:
            record_eval_results(folder, HARNESS)
        finally:
            os._exit(1)
    assert os.waitpid(pid, 0)[1] == 9
    assert (folder / "README.md").read_bytes() == before and len(os.listdir(folder)) == 2  # its temporary is left
    record_eval_results(folder, HARNESS)  # the next write removes it
    assert os.listdir(folder) == ["README.md"] and len(_scores(folder)) == 4
