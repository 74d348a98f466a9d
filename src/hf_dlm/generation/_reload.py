"""Generation-config plumbing shared by our samplers: merging ``generate()`` overrides into a custom
``GenerationConfig`` subclass, and reloading that subclass at ``from_pretrained`` time."""

from __future__ import annotations

import copy
from typing import Any

from transformers import GenerationConfig
from transformers.utils import logging

from ._contract import pop_generate_arguments

logger = logging.get_logger(__name__)


def merge_overrides(config_class: type, base: GenerationConfig | None, overrides: dict[str, Any],
                    method: str) -> GenerationConfig:
    """A copy of ``base`` as ``config_class`` (converted if it is a plain ``GenerationConfig``) updated with
    ``overrides``; an override that is no setting of ``config_class`` raises ``ValueError`` naming ``method``, and so
    does a ``generate()`` argument (``logits_processor``, ``stopping_criteria`` …) that asks for something."""
    overrides = dict(overrides)
    pop_generate_arguments(overrides, method)
    if isinstance(base, config_class):
        config = copy.deepcopy(base)
    else:
        config = config_class(**(base.to_diff_dict() if base is not None else {}))
    unused = config.update(**overrides)
    if unused:
        raise ValueError(f"generate() got arguments that are neither generation settings nor used by {method}: "
                         f"{sorted(unused)}.")
    return config


TOKEN_ID_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id")


def token_ids_from_model_config(model_config: Any, fields: tuple[str, ...] = TOKEN_ID_FIELDS) -> dict[str, Any]:
    """The special-token ids a model config sets (``None`` left out). Our generation configs take only these from a
    model config: transformers' default would copy every model field (``vocab_size``, ``hidden_size`` …) into the
    generation config."""
    source = model_config.to_dict() if hasattr(model_config, "to_dict") else dict(model_config)
    return {name: source[name] for name in fields if source.get(name) is not None}


class ReloadsGenerationConfig:
    """Makes ``from_pretrained`` read ``generation_config.json`` back as ``self.generation_config_class``.

    transformers would otherwise rebuild a plain ``GenerationConfig`` and silently drop our sampler settings
    (DiffusionGemma solves it the same way)."""

    generation_config_class: type

    def adjust_generation_fn(self, generation_config, from_auto_class, from_pipeline, pretrained_model_name_or_path,
                             cache_dir, force_download, proxies, local_files_only, token, revision, subfolder,
                             trust_remote_code, **kwargs) -> None:
        if generation_config is not None:
            self.generation_config = self.generation_config_class.from_dict(generation_config.to_dict())
            return
        if pretrained_model_name_or_path is None:
            return
        try:
            self.generation_config = self.generation_config_class.from_pretrained(
                pretrained_model_name_or_path, cache_dir=cache_dir, force_download=force_download, proxies=proxies,
                local_files_only=local_files_only, token=token, revision=revision, subfolder=subfolder,
                _from_auto=from_auto_class, _from_pipeline=from_pipeline,
            )
        except OSError:
            logger.info("No generation_config.json found; using %s defaults.", self.generation_config_class.__name__)
