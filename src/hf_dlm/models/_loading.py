"""Loading that refuses what it cannot honour: weights that do not cover the architecture, configs that lack an
architecture field, unreadable checkpoint files.

Three pieces, mixed into our architectures (LLaDA, Dream, Logit-FM and the masked image transformer):

- [`StrictLoadingMixin`] (before ``PreTrainedModel``): ``from_pretrained`` raises
  [`CheckpointMismatchError`] when the checkpoint lacks weights the model has (they would stay randomly initialised)
  or holds weights the model has no place for (they would be dropped) — a wrong layer count in ``config.json``, a
  ``n_layers=`` override, a truncated export. transformers only logs a load report in these cases; for our own
  architectures a partial load is never what a user means. Allowed without a word: a tied output head absent from
  the file (``tie_word_embeddings`` / LLaDA's ``weight_tying``), non-persistent buffers (the rotary ``inv_freq``,
  rebuilt at load), a stale ``rotary_emb.inv_freq`` in old checkpoints, and each class's
  ``_keys_to_ignore_on_load_unexpected`` (e.g. Dream's ``lm_head`` when the trunk alone is loaded). Size
  mismatches keep transformers' semantics — refused unless ``ignore_mismatched_sizes=True``, which re-initialises
  them (the way to load a checkpoint into a resized vocabulary) — but the refusal now names the keys and shapes.
  ``from_pretrained(..., strict=False)`` is the explicit opt-in to a partial load (e.g. the first layers of a
  checkpoint with ``n_layers=1``, or a trunk under a new head): missing weights are initialised, unexpected ones
  dropped, and a warning lists them. A checkpoint file that cannot be read (truncated, not safetensors) raises
  [`CheckpointFileError`] naming the file.
- [`RequiredConfigFieldsMixin`] (before ``PretrainedConfig``): a configuration read from a file
  (``from_pretrained`` / ``AutoConfig`` / ``from_dict`` / ``from_json_file``) must hold every field of the class's
  ``required_fields`` — the sizes that fix the architecture — or [`MissingConfigFieldError`] names the field and the
  file, instead of building the released 8B/7B default size around a small checkpoint. A value passed to
  ``from_pretrained`` (``from_pretrained(path, n_layers=2)``) counts as given. Constructing a config in code
  (``LLaDAConfig(...)``) keeps every default: that is how users build models; the file-reading entry points
  (``from_dict`` / ``from_json_file``) are what tells the two apart. Overrides passed to ``from_pretrained`` go
  through the class's ``__init__`` validation (transformers would ``setattr`` them after it). The message names
  the file's path when the config class reads it (``LLaDAModelLM.from_pretrained``, ``LLaDAConfig.from_pretrained``);
  through ``AutoConfig`` / ``AutoModel*`` transformers reads the file itself and hands over only its contents,
  so the message says ``config.json``.
- [`StrictDiffusersLoadingMixin`]: both checks for diffusers ``ModelMixin`` models (the weights after diffusers'
  ``_load_pretrained_model``, the required fields in ``load_config``).
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import json
import os
import re
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from transformers.utils import cached_file, logging

logger = logging.get_logger(__name__)

# `strict` of the innermost from_pretrained call in progress (True outside any call)
_STRICT: contextvars.ContextVar[bool] = contextvars.ContextVar("hf_dlm_strict_loading", default=True)
# name or path whose config.json is being read (None when unknown, e.g. through AutoConfig)
_CONFIG_SOURCE: contextvars.ContextVar[str | None] = contextvars.ContextVar("hf_dlm_config_source", default=None)

_SHOWN_KEYS = 20
_LAYER_KEY = re.compile(r"^(?P<stack>(?:.*\.)?(?:layers|blocks|h))\.(?P<index>\d+)\.")
_FROM_DICT_CONTROL_KEYS = {"return_unused_kwargs", "_from_auto", "_from_pipeline"}


class CheckpointMismatchError(ValueError, RuntimeError):
    """The weights of a checkpoint do not cover the model its configuration describes.

    A ``ValueError``; also a ``RuntimeError``, which transformers raises for size mismatches, so code that caught
    those keeps working. Attributes: ``source`` (the name or path loaded), ``missing_keys`` (the model's weights the
    checkpoint lacks), ``unexpected_keys`` (checkpoint weights the model has no place for), ``mismatched_keys``
    (``(key, checkpoint shape, model shape)``), all sorted.
    """

    def __init__(self, message: str, source: str | None = None, missing_keys: Iterable[str] = (),
                 unexpected_keys: Iterable[str] = (),
                 mismatched_keys: Iterable[tuple[str, tuple[int, ...], tuple[int, ...]]] = ()) -> None:
        super().__init__(message)
        self.source = source
        self.missing_keys = sorted(missing_keys)
        self.unexpected_keys = sorted(unexpected_keys)
        self.mismatched_keys = sorted(mismatched_keys)


class CheckpointFileError(OSError):
    """A checkpoint file cannot be read (truncated, corrupted, not safetensors). ``path`` names it."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


class MissingConfigFieldError(ValueError):
    """A configuration read from a file lacks a field that fixes the architecture. ``fields`` lists them,
    ``source`` names the file (or ``None`` when unknown)."""

    def __init__(self, message: str, fields: list[str], source: str | None) -> None:
        super().__init__(message)
        self.fields = fields
        self.source = source


# ------------------------------------------------------------------------------------------------------------------
# checkpoint files


def check_safetensors_files(files: Iterable[str | os.PathLike] | None) -> None:
    """Open the header of every ``.safetensors`` file in ``files`` (cheap: no tensor is read); raise
    [`CheckpointFileError`] naming the first file that is truncated or not a safetensors file. Other files
    (``.bin``, ``.gguf``) are left to their loaders."""
    if not files:
        return
    for path in files:
        path = os.fspath(path)
        if not path.endswith(".safetensors"):
            continue
        try:
            with safe_open(path, framework="pt") as handle:
                handle.keys()
        except Exception as error:  # safetensors raises its own SafetensorError (an Exception subclass)
            size = os.path.getsize(path) if os.path.exists(path) else None
            raise CheckpointFileError(
                f"Cannot read the checkpoint file {path!r} ({size} bytes): {error}. The file is truncated or is not a "
                "safetensors file (an interrupted download or copy?); download or save it again.", path) from error


# ------------------------------------------------------------------------------------------------------------------
# weights against the architecture


def _shown(keys: list[str]) -> str:
    listed = ", ".join(keys[:_SHOWN_KEYS])
    return listed + (f", … and {len(keys) - _SHOWN_KEYS} more" if len(keys) > _SHOWN_KEYS else "")


def _layer_count_hint(model_keys: Iterable[str], missing: set[str], unexpected: set[str]) -> str:
    """A sentence saying how many layers the checkpoint holds against the model's, for every layer stack
    (``…layers.{i}`` / ``…blocks.{i}``) where the two differ; empty when they agree."""
    built: dict[str, dict[int, set[str]]] = {}
    for key in model_keys:
        match = _LAYER_KEY.match(key)
        if match:
            built.setdefault(match["stack"], {}).setdefault(int(match["index"]), set()).add(key)
    extra: dict[str, set[int]] = {}
    for key in unexpected:
        match = _LAYER_KEY.match(key)
        if match:
            extra.setdefault(match["stack"], set()).add(int(match["index"]))
    sentences = []
    for stack in sorted(set(built) | set(extra)):
        layers = built.get(stack, {})
        held = {index for index, keys in layers.items() if keys - missing} | extra.get(stack, set())
        if held == set(layers):
            continue
        if held == set(range(len(held))):
            holds = f"{len(held)} layer(s)"
        else:
            holds = f"layers {sorted(held)}"
        sentences.append(f"the checkpoint holds {holds} in `{stack}`, the configuration builds {len(layers)}")
    if not sentences:
        return ""
    return ("Layer count: " + "; ".join(sentences) + " — check the layer count in config.json "
            "(`n_layers` / `num_hidden_layers` / `num_layers`) or the override passed to `from_pretrained`. ")


def check_weights_cover_model(model: Any, missing_keys: Iterable[str], unexpected_keys: Iterable[str],
                              source: str | os.PathLike | None, strict: bool,
                              model_keys: Iterable[str] | None = None) -> None:
    """Raise [`CheckpointMismatchError`] when ``missing_keys`` or ``unexpected_keys`` (already cleared of tied
    weights and ignored patterns) are not empty, unless ``strict`` is ``False`` (then log a warning).

    ``model_keys`` (default: ``model.state_dict()``'s keys) lets the message count layers."""
    missing, unexpected = set(missing_keys), set(unexpected_keys)
    if not missing and not unexpected:
        return
    name = type(model).__name__
    source = None if source is None else os.fspath(source)
    if not strict:
        done = ([f"initialised {len(missing)} weight(s) missing from the checkpoint ({_shown(sorted(missing))})"]
                if missing else [])
        done += ([f"dropped {len(unexpected)} checkpoint weight(s) ({_shown(sorted(unexpected))})"]
                 if unexpected else [])
        logger.warning(f"{name}.from_pretrained({source!r}, strict=False): {' and '.join(done)}.")
        return
    keys = model.state_dict().keys() if model_keys is None else model_keys
    parts = [f"{name}.from_pretrained({source!r}): the checkpoint does not cover the model its configuration "
             "describes."]
    if missing:
        parts.append(f"{len(missing)} weight(s) of the model are missing from the checkpoint (they would stay "
                     f"randomly initialised): {_shown(sorted(missing))}.")
    if unexpected:
        parts.append(f"{len(unexpected)} weight(s) in the checkpoint have no place in the model (they would be "
                     f"dropped): {_shown(sorted(unexpected))}.")
    hint = _layer_count_hint(keys, missing, unexpected)
    if hint:
        parts.append(hint.strip())
    parts.append("Pass `strict=False` to `from_pretrained` to load it anyway (missing weights initialised, extra "
                 "ones dropped).")
    raise CheckpointMismatchError(" ".join(parts), source, missing, unexpected)


def _mismatch_error(model: Any, source: str | None, mismatched: Iterable[tuple[str, Any, Any]],
                    missing: set[str], unexpected: set[str]) -> CheckpointMismatchError:
    mismatched = sorted((key, tuple(ckpt), tuple(shape)) for key, ckpt, shape in mismatched)
    shown = "; ".join(f"{key}: checkpoint {ckpt} vs model {shape}" for key, ckpt, shape in mismatched[:_SHOWN_KEYS])
    if len(mismatched) > _SHOWN_KEYS:
        shown += f"; … and {len(mismatched) - _SHOWN_KEYS} more"
    message = (f"{type(model).__name__}.from_pretrained({source!r}): {len(mismatched)} checkpoint weight(s) do not "
               f"have the shape the configuration implies: {shown}.")
    if missing:
        message += f" Also missing from the checkpoint: {_shown(sorted(missing))}."
    if unexpected:
        message += f" Also in the checkpoint without a place in the model: {_shown(sorted(unexpected))}."
    message += (" The configuration does not match the weights; pass `ignore_mismatched_sizes=True` only to "
                "re-initialise those weights on purpose (e.g. a new vocabulary size).")
    return CheckpointMismatchError(message, source, missing, unexpected, mismatched)


@contextlib.contextmanager
def _strict_loading(strict: bool) -> Iterator[None]:
    if not isinstance(strict, bool):
        raise TypeError(f"`strict` must be True or False, got {strict!r}.")
    token = _STRICT.set(strict)
    try:
        yield
    finally:
        _STRICT.reset(token)


class _StrictFromPretrained:
    """The ``strict`` argument of ``from_pretrained``, shared by the transformers and diffusers mixins."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike | None, *model_args: Any,
                        strict: bool = True, **kwargs: Any) -> Any:
        """``from_pretrained`` of transformers (or diffusers), plus ``strict`` (default ``True``): refuse a
        checkpoint that lacks weights of the model or holds weights it has no place for
        ([`CheckpointMismatchError`], naming the keys); ``False`` loads it anyway (missing weights initialised,
        extra ones dropped, with a warning)."""
        with _strict_loading(strict):
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)


def _checkpoint_files_of(source: str, subfolder: str = "", cache_dir: str | None = None,
                         revision: str | None = None) -> list[str]:
    """The safetensors files ``from_pretrained(source)`` reads, as far as they are on this machine: every
    ``*.safetensors`` of a local folder, or the cached ``model.safetensors`` (or the shards its index names) of a hub
    id. Only used to name the broken file after safetensors failed without saying which."""
    folder = os.path.join(source, subfolder) if subfolder else source
    if os.path.isdir(folder):
        return sorted(os.path.join(folder, name) for name in os.listdir(folder) if name.endswith(".safetensors"))
    lookup = dict(subfolder=subfolder, cache_dir=cache_dir, revision=revision, local_files_only=True,
                  _raise_exceptions_for_missing_entries=False, _raise_exceptions_for_connection_errors=False)
    try:
        index = cached_file(source, "model.safetensors.index.json", **lookup)
        if index is not None:
            with open(index, encoding="utf-8") as handle:
                shards = sorted(set(json.load(handle)["weight_map"].values()))
            return [path for path in (cached_file(source, shard, **lookup) for shard in shards) if path is not None]
        single = cached_file(source, "model.safetensors", **lookup)
    except Exception:  # naming the file is best effort; the original error is raised then
        return []
    return [single] if single is not None else []


class StrictLoadingMixin(_StrictFromPretrained):
    """``PreTrainedModel.from_pretrained`` that refuses a checkpoint whose weights do not cover the architecture
    and names an unreadable checkpoint file (see the module docstring). Mix in before ``PreTrainedModel``.

    Hooks: ``_load_pretrained_model`` (checks the safetensors headers before reading) and
    ``_finalize_model_loading`` (checks the keys once transformers has tied weights and applied the
    ``_keys_to_ignore_on_load_*`` patterns, before the quantizer's post-processing and the generation config).
    transformers may read a header earlier (``dtype="auto"`` without a dtype in the config); a safetensors error
    from there is turned into [`CheckpointFileError`] naming the file too.
    """

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike | None, *model_args: Any,
                        **kwargs: Any) -> Any:
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        except SafetensorError:
            if pretrained_model_name_or_path is not None:
                files = _checkpoint_files_of(os.fspath(pretrained_model_name_or_path), kwargs.get("subfolder") or "",
                                             kwargs.get("cache_dir"), kwargs.get("revision"))
                check_safetensors_files(files)  # raises CheckpointFileError naming the broken file
            raise

    @classmethod
    def _load_pretrained_model(cls, model: Any, state_dict: dict | None, checkpoint_files: list[str] | None,
                               *args: Any, **kwargs: Any) -> Any:
        check_safetensors_files(checkpoint_files)
        return super()._load_pretrained_model(model, state_dict, checkpoint_files, *args, **kwargs)

    @classmethod
    def _finalize_model_loading(cls, model: Any, load_config: Any, loading_info: Any) -> Any:
        source = load_config.pretrained_model_name_or_path
        source = None if source is None else os.fspath(source)
        try:
            loading_info = super()._finalize_model_loading(model, load_config, loading_info)
        except RuntimeError as error:
            # transformers refuses size mismatches after logging a report; name the keys and shapes instead
            if (loading_info.mismatched_keys and not load_config.ignore_mismatched_sizes
                    and not loading_info.error_msgs and not loading_info.conversion_errors):
                raise _mismatch_error(model, source, loading_info.mismatched_keys, set(loading_info.missing_keys),
                                      set(loading_info.unexpected_keys)) from error
            raise
        check_weights_cover_model(model, loading_info.missing_keys, loading_info.unexpected_keys, source,
                                  _STRICT.get())
        return loading_info


# ------------------------------------------------------------------------------------------------------------------
# configuration fields


@contextlib.contextmanager
def _config_source(source: str | None) -> Iterator[None]:
    token = _CONFIG_SOURCE.set(source)
    try:
        yield
    finally:
        _CONFIG_SOURCE.reset(token)


def _config_file(source: str | None, subfolder: str | None = None, name: str = "config.json") -> str:
    if source is None:
        return name
    if os.path.isfile(source):
        return source
    parts = [source] + ([subfolder] if subfolder else []) + [name]
    return os.path.join(*parts) if os.path.isdir(source) else f"{name} of {'/'.join(parts[:-1])!r}"


def _init_defaults(config_class: type) -> dict[str, Any]:
    parameters = inspect.signature(config_class.__init__).parameters
    return {name: p.default for name, p in parameters.items()
            if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def missing_required_fields(config_class: type, given: Iterable[str]) -> list[str]:
    """The names in ``config_class.required_fields`` that neither they nor one of their aliases (the class's
    ``attribute_map``: standard name → own field) appear in ``given``."""
    given = set(given)
    aliases: dict[str, set[str]] = {}
    for standard, own in getattr(config_class, "attribute_map", {}).items():
        aliases.setdefault(own, set()).add(standard)
    return [field for field in config_class.required_fields
            if field not in given and not (aliases.get(field, set()) & given)]


def check_required_fields(config_class: type, config_dict: dict[str, Any], overrides: Iterable[str] = (),
                          source_file: str = "config.json") -> None:
    """Raise [`MissingConfigFieldError`] naming every field of ``config_class.required_fields`` that
    ``config_dict`` (read from ``source_file``) lacks and ``overrides`` does not supply."""
    missing = missing_required_fields(config_class, list(config_dict) + list(overrides))
    if not missing:
        return
    defaults = _init_defaults(config_class)
    aliases: dict[str, list[str]] = {}
    for standard, own in getattr(config_class, "attribute_map", {}).items():
        aliases.setdefault(own, []).append(standard)
    described = []
    for field in missing:
        notes = [f"alias `{'`, `'.join(aliases[field])}`"] if field in aliases else []
        if field in defaults:
            notes.append(f"code default {defaults[field]!r}")
        described.append(f"`{field}`" + (f" ({'; '.join(notes)})" if notes else ""))
    raise MissingConfigFieldError(
        f"{source_file} lacks the required field(s) {', '.join(described)} of a {config_class.__name__}. A "
        "configuration read from a file must state every field that fixes the architecture: the code defaults are "
        "the released model's sizes, and building them around other weights loads a model that is not the "
        f"checkpoint's. Add {'them' if len(missing) > 1 else 'it'} to the file (or pass the value to "
        f"`from_pretrained`, e.g. `{missing[0]}=...`).",
        missing, None if source_file == "config.json" else source_file)


class RequiredConfigFieldsMixin:
    """For ``PretrainedConfig`` subclasses: a configuration read from a file must hold every field of
    ``required_fields`` (or an alias of it); see the module docstring. Mix in before ``PretrainedConfig``."""

    required_fields: tuple[str, ...] = ()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args: Any, **kwargs: Any) -> Any:
        with _config_source(os.fspath(pretrained_model_name_or_path)):
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> Any:
        """``PretrainedConfig.from_dict`` of a dictionary read from a checkpoint's ``config.json``: refuses one that
        lacks a required field ([`MissingConfigFieldError`]); keyword overrides that are ``__init__`` arguments (or
        their aliases) are validated by ``__init__`` with the rest, instead of being set after it."""
        accepted = set(_init_defaults(cls)) | set(getattr(cls, "attribute_map", {})) | {"tie_word_embeddings"}
        overrides = {key: kwargs.pop(key) for key in list(kwargs)
                     if key in accepted and key not in _FROM_DICT_CONTROL_KEYS}
        check_required_fields(cls, config_dict, overrides, _config_file(_CONFIG_SOURCE.get()))
        return super().from_dict({**config_dict, **overrides}, **kwargs)

    @classmethod
    def from_json_file(cls, json_file: str | os.PathLike) -> Any:
        """``PretrainedConfig.from_json_file`` that refuses a file lacking a required field."""
        check_required_fields(cls, cls._dict_from_json_file(json_file), (), os.fspath(json_file))
        return super().from_json_file(json_file)


class StrictDiffusersLoadingMixin(_StrictFromPretrained):
    """For diffusers ``ModelMixin`` models: ``from_pretrained`` refuses a checkpoint whose weights do not cover the
    architecture (diffusers only logs them), names an unreadable checkpoint file, and ``load_config`` refuses a
    ``config.json`` lacking a field of ``required_fields`` (``from_config`` of a dict built in code keeps its
    defaults). Mix in before ``ModelMixin``."""

    required_fields: tuple[str, ...] = ()

    @classmethod
    def load_config(cls, pretrained_model_name_or_path: str | os.PathLike, return_unused_kwargs: bool = False,
                    return_commit_hash: bool = False, **kwargs: Any) -> Any:
        outputs = super().load_config(pretrained_model_name_or_path, return_unused_kwargs=return_unused_kwargs,
                                      return_commit_hash=return_commit_hash, **kwargs)
        config = outputs[0] if isinstance(outputs, tuple) else outputs
        source = os.fspath(pretrained_model_name_or_path)
        check_required_fields(cls, config, kwargs, _config_file(source, kwargs.get("subfolder"),
                                                                getattr(cls, "config_name", None) or "config.json"))
        return outputs

    @classmethod
    def _load_pretrained_model(cls, model: Any, state_dict: Any, resolved_model_file: list[str],
                               pretrained_model_name_or_path: str | os.PathLike, *args: Any, **kwargs: Any) -> Any:
        # diffusers returns (model, missing_keys, unexpected_keys, mismatched_keys, offload_index, error_msgs)
        check_safetensors_files(resolved_model_file)
        result = super()._load_pretrained_model(model, state_dict, resolved_model_file, pretrained_model_name_or_path,
                                                *args, **kwargs)
        check_weights_cover_model(model, result[1], result[2], pretrained_model_name_or_path, _STRICT.get())
        if result[1]:
            _initialise_missing_diffusers_weights(model, result[1])
        return result


def _initialise_missing_diffusers_weights(model: Any, missing_keys: Iterable[str]) -> None:
    """Give the weights a ``strict=False`` diffusers load left out the values of a freshly built model.

    diffusers builds the model under ``no_init_weights`` (and on the meta device with ``low_cpu_mem_usage``), so
    the weights the checkpoint lacks would otherwise hold uninitialised memory or stay on the meta device."""
    fresh = type(model).from_config(dict(model.config)).state_dict()
    for key in missing_keys:
        module_path, _, name = key.rpartition(".")
        module = model.get_submodule(module_path) if module_path else model
        old = getattr(module, name)
        device = old.device if old.device.type != "meta" else torch.device("cpu")
        value = fresh[key].to(device=device, dtype=old.dtype)
        if isinstance(old, torch.nn.Parameter):
            setattr(module, name, torch.nn.Parameter(value, requires_grad=old.requires_grad))
        else:
            module._buffers[name] = value


__all__ = ["CheckpointFileError", "CheckpointMismatchError", "MissingConfigFieldError", "RequiredConfigFieldsMixin",
           "StrictDiffusersLoadingMixin", "StrictLoadingMixin", "check_required_fields",
           "check_safetensors_files", "check_weights_cover_model", "missing_required_fields"]
