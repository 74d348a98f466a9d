"""Atomic saves: at every instant a save's target folder holds the complete old artifact or the complete new one.

A save to ``parent/NAME`` (:func:`atomic_folder`; our models' and pipelines' ``save_pretrained``, the Trainers'
``checkpoint-N`` folders, :func:`save_atomically`, ``hub.add_to_cache``) goes through hidden siblings whose names
say what they hold::

    .NAME.staging-<stamp>   being written: incomplete
    .NAME.ready-<stamp>     renamed from staging once every file is written and flushed: a complete new artifact
    .NAME.old-<stamp>       the previous artifact, moved aside whole: complete
    .NAME.trash-<stamp>     being deleted: incomplete

1. leftovers of earlier, killed saves to the same target are resolved (:func:`recover`, below);
2. everything is written into ``.NAME.staging-<stamp>`` and flushed (``fsync``); it is renamed ``.NAME.ready-<stamp>``;
3. on Linux one ``renameat2(RENAME_EXCHANGE)`` swaps the ready folder and ``NAME``, so ``NAME`` never stops
   existing; elsewhere (or on a file system without it) ``NAME`` is renamed ``.NAME.old-<stamp>`` and the ready folder
   renamed ``NAME`` — a kill between those two renames leaves no ``NAME``, but a complete copy of each artifact;
4. the previous artifact is renamed ``.NAME.trash-<stamp>``, then deleted.

**Recovery rule** (:func:`recover`; every save to ``NAME`` runs it first; run it yourself before loading a folder
whose saving process was killed):

* when ``NAME`` exists, it is the artifact — complete, since only complete folders are ever renamed to it — and
  every leftover is deleted (a ``ready`` folder beside it is a save killed before its swap, which never happened);
* when ``NAME`` is missing, the newest ``ready`` folder (the new artifact) is renamed ``NAME``, or, with none, the
  newest ``old`` folder (the previous one): a complete artifact is never deleted while the target is missing;
* ``staging`` and ``trash`` folders are incomplete by construction and are always deleted. A folder is deleted by
  renaming it ``trash`` first, so a kill halfway through a deletion never leaves a partial folder under a name that
  claims to be complete.

A save holds an ``flock`` on each folder it is moving (released by the kernel when the process dies), and
:func:`recover` leaves locked folders alone: two processes saving to the same target do not delete each other's
work (the last swap wins). Loading never writes: a reader that finds ``NAME`` missing after a crash calls
:func:`recover`. Without ``fcntl`` (Windows) every leftover counts as abandoned.

Our models' ``save_pretrained`` writes into an existing folder as transformers does: entries of the old folder that
the new save does not write (a tokenizer saved there before, ``training_args.bin``, ``checkpoint-N`` folders) are
carried into the new one (:func:`carry_over`: hard links, or copies where links are not supported), except old weight
files, which the new weights replace. :func:`save_atomically` replaces the folder whole.

Test hook: with ``HF_DLM_FAULT_STEP=k`` in the environment the process dies (``os._exit(137)``) at the k-th step
boundary of a save (:func:`fault_point`); ``tests/reliability/test_rel_atomic_saves.py`` kills a save at every
boundary that way.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import errno
import os
import re
import secrets
import shutil
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers.utils import logging

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; every leftover counts as abandoned
    fcntl = None  # type: ignore[assignment]

logger = logging.get_logger(__name__)

STATES = ("staging", "ready", "old", "trash")
FAULT_STEP_ENV = "HF_DLM_FAULT_STEP"
# weight files the new save's weights replace (transformers' / diffusers' / peft's names, shards, variants, indexes)
WEIGHT_FILE = re.compile(r"^(model|pytorch_model|diffusion_pytorch_model|adapter_model)(-\d{5}-of-\d{5})?"
                         r"(\.[\w-]+)?\.(safetensors|bin)(\.index\.json)?$")
# temporaries of in-place atomic file writes (replace_file, the card and remote-code writers) are never carried
_TEMPORARY = re.compile(r"(^\..*\.tmp-[0-9a-f]{24}$)|(^\.(README|hf_dlm_auto)-)|(\.tmp$)")

_use_exchange = sys.platform.startswith("linux")  # tests switch it off to exercise the two-rename fallback
_active: contextvars.ContextVar[tuple[tuple[Path, Path], ...]] = contextvars.ContextVar("hf_dlm_staging", default=())
fault_trace: list[str] = []  # labels of the boundaries passed while HF_DLM_FAULT_STEP is set
_fault_count = 0


# ------------------------------------------------------------------------------------------------ test hook
def fault_point(label: str) -> None:
    """Test hook, a no-op unless ``HF_DLM_FAULT_STEP`` is set: count a step boundary of a save (recording ``label``
    in :data:`fault_trace`) and kill the process — ``os._exit(137)``, no ``finally`` runs — at boundary number
    ``HF_DLM_FAULT_STEP``."""
    global _fault_count
    step = os.environ.get(FAULT_STEP_ENV)
    if not step:
        return
    _fault_count += 1
    fault_trace.append(label)
    if _fault_count == int(step):
        os._exit(137)


def reset_fault_points() -> None:
    """Restart the :func:`fault_point` count and clear :data:`fault_trace` (test hook)."""
    global _fault_count
    _fault_count = 0
    fault_trace.clear()


# ------------------------------------------------------------------------------------------------ small pieces
def _new_stamp() -> str:
    """24 hex digits that sort by time: nanoseconds, then randomness."""
    return f"{time.time_ns():016x}{secrets.token_hex(4)}"


def _real(path: str | os.PathLike) -> Path:
    """The absolute path with symlinks resolved: a save through a link swaps the folder the link points at."""
    return Path(os.path.realpath(path))


def sibling(target: str | os.PathLike, state: str, stamp: str) -> Path:
    """The hidden sibling ``.NAME.<state>-<stamp>`` of ``target``."""
    target = Path(target)
    return target.parent / f".{target.name}.{state}-{stamp}"


def leftovers(target: str | os.PathLike) -> list[tuple[str, str, Path]]:
    """The hidden siblings of ``target`` left by saves to it, as ``(state, stamp, path)`` sorted by stamp."""
    target = _real(target)
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.({'|'.join(STATES)})-([0-9a-f]{{24}})$")
    try:
        names = os.listdir(target.parent)
    except FileNotFoundError:
        return []
    found = [(m.group(1), m.group(2), target.parent / name) for name in names if (m := pattern.match(name))]
    return sorted(found, key=lambda item: item[1])


def _lock(path: Path, blocking: bool = False) -> int | None:
    """Open ``path`` and take an exclusive ``flock`` on it; the descriptor, ``None`` when another process holds the
    lock (or ``path`` vanished), -1 where locks are unsupported."""
    if fcntl is None:
        return -1
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError as error:  # a file system without flock: proceed unlocked
        logger.debug("no flock on %s (%s)", path, error)
        os.close(fd)
        return -1
    return fd


def _unlock(*fds: int | None) -> None:
    for fd in fds:
        if fd is not None and fd >= 0:
            os.close(fd)


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError):  # e.g. a file system refusing fsync on directories
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_tree(folder: Path) -> None:
    """Flush every file and folder under ``folder`` to disk (so a power cut after the rename finds the data)."""
    for root, _, files in os.walk(folder):
        for name in files:
            if not os.path.islink(os.path.join(root, name)):
                _fsync(Path(root, name))
        _fsync(Path(root))


_renameat2: Any = None


def _exchange(a: Path, b: Path) -> bool:
    """Swap ``a`` and ``b`` in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where that is unsupported."""
    global _renameat2
    if not _use_exchange:
        return False
    if _renameat2 is None:
        libc = ctypes.CDLL(None, use_errno=True)
        _renameat2 = getattr(libc, "renameat2", False)
        if _renameat2:
            _renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            _renameat2.restype = ctypes.c_int
    if not _renameat2:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if _renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False  # kernel or file system without RENAME_EXCHANGE
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def _delete(path: Path, target: Path) -> None:
    """Delete a save's hidden folder: renamed ``.NAME.trash-<new stamp>`` first (unless it is one), so a kill mid-way
    leaves only a folder marked incomplete."""
    if not path.name.startswith(f".{target.name}.trash-"):
        trash = sibling(target, "trash", _new_stamp())
        os.rename(path, trash)
        fault_point("marked trash")
        path = trash
    shutil.rmtree(path, ignore_errors=True)
    fault_point("removed")


# ------------------------------------------------------------------------------------------------ recovery
def recover(target: str | os.PathLike) -> Path | None:
    """Resolve what killed saves left next to ``target`` (the recovery rule in this module's docstring): restore a
    missing target from a complete hidden copy, delete every abandoned leftover. Returns ``target`` if it exists
    afterwards, else ``None``. Folders a live save is using (locked) are left alone."""
    target = _real(target)
    found = leftovers(target)
    if not found:
        return target if target.exists() else None
    locks: dict[Path, int | None] = {}
    try:
        for _, _, path in found:
            locks[path] = _lock(path)
        free = [(state, stamp, path) for state, stamp, path in found if locks[path] is not None]
        if not os.path.lexists(target):
            complete = [item for item in free if item[0] == "ready"] or [item for item in free if item[0] == "old"]
            if complete:
                state, _, path = complete[-1]
                os.rename(path, target)
                fault_point("restored")
                logger.warning("%s was missing after an interrupted save: restored the %s artifact from %s.",
                               target, "new" if state == "ready" else "previous", path.name)
                free.remove(complete[-1])
        for _, _, path in free:
            logger.info("removing %s, left by an interrupted save to %s", path.name, target.name)
            _delete(path, target)
    finally:
        _unlock(*locks.values())
    return target if target.exists() else None


# ------------------------------------------------------------------------------------------------ saving
def _begin(target: Path, stamp: str | None = None) -> tuple[Path, str, int | None]:
    """Resolve leftovers, then create and lock a fresh staging folder for ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    stamp = stamp or _new_stamp()
    staging = sibling(target, "staging", stamp)
    staging.mkdir()
    return staging, stamp, _lock(staging)


def _commit(folder: Path, target: Path, stamp: str, replace: bool = True) -> bool:
    """Swap the complete new artifact ``folder`` (a staging folder of ``target``, or a folder inside one) in at
    ``target``; with ``replace=False`` an existing target is kept and ``folder`` discarded. True if swapped in."""
    _fsync_tree(folder)
    fault_point("staged")
    ready = sibling(target, "ready", stamp)
    os.rename(folder, ready)
    _fsync(target.parent)
    fault_point("ready")
    if not os.path.lexists(target):
        try:
            os.rename(ready, target)
        except OSError:  # another save put a target there meanwhile
            if replace or not target.is_dir():
                raise
        else:
            _fsync(target.parent)
            fault_point("moved in")
            return True
    if not replace:
        _delete(ready, target)
        return False
    old_lock = _lock(target, blocking=True)  # waits for a concurrent save to the same target to finish
    try:
        if _exchange(ready, target):  # ready now holds the previous artifact
            aside = ready
            fault_point("swapped")
        else:
            aside = sibling(target, "old", stamp)
            os.rename(target, aside)
            fault_point("old moved aside")
            os.rename(ready, target)
            fault_point("new moved in")
        _fsync(target.parent)
        _delete(aside, target)
    finally:
        _unlock(old_lock)
    return True


@dataclass
class SaveTarget:
    """Where a ``save_pretrained`` writes (:func:`save_target`): ``folder`` to write into, ``previous`` the old folder
    whose other files should be carried over (``None``: nothing to carry), ``name`` the artifact's final name."""

    folder: Path
    previous: Path | None
    name: str


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike, *, replace: bool = True) -> Iterator[Path]:
    """Yield a fresh staging folder for ``target``; when the block ends normally, it atomically becomes ``target``
    (the previous artifact is deleted). When the block raises, the staging folder is deleted and ``target`` is left
    as it was. ``replace=False`` keeps an existing target (for content-addressed folders)."""
    target = _real(target)
    reason = _refusal(target)
    if reason is not None:
        raise ValueError(f"cannot save to {target} atomically: {reason}.")
    staging, stamp, lock = _begin(target)
    token = _active.set(_active.get() + ((staging.resolve(), target),))
    try:
        try:
            yield staging
        finally:
            _active.reset(token)
        _commit(staging, target, stamp, replace=replace)
    except BaseException:
        if staging.exists():
            _delete(staging, target)
        raise
    finally:
        _unlock(lock)


def inside_staging(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is (inside) a staging folder this process is writing: a save there writes directly."""
    folder = Path(folder).resolve()
    return any(folder == staging or staging in folder.parents for staging, _ in _active.get())


def final_name(folder: str | os.PathLike) -> str:
    """The name ``folder`` will have once its save completes (a staging folder's target name; else its own)."""
    folder = Path(folder).resolve()
    for staging, target in _active.get():
        if folder == staging:
            return target.name
    return folder.name


def _refusal(target: Path) -> str | None:
    """Why a save to ``target`` cannot be staged beside it (it is then written in place), or ``None``."""
    if target.is_file():
        return "it is a file"  # transformers refuses it by name
    if os.path.ismount(target):
        return "it is a mount point (a sibling folder cannot be renamed onto it)"
    cwd = Path.cwd().resolve()
    if target.exists() and (cwd == target.resolve() or target.resolve() in cwd.parents):
        return "it holds the working directory"
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        return f"its parent {parent} is not writable"
    return None


@contextlib.contextmanager
def save_target(save_directory: str | os.PathLike) -> Iterator[SaveTarget]:
    """Where a ``save_pretrained(save_directory)`` writes: inside a save already being staged, directly; otherwise a
    fresh staging folder swapped in atomically when the block ends (see :func:`atomic_folder`). A target that cannot
    be staged (a mount point, the working directory, an unwritable parent) is written in place, with a warning."""
    target = _real(save_directory)
    if inside_staging(target):
        yield SaveTarget(target, None, final_name(target))
        return
    reason = _refusal(target)
    if reason is not None:
        if not target.is_file():
            logger.warning("saving into %s in place, not atomically: %s.", target, reason)
        yield SaveTarget(target, None, target.name)
        return
    previous = target if target.is_dir() else None
    with atomic_folder(target) as staging:
        yield SaveTarget(staging, previous, target.name)


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination, follow_symlinks=False)
    except (OSError, NotImplementedError):  # no hard links here: a copy
        shutil.copy2(source, destination, follow_symlinks=False)


def carry_over(source: str | os.PathLike, staging: str | os.PathLike, skip: Collection[str] = ()) -> list[str]:
    """Bring into ``staging`` every top-level entry of ``source`` that the new save did not write (the staging folder
    has no entry of that name) — except old weight files (:data:`WEIGHT_FILE`: the new weights replace them all),
    temporaries, and the names in ``skip``. Files are hard-linked (copied where links are not supported), folders
    rebuilt of links; call it after the new save wrote its files, so no write ever goes through a shared link.
    Returns the names carried."""
    source, staging = Path(source), Path(staging)
    carried = []
    for entry in sorted(os.listdir(source)):
        if entry in skip or WEIGHT_FILE.match(entry) or _TEMPORARY.search(entry) or os.path.lexists(staging / entry):
            continue
        path = source / entry
        if path.is_dir() and not path.is_symlink():
            shutil.copytree(path, staging / entry, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(str(path), str(staging / entry))
        carried.append(entry)
    if carried:
        logger.info("kept %s from the previous %s", carried, source)
    fault_point("carried")
    return carried


def replace_file(path: str | os.PathLike, write: Callable[[str], Any]) -> Path:
    """Write one file atomically: ``write(temporary)`` fills ``.NAME.tmp-<stamp>`` beside ``path``, which is flushed
    and renamed onto ``path``. The temporary is removed if ``write`` raises; temporaries that killed writers left
    (unlocked) are removed first."""
    path = Path(path)
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.tmp-[0-9a-f]{{24}}$")
    for name in os.listdir(path.parent):
        if pattern.match(name):
            fd = _lock(path.parent / name)
            if fd is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path.parent / name)
                _unlock(fd)
    temporary = path.parent / f".{path.name}.tmp-{_new_stamp()}"
    temporary.touch()
    fd = _lock(temporary)
    try:
        write(str(temporary))
        _fsync(temporary)
        os.replace(temporary, path)
    finally:
        _unlock(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    return path


def save_atomically(output_dir: str | Path, *objects: Any, extra_files: dict[str, str] | None = None) -> Path:
    """``save_pretrained`` every object (model, tokenizer, pipeline …) and write ``extra_files`` (name → text) into
    a staging folder that then atomically replaces ``output_dir`` whole (nothing of an earlier folder is kept): a
    crash or a full disk never leaves a partial artifact where a complete one is expected (see the module docstring
    for the steps and the recovery rule)."""
    output_dir = Path(output_dir)
    with atomic_folder(output_dir) as staging:
        for obj in objects:
            obj.save_pretrained(staging)
            fault_point(f"saved {type(obj).__name__}")
        for name, text in (extra_files or {}).items():
            (staging / name).write_text(text)
        write_card = getattr(objects[0], "_write_model_card", None) if objects else None
        if write_card is not None and (staging / "README.md").is_file():
            # an hf-dlm card was written before the tokenizer was saved: the artifact (our models' and pipelines'
            # sharing mixins, which use hf_dlm.hub above this module) rewrites it, with a snippet that loads the
            # tokenizer when there is one
            write_card(staging, repo_id=_real(output_dir).name)
            fault_point("card written")
    return output_dir


# ------------------------------------------------------------------------------------------------ Trainers
class AtomicCheckpointMixin:
    """Mixed in before ``transformers.Trainer``: every ``checkpoint-N`` folder appears complete or not at all.

    transformers writes a checkpoint's files one by one into ``checkpoint-N``; a kill mid-way leaves a partial folder
    that ``resume_from_checkpoint=True`` then picks. Here the whole checkpoint (model, optimizer, scheduler, RNG
    states, trainer state, a subclass's extra files) is written under ``.checkpoint-N.staging-<stamp>/`` and swapped
    in as one folder (see the module docstring); old checkpoints are rotated after the swap. Under DDP every process
    writes into the same staging folder (its stamp is the step) and the main process swaps it in after a barrier."""

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        # start-up time: trainer_utils imports torch (~5 s); _io is also imported by the torch-free hf_dlm.hub
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

        run_dir = _real(self._get_output_dir(trial=trial))
        target = run_dir / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        stamp = f"{self.state.global_step:024x}"  # the same on every process
        main = self.args.should_save
        holder, lock = sibling(target, "staging", stamp), None
        if main:
            holder, stamp, lock = _begin(target, stamp)
        self.accelerator.wait_for_everyone()
        token = _active.set(_active.get() + ((holder.resolve(), target),))
        self._get_output_dir = lambda trial=None: str(holder)  # the instance attribute shadows the method
        try:
            super()._save_checkpoint(model, trial)
            staged = str(holder / target.name)
            if self.state.best_model_checkpoint == staged:
                self.state.best_model_checkpoint = str(target)
                if main:  # the state was written with the staging path
                    from transformers.trainer import TRAINER_STATE_NAME  # start-up time, as above

                    self.state.save_to_json(os.path.join(staged, TRAINER_STATE_NAME))
            self.accelerator.wait_for_everyone()
            if main:
                inner_lock = _lock(holder / target.name)
                try:
                    _commit(holder / target.name, target, stamp)
                finally:
                    _unlock(inner_lock)
                _delete(holder, target)
                rotate_checkpoints(output_dir=str(run_dir), save_total_limit=self.args.save_total_limit,
                                   best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True)
        except BaseException:
            if main and holder.exists():
                _delete(holder, target)
            raise
        finally:
            del self._get_output_dir
            _active.reset(token)
            _unlock(lock)


__all__ = ["AtomicCheckpointMixin", "SaveTarget", "atomic_folder", "carry_over", "fault_point", "final_name",
           "inside_staging", "leftovers", "recover", "replace_file", "save_atomically", "save_target", "sibling"]
