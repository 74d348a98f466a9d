"""A ``text-to-image`` task for ``transformers.pipeline`` (transformers has none) backed by a diffusers pipeline:
our ``MaskedImagePipeline`` or the autoregressive ``AutoregressiveImagePipeline``.

``pipeline("text-to-image", model=...)`` accepts a ``MaskedImagePipeline`` object, a folder it was saved to, or a
hub id in the local cache. A saved pipeline folder holds ``model_index.json`` (diffusers) and, written by
``MaskedImagePipeline.save_pretrained``, a one-line ``config.json`` whose ``model_type`` lets transformers'
factory resolve the folder; loading then goes through ``MaskedImagePipeline.from_pretrained``.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import Pipeline, PretrainedConfig

MODEL_TYPE = "masked_image_pipeline"


class MaskedImagePipelineConfig(PretrainedConfig):
    """Marker config written beside ``model_index.json`` so ``AutoConfig`` can resolve a saved image pipeline."""

    model_type = MODEL_TYPE


class MaskedImagePipelineLoader:
    """The "model class" transformers' factory instantiates for this task: loads the diffusers pipeline."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str, **kwargs: Any):
        from diffusers import DiffusionPipeline

        from .pipeline_autoregressive_image import AutoregressiveImagePipeline
        from .pipeline_masked_image import MaskedImagePipeline

        keep = {k: kwargs[k] for k in ("revision", "token", "cache_dir", "local_files_only")
                if kwargs.get(k) is not None}
        index = DiffusionPipeline.load_config(pretrained_model_name_or_path, **keep)
        classes = {c.__name__: c for c in (MaskedImagePipeline, AutoregressiveImagePipeline)}
        name = index.get("_class_name")
        if name not in classes:
            raise ValueError(f"{pretrained_model_name_or_path} holds a {name!r} pipeline; the text-to-image task "
                             f"loads {sorted(classes)}.")
        return classes[name].from_pretrained(pretrained_model_name_or_path, **keep)


class TextToImagePipeline(Pipeline):
    """``transformers`` pipeline returning PIL images from prompts (or class labels for class-conditional models).

    Call with a prompt or a list of prompts; keyword arguments (``num_inference_steps``, ``guidance_scale``,
    ``generator``, ``class_labels`` …) go to the diffusers pipeline. Returns one PIL image per prompt, or a list of
    ``num_images_per_prompt`` images per prompt when that is > 1.
    """

    _load_tokenizer = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_processor = False
    _pipeline_calls_generate = False

    def __init__(self, model, *args, **kwargs) -> None:
        if isinstance(model, str):
            model = MaskedImagePipelineLoader.from_pretrained(model)
        model.can_generate = lambda: False  # consulted by transformers' Pipeline.__init__
        super().__init__(model, *args, **kwargs)

    def _sanitize_parameters(self, **kwargs):
        return {}, kwargs, {}

    def preprocess(self, inputs, **kwargs):
        return {"prompt": inputs}

    def _forward(self, model_inputs, **generate_kwargs):
        prompt = model_inputs["prompt"]
        if getattr(self.model, "num_classes", 0) > 0:
            labels = generate_kwargs.pop("class_labels", prompt)
            images = self.model(class_labels=labels, **generate_kwargs).images
        else:
            images = self.model(prompt=prompt, **generate_kwargs).images
        return {"images": images, "per_prompt": generate_kwargs.get("num_images_per_prompt", 1)}

    def postprocess(self, model_outputs, **kwargs):
        images = model_outputs["images"]
        return images[0] if model_outputs["per_prompt"] == 1 and len(images) == 1 else images

    def __call__(self, inputs, **kwargs):
        if isinstance(inputs, (list, tuple)):
            return [super(TextToImagePipeline, self).__call__(x, **kwargs) for x in inputs]
        return super().__call__(inputs, **kwargs)

    def _ensure_tensor_on_device(self, inputs, device):
        return inputs

    def get_inference_context(self):
        return torch.no_grad


_registered = False


def register_text_to_image() -> None:
    """Register the config and the task once (both registries raise on a second registration)."""
    global _registered
    if _registered:
        return
    from transformers import AutoConfig
    from transformers.pipelines import PIPELINE_REGISTRY

    AutoConfig.register(MODEL_TYPE, MaskedImagePipelineConfig, exist_ok=True)
    if "text-to-image" not in PIPELINE_REGISTRY.get_supported_tasks():
        PIPELINE_REGISTRY.register_pipeline("text-to-image", pipeline_class=TextToImagePipeline,
                                            pt_model=MaskedImagePipelineLoader, type="multimodal")
    _registered = True


__all__ = ["MaskedImagePipelineConfig", "TextToImagePipeline", "register_text_to_image"]
