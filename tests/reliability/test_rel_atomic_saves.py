"""Saves are atomic ("Nothing silent", item 1): a save killed at any step boundary leaves its target folder as the
complete old artifact or the complete new one, and the next save removes every hidden leftover (``hf_dlm._io`` and
its recovery rule).

Each killed save runs in a forked child — the parent's imports are shared, so a kill costs milliseconds rather than an
import of torch — with ``HF_DLM_FAULT_STEP=k``, which kills it (``os._exit(137)``: no ``finally`` runs) at the
k-th step boundary, for every k the save passes. Both swap paths are covered: Linux's one-step exchange and the
two-rename fallback (whose one instant without a target ``recover`` repairs).
"""

import functools
import json
import logging
import os
import shutil
import traceback
from pathlib import Path

import pytest
import torch
from tests.utils.models import tiny_dream_config, tiny_llada_config, tiny_quantized_llada

from hf_dlm import DreamModel, LLaDAModelLM, _io
from hf_dlm.evaluation.oracle import OracleLanguage
from hf_dlm.hub import add_to_cache
from hf_dlm.hub.push import load_artifact

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="kills forked children")

KILLED = 137
ORDER = ["old", "missing", "new"]  # the target's states, in the only order a save may pass them


# ---------------------------------------------------------------------------------------------------- helpers
def fork_run(fn, step=None, exchange=True, trace_file=None) -> int:
    """Run ``fn()`` in a forked child with ``HF_DLM_FAULT_STEP=step``; its exit code (137: killed at that boundary).
    With ``trace_file`` the child writes the labels of the boundaries it passed there."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            torch.set_num_threads(1)  # OpenMP's pool does not survive a fork
            _io._use_exchange = exchange
            _io.reset_fault_points()
            if step is None:
                os.environ.pop(_io.FAULT_STEP_ENV, None)
            else:
                os.environ[_io.FAULT_STEP_ENV] = str(step)
            fn()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            if trace_file is not None:
                Path(trace_file).write_text(json.dumps(_io.fault_trace))
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def boundaries(fn, tmp_path, exchange=True) -> list[str]:
    """The labels of the step boundaries ``fn`` passes (run once, to the end, in a child)."""
    trace = tmp_path / "trace.json"
    assert fork_run(fn, step=10**9, exchange=exchange, trace_file=trace) == 0
    return json.loads(trace.read_text())


def _content(path: Path) -> object:
    """A file's bytes; for safetensors its metadata and tensors (the order of its header's keys varies per process)."""
    data = path.read_bytes()
    if path.suffix != ".safetensors":
        return data
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    body = data[8 + size:]
    return {name: (info["dtype"], info["shape"], body[slice(*info["data_offsets"])]) if name != "__metadata__" else info
            for name, info in sorted(header.items())}


def fingerprint(folder: Path) -> dict[str, object]:
    """Every file under ``folder`` (relative name → contents): equal fingerprints, identical artifacts."""
    return {p.relative_to(folder).as_posix(): _content(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def reset(parent: Path, target: Path, pristine: Path) -> None:
    """Empty ``parent`` and put the old artifact back at ``target``."""
    for entry in parent.iterdir():
        shutil.rmtree(entry)
    shutil.copytree(pristine, target)


def kill_at_every_boundary(tmp_path, write_old, save_new, exchange=True) -> list[tuple[str, str]]:
    """Write the old artifact, then kill ``save_new(target)`` at each of its step boundaries in turn. After every kill:
    the target is byte-identical to the complete old or the complete new artifact (or, at the fallback's one instant
    between its renames, missing — and ``recover`` restores the complete new one); the next save leaves the complete
    new artifact and no leftover. Returns ``(boundary label, target state)`` per kill."""
    parent, pristine = tmp_path / "saves", tmp_path / "pristine" / "artifact"
    target = parent / "artifact"
    parent.mkdir()
    write_old(target)
    old = fingerprint(target)
    shutil.copytree(target, pristine)
    labels = boundaries(lambda: save_new(target), tmp_path, exchange)
    new = fingerprint(target)
    assert new != old and sorted(os.listdir(parent)) == ["artifact"]
    states = []
    for k, label in enumerate(labels, start=1):
        reset(parent, target, pristine)
        assert fork_run(lambda: save_new(target), step=k, exchange=exchange) == KILLED, (k, label)
        if target.exists():
            assert fingerprint(target) in (old, new), f"killed at {label!r}: the target is neither artifact"
            state = "old" if fingerprint(target) == old else "new"
        else:
            assert not exchange and label == "old moved aside", f"killed at {label!r}: the target is gone"
            assert {state for state, _, _ in _io.leftovers(target)} == {"ready", "old"}
            assert _io.recover(target) == target and fingerprint(target) == new  # the load helper: nothing lost
            state = "missing"
        states.append((label, state))
        save_new(target)  # the next save: complete, and it cleans every leftover
        assert fingerprint(target) == new and sorted(os.listdir(parent)) == ["artifact"], label
    kinds = [state for _, state in states]
    assert kinds == sorted(kinds, key=ORDER.index) and kinds[0] == "old" and kinds[-1] == "new", states
    assert ("missing" in kinds) == (not exchange)
    return states


def tokenizer():
    return OracleLanguage(num_words=91).tokenizer(model_max_length=16)


def llada(seed: int) -> LLaDAModelLM:
    torch.manual_seed(seed)
    return LLaDAModelLM(tiny_llada_config()).eval()


def dream(seed: int) -> DreamModel:
    torch.manual_seed(seed)
    return DreamModel(tiny_dream_config()).eval()


def image_pipeline(seed: int):
    from diffusers import VQModel

    from hf_dlm import MaskedImageTransformer, MaskGITScheduler
    from hf_dlm.pipelines import MaskedImagePipeline

    torch.manual_seed(seed)
    vqvae = VQModel(act_fn="silu", block_out_channels=[8], down_block_types=["DownEncoderBlock2D"], in_channels=3,
                    latent_channels=8, layers_per_block=1, norm_num_groups=8, num_vq_embeddings=8, out_channels=3,
                    sample_size=8, up_block_types=["UpDecoderBlock2D"], mid_block_add_attention=False,
                    lookup_from_codebook=True).eval()
    transformer = MaskedImageTransformer(codebook_size=8, sample_size=4, hidden_size=32, num_layers=1,
                                         num_attention_heads=2, num_classes=10).eval()
    return MaskedImagePipeline(vqvae=vqvae, transformer=transformer,
                               scheduler=MaskGITScheduler(mask_token_id=8, masking_schedule="arccos"))


def same_artifact(loaded, original) -> bool:
    """Equal logits (models) or equal parameters in every component (pipelines)."""
    if hasattr(original, "components"):
        return all(torch.equal(a, b) for name, part in original.components.items() if isinstance(part, torch.nn.Module)
                   for a, b in zip(part.state_dict().values(), getattr(loaded, name).state_dict().values()))
    ids = torch.randint(0, 90, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.equal(loaded.eval()(ids).logits, original(ids).logits)


# ---------------------------------------------------------------------------------------------------- the kill loops
def _llada_case():
    old, new, tok = llada(0), llada(1), tokenizer()

    def write_old(target):  # a model, then a tokenizer saved into the same folder: the new save must keep it
        old.save_pretrained(target)
        tok.save_pretrained(target)
    return old, new, write_old, lambda target: new.save_pretrained(target), {"tokenizer.json", "tokenizer_config.json"}


def _dream_case():
    old, new = dream(0), dream(1)
    return old, new, lambda t: old.save_pretrained(t), lambda t: new.save_pretrained(t), set()


def _pipeline_case():
    old, new = image_pipeline(0), image_pipeline(1)
    return old, new, lambda t: old.save_pretrained(t), lambda t: new.save_pretrained(t), set()


@functools.cache
def _quantized() -> LLaDAModelLM:
    return tiny_quantized_llada()  # quantizing takes a few seconds: once for both swap paths


def _quant_case():  # quantizing a float model and saving over it
    old, new = llada(0), _quantized()
    return old, new, lambda t: old.save_pretrained(t), lambda t: new.save_pretrained(t), set()


def _save_atomically_case():  # model + tokenizer, replacing the folder whole
    old, new, tok = llada(0), llada(1), tokenizer()
    return (old, new, lambda t: _io.save_atomically(t, old, tok), lambda t: _io.save_atomically(t, new, tok),
            {"tokenizer.json"})


CASES = {"llada": _llada_case, "dream": _dream_case, "image-pipeline": _pipeline_case, "quant-dllm": _quant_case,
         "save_atomically": _save_atomically_case}


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
@pytest.mark.parametrize("case", list(CASES))
def test_save_killed_at_every_boundary(case, exchange, tmp_path):
    old, new, write_old, save_new, kept = CASES[case]()
    states = kill_at_every_boundary(tmp_path, write_old, save_new, exchange)
    labels = [label for label, _ in states]
    assert "staged" in labels and ("swapped" in labels) == exchange  # the swap itself was among the kill points
    target, pristine = tmp_path / "saves" / "artifact", tmp_path / "pristine" / "artifact"
    assert same_artifact(load_artifact(pristine), old) and same_artifact(load_artifact(target), new)
    assert kept <= set(os.listdir(target))
    assert not [name for name in os.listdir(target) if name.startswith(".") or name.endswith(".tmp")]


# ------------------------------------------------------------------------------------------------ Trainer checkpoints
def _train(output_dir: Path, resume=None) -> None:
    from hf_dlm.training import MaskedDiffusionTrainer, MaskedDiffusionTrainingArguments, TokenIdsDataset

    args = MaskedDiffusionTrainingArguments(output_dir=str(output_dir), max_steps=2, save_steps=1,
                                            save_strategy="steps", per_device_train_batch_size=2, report_to=[],
                                            use_cpu=True, disable_tqdm=True, logging_steps=1, seed=0,
                                            dataloader_num_workers=0)
    ids = torch.randint(0, 90, (4, 12), generator=torch.Generator().manual_seed(0))
    trainer = MaskedDiffusionTrainer(model=llada(0), args=args, train_dataset=TokenIdsDataset(ids))
    trainer.train(resume_from_checkpoint=resume)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """An uninterrupted run (2 steps, a checkpoint after each) and the boundaries its saves pass."""
    root = tmp_path_factory.mktemp("reference")
    labels = boundaries(lambda: _train(root / "run"), root)
    files = {name: sorted(os.listdir(root / "run" / name)) for name in ("checkpoint-1", "checkpoint-2")}
    weights = {name: (root / "run" / name / "model.safetensors").read_bytes() for name in files}
    return labels, files, weights


def check_checkpoints(run: Path, files, weights) -> list[str]:
    """Every ``checkpoint-N`` folder present is complete: the reference's files, its weights, loadable."""
    present = sorted(name for name in os.listdir(run) if name.startswith("checkpoint-"))
    for name in present:
        assert sorted(os.listdir(run / name)) == files[name], name
        assert (run / name / "model.safetensors").read_bytes() == weights[name], name
        state = json.loads((run / name / "trainer_state.json").read_text())
        assert state["global_step"] == int(name.split("-")[1])
        LLaDAModelLM.from_pretrained(run / name)
    return present


def test_trainer_checkpoint_killed_at_every_boundary(reference_run, tmp_path):
    labels, files, weights = reference_run
    assert labels.count("staged") == 2  # each checkpoint folder is swapped in whole
    seen = []
    for k, label in enumerate(labels, start=1):
        run = tmp_path / f"run-{k}"
        assert fork_run(lambda: _train(run), step=k) == KILLED, (k, label)
        seen.append(tuple(check_checkpoints(run, files, weights)))
    # checkpoints appear whole, one after the other
    assert seen[0] == () and seen[-1] == ("checkpoint-1", "checkpoint-2")
    assert sorted(seen, key=len) == seen


def test_trainer_resumes_after_a_kill_and_cleans_up(reference_run, tmp_path):
    labels, files, weights = reference_run
    second_ready = [k for k, label in enumerate(labels, start=1) if label == "ready"][1]
    run = tmp_path / "run"
    assert fork_run(lambda: _train(run), step=second_ready) == KILLED  # checkpoint-2 complete, not yet in place
    assert check_checkpoints(run, files, weights) == ["checkpoint-1"]
    assert {state for state, _, _ in _io.leftovers(run / "checkpoint-2")} == {"ready", "staging"}
    assert fork_run(lambda: _train(run, resume=True)) == 0
    assert check_checkpoints(run, files, weights) == ["checkpoint-1", "checkpoint-2"]  # an exact resume
    assert not [name for name in os.listdir(run) if name.startswith(".")]


# ---------------------------------------------------------------------------------------------------- the recovery rule
def _folder(path: Path, text: str) -> Path:
    path.mkdir()
    (path / "weights").write_text(text)
    return path


@pytest.mark.parametrize("present, restored", [
    (["ready", "old", "staging", "trash"], "ready"),  # killed between the fallback's two renames: the new artifact
    (["old", "staging"], "old"),  # no complete new copy: the previous artifact comes back
    (["staging", "trash"], None),  # nothing complete: nothing to restore
])
def test_recover_a_missing_target(present, restored, tmp_path):
    target = tmp_path / "model"
    for i, state in enumerate(present):
        _folder(_io.sibling(target, state, f"{i:024x}"), state)
    assert _io.recover(target) == (target if restored else None)
    if restored:
        assert (target / "weights").read_text() == restored
    assert os.listdir(tmp_path) == (["model"] if restored else [])


def test_recover_keeps_a_present_target_and_removes_every_leftover(tmp_path):
    target = _folder(tmp_path / "model", "current")
    for i, state in enumerate(_io.STATES):
        _folder(_io.sibling(target, state, f"{i:024x}"), state)
    _folder(tmp_path / ".model.staging-notastamp", "not ours")  # other names are never touched
    _folder(tmp_path / (".model-2.staging-" + "0" * 24), "another target's")
    assert _io.recover(target) == target and (target / "weights").read_text() == "current"
    assert sorted(os.listdir(tmp_path)) == [".model-2.staging-" + "0" * 24, ".model.staging-notastamp", "model"]


def test_recover_leaves_a_live_save_alone(tmp_path):
    target = tmp_path / "model"
    live = _folder(_io.sibling(target, "ready", "0" * 24), "being swapped in")
    fd = _io._lock(live)  # as a save in another process holds it
    try:
        assert _io.recover(target) is None and live.is_dir() and not target.exists()
    finally:
        _io._unlock(fd)
    assert _io.recover(target) == target and (target / "weights").read_text() == "being swapped in"


def test_recovery_itself_killed_at_every_boundary(tmp_path):
    """A save killed between the fallback's renames, then its recovery killed at each of its own boundaries: the next
    recovery still restores the complete new artifact."""
    parent, target = tmp_path / "saves", tmp_path / "saves" / "artifact"
    parent.mkdir()
    old, new = llada(0), llada(1)
    old.save_pretrained(target)
    labels = boundaries(lambda: new.save_pretrained(target), tmp_path, exchange=False)
    expected = fingerprint(target)
    old.save_pretrained(target)
    assert fork_run(lambda: new.save_pretrained(target), step=labels.index("old moved aside") + 1,
                    exchange=False) == KILLED
    snapshot = tmp_path / "snapshot"
    shutil.copytree(parent, snapshot)
    steps = boundaries(lambda: _io.recover(target), tmp_path)
    assert steps == ["restored", "marked trash", "removed"]  # restore the new copy, then delete the old one
    for k in range(1, len(steps) + 1):
        shutil.rmtree(parent)
        shutil.copytree(snapshot, parent)
        assert fork_run(lambda: _io.recover(target), step=k) == KILLED
        assert _io.recover(target) == target and fingerprint(target) == expected, steps[k - 1]
        assert os.listdir(parent) == ["artifact"]


# ---------------------------------------------------------------------------------------------------- what a save keeps
def test_save_pretrained_keeps_other_files_and_replaces_old_weights(tmp_path):
    target = tmp_path / "model"
    old, new, tok = llada(0), llada(1), tokenizer()
    old.save_pretrained(target, max_shard_size="50KB")  # sharded: the new, single-file save must not leave shards
    assert any(name.endswith(".index.json") for name in os.listdir(target))
    tok.save_pretrained(target)
    (target / "training_args.bin").write_bytes(b"args")
    (target / "checkpoint-7").mkdir()
    (target / "checkpoint-7" / "optimizer.pt").write_bytes(b"state")
    (target / ".README-stale.md").write_text("a killed card write's temporary")
    new.save_pretrained(target)
    names = set(os.listdir(target))
    assert {"model.safetensors", "tokenizer.json", "training_args.bin", "checkpoint-7"} <= names
    assert not [n for n in names if n.startswith(("model-", ".")) or n.endswith(".index.json")], names
    assert (target / "checkpoint-7" / "optimizer.pt").read_bytes() == b"state"
    assert "AutoTokenizer" in (target / "README.md").read_text()  # the card sees the kept tokenizer
    assert same_artifact(LLaDAModelLM.from_pretrained(target), new)


def test_save_atomically_replaces_the_folder_whole(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "stale.txt").write_text("from an earlier run")
    _io.save_atomically(target, llada(0), extra_files={"info.json": "{}"})
    assert "stale.txt" not in os.listdir(target) and (target / "info.json").read_text() == "{}"
    assert os.listdir(tmp_path) == ["out"]


def test_a_save_that_raises_leaves_the_old_artifact_and_no_leftover(tmp_path, monkeypatch):
    from hf_dlm.hub import remote_code

    target = tmp_path / "model"
    old = llada(0)
    old.save_pretrained(target)
    before = fingerprint(target)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(remote_code, "write_remote_code_module", full_disk)
    with pytest.raises(OSError, match="No space"):
        llada(1).save_pretrained(target)
    assert fingerprint(target) == before and os.listdir(tmp_path) == ["model"]


def test_no_stray_temporary_or_hidden_files(tmp_path):
    llada(0).save_pretrained(tmp_path / "a")
    llada(1).save_pretrained(tmp_path / "a")
    image_pipeline(0).save_pretrained(tmp_path / "p")
    hidden = [p for p in tmp_path.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]
    assert sorted(os.listdir(tmp_path)) == ["a", "p"] and not hidden, hidden


def test_non_main_process_and_unswappable_targets(tmp_path, monkeypatch, caplog):
    model = llada(0)
    model.save_pretrained(tmp_path / "rank1", is_main_process=False)  # a non-main rank writes no model files
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]
    # the working directory cannot be renamed aside: written in place, with a warning naming why
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with caplog.at_level(logging.WARNING, logger="hf_dlm._io"):
        model.save_pretrained(".")
    assert "not atomically" in caplog.text and "working directory" in caplog.text
    assert same_artifact(LLaDAModelLM.from_pretrained(work), model)
    with pytest.raises(ValueError, match="working directory"):
        _io.save_atomically(".", model)


def test_replace_file_cleans_up_after_failures_and_kills(tmp_path):
    path = tmp_path / "state.safetensors"
    path.write_text("old")

    def fails(temporary):
        Path(temporary).write_text("half")
        raise RuntimeError("disk")

    with pytest.raises(RuntimeError):
        _io.replace_file(path, fails)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["state.safetensors"]
    # a writer killed mid-write leaves its temporary; the next write to the same file removes it
    assert fork_run(lambda: _io.replace_file(path, lambda t: (Path(t).write_text("half"), os.kill(os.getpid(), 9))))
    assert len(os.listdir(tmp_path)) == 2 and path.read_text() == "old"
    _io.replace_file(path, lambda t: Path(t).write_text("new"))
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["state.safetensors"]


def test_add_to_cache_killed_at_every_boundary(tmp_path):
    folder = tmp_path / "saved"
    llada(0).save_pretrained(folder)
    cache = tmp_path / "hub"
    repo = cache / "models--hf-dlm-test--tiny"

    def add():
        add_to_cache(folder, "hf-dlm-test/tiny", cache_dir=cache)

    labels = boundaries(add, tmp_path)
    (snapshot,) = (repo / "snapshots").iterdir()
    expected = fingerprint(snapshot)
    assert "staged" in labels
    for k in range(1, len(labels) + 1):
        shutil.rmtree(cache)
        assert fork_run(add, step=k) == KILLED
        snapshots = [p for p in (repo / "snapshots").iterdir() if not p.name.startswith(".")]
        assert snapshots in ([], [snapshot]) and all(fingerprint(p) == expected for p in snapshots)
        add()
        assert os.listdir(repo / "snapshots") == [snapshot.name]
        assert os.listdir(repo / "refs") == ["main"] and (repo / "refs" / "main").read_text() == snapshot.name
