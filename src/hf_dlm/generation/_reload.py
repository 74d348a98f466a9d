"""Reloading a custom ``GenerationConfig`` subclass at ``from_pretrained`` time, shared by our generation mixins."""

from __future__ import annotations

from transformers.utils import logging

logger = logging.get_logger(__name__)


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
