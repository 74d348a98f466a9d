"""Pushing artifacts to the Hub: weights, configs, generation config, tokenizer and model card in one commit.

transformers' and diffusers' own ``push_to_hub`` write their libraries' generic cards over ours (``library_name:
transformers`` / ``diffusers``) and push a tokenizer in a second commit. ``push_to_hub`` here stages everything in
a temporary folder and uploads it with a single ``HfApi.upload_folder`` call; our models' and pipelines'
``push_to_hub`` methods call it.
"""

from __future__ import annotations

import importlib
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from huggingface_hub import CommitInfo, HfApi, ModelCard
from transformers.utils import logging

from .._registration import PIPELINE_CLASSES
from .cache import artifact_kind, check_repo_id
from .cards import LIBRARY_NAME, write_model_card
from .remote_code import AUTO_CLASSES

logger = logging.get_logger(__name__)

_FROM_PRETRAINED = re.compile(r'from_pretrained\("([^"]+)"\)')


def load_artifact(folder: str | Path) -> Any:
    """Load a saved hf-dlm model or pipeline folder with the class that wrote it.

    Models load through transformers' ``AutoModelForCausalLM`` and pipelines through the table of pipeline classes
    in ``hf_dlm._registration`` (this module sits below ``hf_dlm.pipelines``, whose classes use it to share)."""
    kind = artifact_kind(folder)
    if kind.startswith("pipeline:"):
        name = kind.split(":", 1)[1]
        if name not in PIPELINE_CLASSES:
            raise ValueError(f"`folder` {str(folder)!r} holds a {name}, which is not an hf-dlm pipeline "
                             f"(known: {', '.join(sorted(PIPELINE_CLASSES))}).")
        return getattr(importlib.import_module(PIPELINE_CLASSES[name]), name).from_pretrained(folder)
    from transformers import AutoModelForCausalLM  # start-up time: the Auto classes import torch; hf_dlm.hub does not

    model_type = kind.split(":", 1)[1]
    if model_type not in AUTO_CLASSES:
        raise ValueError(f"`folder` {str(folder)!r} holds a {model_type!r} model, which is not an hf-dlm "
                         f"architecture (known: {sorted(AUTO_CLASSES)}).")
    return AutoModelForCausalLM.from_pretrained(folder)


def _retarget_card(folder: Path, repo_id: str) -> bool:
    """Point an hf-dlm card's title and snippet at ``repo_id``; False when the folder has no hf-dlm card."""
    path = folder / "README.md"
    if not path.is_file():
        return False
    card = ModelCard.load(path)
    if card.data.library_name != LIBRARY_NAME:
        return False
    old = _FROM_PRETRAINED.search(card.content)
    content = card.content
    if old is not None and old.group(1) != repo_id:
        content = content.replace(f'"{old.group(1)}"', f'"{repo_id}"').replace(f"`{old.group(1)}`", f"`{repo_id}`")
        content = content.replace(f"# {old.group(1).split('/')[-1]}\n", f"# {repo_id.split('/')[-1]}\n", 1)
    card = ModelCard(content)
    card.data.model_name = repo_id.split("/")[-1]
    card.save(path)
    return True


def _upload(folder: Path, repo_id: str, *, commit_message: str | None, commit_description: str | None,
            private: bool | None, token: str | bool | None, revision: str | None, create_pr: bool) -> CommitInfo:
    api = HfApi(token=token if isinstance(token, str) else None)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    if revision is not None and not revision.startswith("refs/pr"):
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    logger.info("pushing %d files to %s in one commit", len(files), repo_id)
    return api.upload_folder(folder_path=folder, repo_id=repo_id, commit_message=commit_message or "Upload with hf-dlm",
                             commit_description=commit_description, revision=revision, create_pr=create_pr)


def push_to_hub(artifact: Any, repo_id: str, *, tokenizer: Any = None, commit_message: str | None = None,
                commit_description: str | None = None, private: bool | None = None, token: str | bool | None = None,
                revision: str | None = None, create_pr: bool = False, **save_kwargs: Any) -> CommitInfo:
    """Upload a model or pipeline (or a folder one of them was saved to) to ``repo_id`` in one commit.

    Args:
        artifact: an hf-dlm model or pipeline, or the path of a folder written by its ``save_pretrained``.
        repo_id: ``org/name`` (or ``name``) on the Hub ``HF_ENDPOINT`` points at.
        tokenizer: saved into the same commit (models only), so the card's snippet loads it.
        commit_message, commit_description, private, token, revision, create_pr: as ``HfApi.upload_folder``.
        save_kwargs: passed to the artifact's ``save_pretrained`` (e.g. ``max_shard_size``).

    The staged folder gets a card whose snippet loads ``repo_id``. A folder must hold a saved artifact
    (``ValueError`` otherwise); without an hf-dlm card it is loaded once to write one.
    """
    check_repo_id(repo_id)
    with tempfile.TemporaryDirectory(prefix="hf-dlm-push-") as staging:
        staging = Path(staging) / "artifact"
        if isinstance(artifact, (str, Path)):
            source = Path(artifact)
            artifact_kind(source)  # refuses a folder that is not a saved artifact
            if tokenizer is not None:
                raise ValueError("`tokenizer` is for pushing a model object; a folder is pushed with its own files.")
            shutil.copytree(source, staging)
            if not _retarget_card(staging, repo_id):
                write_model_card(load_artifact(source), staging, repo_id=repo_id)
        else:
            staging.mkdir()
            artifact.save_pretrained(staging, **save_kwargs)
            if tokenizer is not None:
                tokenizer.save_pretrained(staging)
            write_model_card(artifact, staging, repo_id=repo_id)
        return _upload(staging, repo_id, commit_message=commit_message, commit_description=commit_description,
                       private=private, token=token, revision=revision, create_pr=create_pr)


__all__ = ["load_artifact", "push_to_hub"]
