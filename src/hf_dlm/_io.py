"""Writing checkpoints without ever leaving a half-written folder behind."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def save_atomically(output_dir: str | Path, *objects: Any, extra_files: dict[str, str] | None = None) -> Path:
    """``save_pretrained`` every object (model, tokenizer, config …) and write ``extra_files`` (name → text) into a
    temporary sibling folder, then rename it to ``output_dir``: a crash or a full disk never leaves a partial
    checkpoint where a complete one is expected."""
    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output_dir.parent, prefix=f".{output_dir.name}-"))
    try:
        for obj in objects:
            obj.save_pretrained(staging)
        for name, text in (extra_files or {}).items():
            (staging / name).write_text(text)
        if objects and (staging / "README.md").is_file():
            # an hf-dlm card was written under the staging folder's name and before the tokenizer was saved:
            # rewrite it for the final name, with a snippet that loads the tokenizer when there is one
            from .hub.cards import write_model_card

            write_model_card(objects[0], staging, repo_id=output_dir.name)
        if output_dir.exists():
            shutil.rmtree(output_dir)
        os.replace(staging, output_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return output_dir
