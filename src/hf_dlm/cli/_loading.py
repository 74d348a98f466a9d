"""Checking and loading what a verb works on (folders, hub ids, files, JSON configs), with errors that name the
argument and say what was expected.

The checks (``check_*``, ``read_json``) import nothing heavy and run before a verb loads anything; the loaders
import the library inside the function (start-up time).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import os
import re
import types
import typing
from collections.abc import Iterator, Sequence
from typing import Any

from ._errors import EXIT_BAD_INPUT, EXIT_HUB, EXIT_NOT_FOUND, CLIError, classify

# a hub id as huggingface_hub's validate_repo_id accepts it: [namespace/]name, letters, digits, "-", "_", "."
_REPO_ID = re.compile(r"^(?:[A-Za-z0-9_.\-]+/)?[A-Za-z0-9_.\-]+$")
MODEL_FILES = ("config.json",)
PIPELINE_FILES = ("model_index.json",)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in {"1", "true", "yes", "on"}


def is_repo_id(value: str) -> bool:
    """Whether ``value`` is a syntactically valid hub id (``name`` or ``namespace/name``)."""
    if len(value) > 96 or not _REPO_ID.match(value) or "--" in value or ".." in value:
        return False
    return all(part and part[0] not in ".-" and part[-1] not in ".-" for part in value.split("/"))


def check_repo_id(value: str, what: str) -> str:
    """Refuse (exit 2) a hub id huggingface_hub would refuse, naming the argument."""
    if not is_repo_id(value):
        raise CLIError(f"{what} {value!r} is not a valid hub id: use `name` or `namespace/name` with letters, "
                       "digits, '-', '_' or '.' (not starting or ending with '-' or '.'; at most 96 characters).")
    return value


def _looks_like_path(value: str) -> bool:
    """A name that can only be a local path (so a missing one is a missing folder, not a hub id to look up)."""
    if not is_repo_id(value) or value.startswith("~"):
        return True
    first = value.split("/")[0]
    return "/" in value and os.path.isdir(first)  # `outputs/missing` with an `outputs` folder here


def _in_hub_cache(repo_id: str, files: tuple[str, ...]) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(repo_id, name), str) for name in files)


def check_saved(value: str, what: str, files: tuple[str, ...] = MODEL_FILES + PIPELINE_FILES) -> str:
    """Check a "folder written by save_pretrained, or a hub id" argument before anything is loaded.

    A folder must hold one of ``files`` (exit 2 otherwise); a path to something else is refused (2); a missing
    path that cannot be a hub id is "no such folder" (3); a hub id is looked up in the local Hub cache when
    ``HF_HUB_OFFLINE`` is set (3 when it is not there), else on the Hub (:func:`_check_on_hub`)."""
    if os.path.isdir(value):
        if not any(os.path.isfile(os.path.join(value, name)) for name in files):
            kind = {MODEL_FILES: "model", PIPELINE_FILES: "pipeline"}.get(files, "model or pipeline")
            raise CLIError(f"{what} {value!r} is not a saved {kind}: the folder has no {' or '.join(files)} (as "
                           "save_pretrained writes).")
        return value
    if os.path.exists(value):
        raise CLIError(f"{what} {value!r} is a file; give the folder save_pretrained wrote, or a hub id.")
    if _looks_like_path(value):
        raise CLIError(f"{what} {value!r}: no such folder.", EXIT_NOT_FOUND)
    if _offline():
        if not _in_hub_cache(value, files):
            raise CLIError(f"{what} {value!r}: no such folder, and no hub id {value!r} in the local Hub cache "
                           "(HF_HUB_OFFLINE is set, so the Hub was not asked).", EXIT_NOT_FOUND)
        return value
    _check_on_hub(value, what, files)
    return value


def _check_on_hub(repo_id: str, what: str, files: tuple[str, ...]) -> None:
    """Ask the Hub for the metadata of ``files`` (one request each, no retries, no download) until ``repo_id`` has
    one: a missing repository (3), an unreachable or refusing Hub (4) or a repository without any of them (2) is
    reported before torch is even imported."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, RepositoryNotFoundError,
                                       RevisionNotFoundError)

    from ._errors import is_network_error

    for name in files:
        try:
            get_hf_file_metadata(hf_hub_url(repo_id, name))
            return
        except Exception as error:
            if is_network_error(error) or isinstance(error, GatedRepoError):
                code, message = classify(error)
                raise CLIError(f"{what} {repo_id!r} is not a folder here, and {message}", EXIT_HUB) from error
            if isinstance(error, (RepositoryNotFoundError, RevisionNotFoundError)):
                raise CLIError(f"{what} {repo_id!r}: no such folder, and the Hub has no repository {repo_id!r} "
                               "(or it is private and HF_TOKEN cannot read it).", EXIT_NOT_FOUND) from error
            if not isinstance(error, EntryNotFoundError):
                code, message = classify(error)
                raise CLIError(f"{what} {repo_id!r}: {message}", code) from error
    raise CLIError(f"{what} {repo_id!r} is a Hub repository without {' or '.join(files)}: not a saved hf-dlm model "
                   "or pipeline.")


def check_folder(value: str, what: str) -> str:
    """An existing local folder (3 when missing, 2 when a file)."""
    if not os.path.exists(value):
        raise CLIError(f"{what} {value!r}: no such folder.", EXIT_NOT_FOUND)
    if not os.path.isdir(value):
        raise CLIError(f"{what} {value!r} is a file, not a folder.")
    return value


def check_file(value: str, what: str) -> str:
    """An existing, readable file (3 when missing, 2 when a folder or unreadable)."""
    if not os.path.exists(value):
        raise CLIError(f"{what} {value!r}: no such file.", EXIT_NOT_FOUND)
    if os.path.isdir(value):
        raise CLIError(f"{what} {value!r} is a folder, not a file.")
    if not os.access(value, os.R_OK):
        raise CLIError(f"{what} {value!r} cannot be read (permission denied).")
    return value


def check_output_folder(value: str, what: str) -> str:
    """A folder to write: it may not exist yet, but it may not be a file, and the nearest existing parent must be a
    writable folder."""
    if os.path.exists(value) and not os.path.isdir(value):
        raise CLIError(f"{what} {value!r} exists and is not a folder.")
    _check_writable_parent(value, what)
    return value


def check_output_file(value: str, what: str, suffix: str | None = None) -> str:
    """A file to write: not a folder, with ``suffix``, under a writable folder."""
    if suffix is not None and not value.lower().endswith(suffix):
        raise CLIError(f"{what} must be a {suffix} path, got {value!r}.")
    if os.path.isdir(value):
        raise CLIError(f"{what} {value!r} is a folder; give a file path.")
    _check_writable_parent(value, what)
    return value


def _check_writable_parent(value: str, what: str) -> None:
    parent = os.path.dirname(os.path.abspath(value))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise CLIError(f"{what} {value!r} cannot be created: {parent!r} is a file.")
    if not os.access(parent, os.W_OK):
        raise CLIError(f"{what} {value!r} cannot be written: {parent!r} is not writable.")


def read_json(path: str, what: str) -> dict[str, Any]:
    """A JSON object from a file (3 when missing; 2 when not a file, not JSON or not an object)."""
    check_file(path, what)
    try:
        with open(path, encoding="utf-8") as handle:
            values = json.load(handle)
    except UnicodeDecodeError:
        raise CLIError(f"{what} {path!r} is not UTF-8 text.") from None
    except json.JSONDecodeError as error:
        raise CLIError(f"{what} {path!r} is not valid JSON: {error}.") from None
    if not isinstance(values, dict):
        raise CLIError(f"{what} {path!r} must hold a JSON object, got {type(values).__name__}.")
    return values


# --------------------------------------------------------------------------------------------------------------------
# JSON values against a dataclass (a JSON config's `dimo` object against DiMOConfig)


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in args)
    if origin is typing.Literal:
        return " | ".join(repr(arg) for arg in args)
    if hint is type(None):
        return "null"
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return " | ".join(repr(member.value) for member in hint)
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    return getattr(hint, "__name__", str(hint))


def _matches(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a type hint; hints this check does not know accept anything (the class's own
    validation decides)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if origin is typing.Literal:
        return value in args
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return isinstance(value, hint) or value in {member.value for member in hint}
    if origin in (list, tuple, set, Sequence) or hint in (list, tuple, set):
        if not isinstance(value, (list, tuple)):
            return False
        if not args:
            return True
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return len(value) == len(args) and all(_matches(v, arg) for v, arg in zip(value, args))
        return all(_matches(v, args[0]) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return True


def check_dataclass_values(values: dict[str, Any], cls: type, what: str) -> None:
    """Refuse (exit 2) keys that are not fields of dataclass ``cls`` and values of the wrong JSON type, naming the
    field (``what.field``), the value and the type expected."""
    fields = {field.name: field for field in dataclasses.fields(cls) if field.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise CLIError(f"`{what}`: unknown {cls.__name__} field(s) {unknown}.")
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation this Python cannot evaluate: leave the types to the class
        hints = {}
    for name, value in values.items():
        hint = hints.get(name)
        if hint is not None and not _matches(value, hint):
            raise CLIError(f"`{what}.{name}` must be {_describe(hint)}, got {value!r} ({type(value).__name__}).")


# --------------------------------------------------------------------------------------------------------------------
# loading


@contextlib.contextmanager
def loading(name: str, what: str) -> Iterator[None]:
    """Turn a failure to load ``name`` into one :class:`CLIError` naming the argument: a local folder that does not
    load is bad input (2); a hub id the Hub does not have is not found (3); an unreachable Hub is 4."""
    try:
        yield
    except CLIError:
        raise
    except Exception as error:
        code, message = classify(error)
        if os.path.isdir(name):  # the folder is there: it is not what the verb needs (or the Hub it names is down)
            if code == EXIT_HUB:
                raise CLIError(f"{what} {name!r} could not be loaded: {message}", EXIT_HUB) from error
            raise CLIError(f"{what} {name!r} could not be loaded: {str(error) or type(error).__name__}",
                           EXIT_BAD_INPUT) from error
        if code == EXIT_NOT_FOUND:
            raise CLIError(f"{what} {name!r}: no such folder, and no hub id {name!r} on the Hub ({message})",
                           EXIT_NOT_FOUND) from error
        if code == EXIT_HUB:
            raise CLIError(f"{what} {name!r} is not a folder here, and {message}", EXIT_HUB) from error
        raise CLIError(f"{what} {name!r} could not be loaded: {message}", code) from error


def load_text_model(name: str, what: str = "`model`") -> tuple[Any, Any]:
    """(model, tokenizer or None) of an hf-dlm text model (diffusion LM, Di[M]O generator, Quant-dLLM, Logit-FM)."""
    import logging

    from transformers import AutoModelForCausalLM, AutoTokenizer

    if os.path.isdir(name) and os.path.isfile(os.path.join(name, "model_index.json")):
        raise CLIError(f"{what} {name!r} is a diffusers pipeline; use `hf-dlm generate-image` for it.")
    with loading(name, what):
        model = AutoModelForCausalLM.from_pretrained(name).eval()
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError, TypeError, KeyError):
        logging.getLogger(__name__).info("%s ships no tokenizer: prompts must be token ids", name)
        tokenizer = None
    return model, tokenizer


def load_pipeline(name: str, what: str = "`pipeline`") -> Any:
    """An hf-dlm image pipeline (masked or autoregressive) from a folder or hub id."""
    from .. import pipelines

    with loading(name, what):
        if os.path.isdir(name):
            index = os.path.join(name, "model_index.json")
        else:
            from huggingface_hub import hf_hub_download

            index = hf_hub_download(name, "model_index.json")
        if not os.path.isfile(index):
            raise CLIError(f"{what} {name!r} is not a saved pipeline: it has no model_index.json.")
        read = read_json(index, f"{what} {name!r}:")
        class_name = read.get("_class_name")
        cls = getattr(pipelines, str(class_name), None)
        if cls is None:
            raise CLIError(f"{what} {name!r} holds a {class_name}; hf-dlm generates images with "
                           "MaskedImagePipeline or AutoregressiveImagePipeline.")
        return cls.from_pretrained(name)


__all__ = ["MODEL_FILES", "PIPELINE_FILES", "check_dataclass_values", "check_file", "check_folder",
           "check_output_file", "check_output_folder", "check_repo_id", "check_saved", "is_repo_id",
           "load_pipeline", "load_text_model", "loading", "read_json"]
