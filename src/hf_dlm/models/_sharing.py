"""``save_pretrained`` / ``push_to_hub`` of our transformers models: the model card, ``auto_map`` and one-commit pushes.

Mixed in before ``PreTrainedModel``. The card and push logic live in ``hf_dlm.hub``, which sits below the models.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._io import carry_over, fault_point, save_target
from ..hub.cards import set_card_metadata, write_model_card
from ..hub.push import push_to_hub as push
from ..hub import remote_code

_HUB_KWARGS = ("repo_id", "commit_message", "commit_description", "private", "token", "revision", "create_pr")


class HubSharingMixin:
    """Adds to transformers' saving: atomicity (``hf_dlm._io``), ``README.md`` (the hf-dlm model card),
    ``hf_dlm_auto.py`` with ``auto_map`` in ``config.json`` (users without the plugin are told to install it), and a
    ``push_to_hub`` that uploads weights, configs, generation config, card (and optionally the tokenizer) in one
    commit."""

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, push_to_hub: bool = False,
                        **kwargs: Any) -> None:
        """transformers' ``save_pretrained``, made atomic: ``save_directory`` holds the complete old artifact or the
        complete new one at every instant (the files are written into a hidden sibling folder that is then swapped
        in; see ``hf_dlm._io`` for the steps and the recovery rule after a crash).

        As with transformers' in-place save, files of an existing ``save_directory`` that this save does not write
        (a tokenizer saved there before, ``training_args.bin``, ``checkpoint-N`` folders) are kept — hard-linked into
        the new folder — while its old weight files are replaced by the new ones. With ``is_main_process=False``
        nothing is staged (that process writes no model files; the main process's call makes the save). A folder
        that cannot be swapped (a mount point, one holding the working directory) is written in place, with a
        warning. ``push_to_hub=True`` uploads the folder once it is complete."""
        hub_kwargs = {key: kwargs.pop(key) for key in _HUB_KWARGS if key in kwargs}
        remote_code.set_auto_map(self.config)
        if not kwargs.get("is_main_process", True):
            super().save_pretrained(save_directory, *args, **kwargs)
        else:
            with save_target(save_directory) as target:
                super().save_pretrained(target.folder, *args, **kwargs)
                fault_point("weights written")
                remote_code.write_remote_code_module(self.config.model_type, target.folder)
                if target.previous is not None:
                    carry_over(target.previous, target.folder, skip=("README.md",))
                self._write_model_card(target.folder, repo_id=target.name)
                fault_point("card written")
        if push_to_hub:
            push(Path(save_directory), hub_kwargs.pop("repo_id", Path(save_directory).name), **hub_kwargs)

    def push_to_hub(self, repo_id: str, *, tokenizer: Any = None, commit_message: str | None = None,
                    commit_description: str | None = None, private: bool | None = None,
                    token: str | bool | None = None, revision: str | None = None, create_pr: bool = False,
                    max_shard_size: int | str | None = "50GB", tags: list[str] | None = None) -> Any:
        """Upload the model (and ``tokenizer``, if given) with its card to ``repo_id`` in one commit; returns the
        ``CommitInfo``. ``tags`` are added to the card's tags."""
        if tags:
            set_card_metadata(self, tags=tags)
        return push(self, repo_id, tokenizer=tokenizer, commit_message=commit_message,
                    commit_description=commit_description, private=private, token=token, revision=revision,
                    create_pr=create_pr, max_shard_size=max_shard_size)

    def _write_model_card(self, folder: str | os.PathLike, *, repo_id: str | None = None) -> Path:
        """Write this model's hf-dlm card into ``folder`` (``hf_dlm._io.save_atomically`` calls it to rewrite the
        card once a tokenizer has been saved beside the model)."""
        return write_model_card(self, folder, repo_id=repo_id)
