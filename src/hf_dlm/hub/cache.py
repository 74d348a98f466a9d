"""Offline hub ids for saved artifacts.

``add_to_cache(folder, repo_id)`` puts a folder written by ``save_pretrained`` (a transformers model or a diffusers
pipeline) into the local Hub cache layout — ``models--{org}--{name}/snapshots/<commit>/…`` with ``refs/<revision>``
holding the commit — so ``from_pretrained(repo_id)`` works with ``HF_HUB_OFFLINE=1``: how tests, demos and
air-gapped users load by id.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from huggingface_hub import constants
from huggingface_hub.utils import HFValidationError, validate_repo_id
from transformers.utils import logging

from .._io import atomic_folder, recover, replace_file

logger = logging.get_logger(__name__)


def check_repo_id(repo_id: str) -> str:
    """Raise a ``ValueError`` naming ``repo_id`` unless it is a valid Hub model id (``name`` or ``org/name``)."""
    if not isinstance(repo_id, str):
        raise ValueError(f"`repo_id` must be a string such as 'org/name', got {repo_id!r}.")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"`repo_id` {repo_id!r} is not a valid Hub id ('name' or 'org/name' of letters, digits, "
                         f"'-', '_', '.'): {error}") from None
    return repo_id


def artifact_kind(folder: str | Path) -> str:
    """What a saved folder holds: ``"pipeline:<class>"`` for a diffusers pipeline (``model_index.json``),
    ``"model:<model_type>"`` for a transformers model (``config.json`` with weights). Raises ``ValueError`` for a
    folder that is not a saved artifact."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"`folder` {str(folder)!r} is not a directory.")
    index = folder / "model_index.json"
    if index.is_file():
        return f"pipeline:{json.loads(index.read_text()).get('_class_name', 'unknown')}"
    config = folder / "config.json"
    weights = list(folder.glob("*.safetensors")) + list(folder.glob("*.safetensors.index.json"))
    if config.is_file() and weights:
        return f"model:{json.loads(config.read_text()).get('model_type', 'unknown')}"
    raise ValueError(f"`folder` {str(folder)!r} is not a saved artifact: it needs `model_index.json` (a diffusers "
                     "pipeline) or `config.json` with safetensors weights (a transformers model), as "
                     "`save_pretrained` writes them.")


def folder_commit_hash(folder: str | Path) -> str:
    """A 40-hex commit id determined by the folder's relative file names and contents (same files, same id)."""
    digest = hashlib.sha1()
    root = Path(folder)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def add_to_cache(folder: str | Path, repo_id: str, revision: str = "main", cache_dir: str | Path | None = None) -> Path:
    """Copy a saved artifact into the Hub cache as ``repo_id`` at ``revision``; returns the snapshot folder.

    ``cache_dir`` defaults to the cache ``huggingface_hub`` loads from (``HF_HUB_CACHE``). The snapshot is written to a
    hidden staging folder and renamed into place (``hf_dlm._io.atomic_folder``: a killed copy's leftovers are removed
    by the next add of the same files), and ``refs/<revision>`` is replaced atomically (``hf_dlm._io.replace_file``),
    so a reader never sees a partial snapshot or ref. Adding the same files again is a no-op apart from the ref; two
    processes adding them at once both succeed (the first snapshot stays)."""
    check_repo_id(repo_id)
    kind = artifact_kind(folder)
    if not revision or "/" in revision or revision.startswith("."):
        raise ValueError(f"`revision` must be a branch name without '/', got {revision!r}.")
    cache = Path(cache_dir) if cache_dir is not None else Path(constants.HF_HUB_CACHE)
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = folder_commit_hash(folder)
    snapshot = repo / "snapshots" / commit
    if recover(snapshot) is None:  # a snapshot folder, named by its content's hash, is complete once it exists
        with atomic_folder(snapshot, replace=False) as staging:
            shutil.copytree(folder, staging, dirs_exist_ok=True)
    refs = repo / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    replace_file(refs / revision, lambda temporary: Path(temporary).write_text(commit))
    logger.info("added %s (%s) to the Hub cache as %s@%s (%s)", folder, kind, repo_id, revision, commit)
    return snapshot


__all__ = ["add_to_cache", "artifact_kind", "check_repo_id", "folder_commit_hash"]
