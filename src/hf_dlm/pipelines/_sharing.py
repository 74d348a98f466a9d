"""``save_pretrained`` / ``push_to_hub`` of our diffusers pipelines: the marker ``config.json`` that
``pipeline("text-to-image")`` reads, the hf-dlm model card, and one-commit pushes (diffusers' own ``push_to_hub``
would write its generic card over ours)."""

from __future__ import annotations

import os
from typing import Any


class PipelineSharingMixin:
    """Mixed in before ``DiffusionPipeline``."""

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        """diffusers' ``save_pretrained``, plus the marker ``config.json`` (see ``text_to_image.py``) and the card."""
        from ..hub.cards import write_model_card
        from .text_to_image import MaskedImagePipelineConfig

        push = kwargs.pop("push_to_hub", False)
        hub_kwargs = {key: kwargs.pop(key) for key in ("repo_id", "commit_message", "private", "token", "create_pr")
                      if key in kwargs}
        super().save_pretrained(save_directory, *args, **kwargs)
        MaskedImagePipelineConfig().save_pretrained(save_directory)
        write_model_card(self, save_directory)
        if push:
            from ..hub.push import push_to_hub

            push_to_hub(save_directory, hub_kwargs.pop("repo_id", os.path.basename(os.path.normpath(save_directory))),
                        **hub_kwargs)

    def push_to_hub(self, repo_id: str, *, commit_message: str | None = None, private: bool | None = None,
                    token: str | bool | None = None, create_pr: bool = False, revision: str | None = None,
                    **save_kwargs: Any) -> Any:
        """Upload every component, ``model_index.json`` and the card to ``repo_id`` in one commit."""
        from ..hub.push import push_to_hub

        return push_to_hub(self, repo_id, commit_message=commit_message, private=private, token=token,
                           create_pr=create_pr, revision=revision, **save_kwargs)
