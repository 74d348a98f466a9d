"""``auto_map`` for checkpoints of our transformers architectures, so a user without the plugin is told what to install.

``save_pretrained`` writes a tiny module, ``hf_dlm_auto.py``, next to the weights and points ``config.json``'s
``auto_map`` at it. With ``hf_dlm`` imported the Auto classes use the registered (local) classes and never read the
module. Without it, transformers asks for ``trust_remote_code=True``; with that, it checks the module's imports and
either says ``... requires the following packages that were not found in your environment: hf_dlm. Run `pip install
hf_dlm``` or, when hf-dlm is installed, imports it, which registers everything and hands back our classes.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

MODULE = "hf_dlm_auto"

# model_type → {Auto class: class name exported by hf_dlm}
AUTO_CLASSES: dict[str, dict[str, str]] = {
    "llada": {"AutoConfig": "LLaDAConfig", "AutoModel": "LLaDAModelLM", "AutoModelForCausalLM": "LLaDAModelLM",
              "AutoModelForMaskedLM": "LLaDAModelLM"},
    "Dream": {"AutoConfig": "DreamConfig", "AutoModel": "DreamModel", "AutoModelForCausalLM": "DreamModel",
              "AutoModelForMaskedLM": "DreamForMaskedLM"},
    "logit_fm": {"AutoConfig": "LogitFMConfig", "AutoModel": "LogitFMModel", "AutoModelForCausalLM": "LogitFMModel"},
}


def auto_map_for(model_type: str) -> dict[str, str] | None:
    """``auto_map`` entries for a model type (``None`` for types hf-dlm does not define)."""
    classes = AUTO_CLASSES.get(model_type)
    return None if classes is None else {auto: f"{MODULE}.{name}" for auto, name in classes.items()}


def module_source(model_type: str) -> str:
    names = sorted(set(AUTO_CLASSES[model_type].values()))
    return ('"""The classes of this checkpoint live in the hf-dlm library: `pip install hf-dlm`, then\n'
            '`import hf_dlm` before loading (no `trust_remote_code` needed). This module only lets\n'
            '`trust_remote_code=True` find them, or tells you what to install."""\n\n'
            f"import hf_dlm\n"
            f"from hf_dlm import {', '.join(names)}\n\n"
            f"__all__ = {names!r}\n")


def write_remote_code_module(model_type: str, folder: str | os.PathLike) -> Path | None:
    """Write ``hf_dlm_auto.py`` into ``folder`` (atomically); ``None`` for model types without an ``auto_map``."""
    if model_type not in AUTO_CLASSES:
        return None
    folder = Path(folder)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{MODULE}-", suffix=".py")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(module_source(model_type))
        os.replace(temporary, folder / f"{MODULE}.py")
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return folder / f"{MODULE}.py"


def set_auto_map(config: Any) -> None:
    """Point ``config.auto_map`` at :data:`MODULE` (kept entries of other Auto classes are replaced)."""
    auto_map = auto_map_for(getattr(config, "model_type", ""))
    if auto_map is not None:
        config.auto_map = auto_map


__all__ = ["AUTO_CLASSES", "MODULE", "auto_map_for", "module_source", "set_auto_map", "write_remote_code_module"]
