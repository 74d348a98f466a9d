"""``save_pretrained`` / ``push_to_hub`` of our diffusers pipelines: the marker ``config.json`` that
``pipeline("text-to-image")`` reads, the hf-dlm model card, and one-commit pushes (diffusers' own ``push_to_hub``
would write its generic card over ours)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from transformers import PretrainedConfig

from .._io import carry_over, fault_point, save_target
from ..hub.cards import write_model_card
from ..hub.push import push_to_hub as upload_to_hub

MODEL_TYPE = "masked_image_pipeline"


class MaskedImagePipelineConfig(PretrainedConfig):
    """Marker config written beside ``model_index.json`` so ``AutoConfig`` can resolve a saved image pipeline (the
    ``text-to-image`` task, ``text_to_image.py``)."""

    model_type = MODEL_TYPE


class PipelineSharingMixin:
    """Mixed in before ``DiffusionPipeline``."""

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        """diffusers' ``save_pretrained``, plus the marker ``config.json`` (see ``text_to_image.py``) and the card,
        made atomic: ``save_directory`` holds the complete old pipeline or the complete new one at every instant
        (written into a hidden sibling folder, then swapped in; see ``hf_dlm._io``). Entries of an existing folder
        that this save does not write are kept (hard-linked), except old weight files; a component folder the save
        writes replaces the old one whole. ``push_to_hub=True`` uploads the folder once it is complete."""
        push = kwargs.pop("push_to_hub", False)
        hub_kwargs = {key: kwargs.pop(key) for key in ("repo_id", "commit_message", "private", "token", "create_pr")
                      if key in kwargs}
        with save_target(save_directory) as target:
            super().save_pretrained(target.folder, *args, **kwargs)
            fault_point("components written")
            MaskedImagePipelineConfig().save_pretrained(target.folder)
            if target.previous is not None:
                carry_over(target.previous, target.folder, skip=("README.md",))
            self._write_model_card(target.folder, repo_id=target.name)
            fault_point("card written")
        if push:
            upload_to_hub(save_directory,
                          hub_kwargs.pop("repo_id", os.path.basename(os.path.normpath(save_directory))), **hub_kwargs)

    def push_to_hub(self, repo_id: str, *, commit_message: str | None = None, private: bool | None = None,
                    token: str | bool | None = None, create_pr: bool = False, revision: str | None = None,
                    **save_kwargs: Any) -> Any:
        """Upload every component, ``model_index.json`` and the card to ``repo_id`` in one commit."""
        return upload_to_hub(self, repo_id, commit_message=commit_message, private=private, token=token,
                             create_pr=create_pr, revision=revision, **save_kwargs)

    def _write_model_card(self, folder: str | os.PathLike, *, repo_id: str | None = None) -> Path:
        """Write this pipeline's hf-dlm card into ``folder`` (``hf_dlm._io.save_atomically`` calls it to rewrite the
        card after the other objects of the save)."""
        return write_model_card(self, folder, repo_id=repo_id)
