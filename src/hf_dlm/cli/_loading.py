"""Loading what a verb works on, by folder or hub id, with errors that say what was expected."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

logger = logging.getLogger(__name__)


def load_text_model(name: str) -> tuple[Any, Any]:
    """(model, tokenizer or None) of an hf-dlm text model (diffusion LM, Di[M]O generator, Quant-dLLM, Logit-FM)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if os.path.isdir(name) and os.path.isfile(os.path.join(name, "model_index.json")):
        raise ValueError(f"`model` {name!r} is a diffusers pipeline; use `hf-dlm generate-image` for it.")
    model = AutoModelForCausalLM.from_pretrained(name).eval()
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError, TypeError):
        logger.info("%s ships no tokenizer: prompts must be token ids", name)
        tokenizer = None
    return model, tokenizer


def load_pipeline(name: str) -> Any:
    """An hf-dlm image pipeline (masked or autoregressive) from a folder or hub id."""
    from huggingface_hub import hf_hub_download

    from .. import pipelines

    index = os.path.join(name, "model_index.json") if os.path.isdir(name) else hf_hub_download(name,
                                                                                              "model_index.json")
    if not os.path.isfile(index):
        raise ValueError(f"`pipeline` {name!r} is not a saved pipeline: it has no model_index.json.")
    class_name = json.loads(open(index).read()).get("_class_name")
    cls = getattr(pipelines, str(class_name), None)
    if cls is None:
        raise ValueError(f"`pipeline` {name!r} holds a {class_name}; hf-dlm generates images with "
                         "MaskedImagePipeline or AutoregressiveImagePipeline.")
    return cls.from_pretrained(name)


def read_json(path: str, what: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {path!r} does not exist.")
    try:
        values = json.loads(open(path).read())
    except json.JSONDecodeError as error:
        raise ValueError(f"{what} {path!r} is not valid JSON: {error}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{what} {path!r} must hold a JSON object, got {type(values).__name__}.")
    return values
