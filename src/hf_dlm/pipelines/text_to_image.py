"""A ``text-to-image`` task for ``transformers.pipeline`` (transformers has none) backed by a diffusers pipeline:
our ``MaskedImagePipeline`` or the autoregressive ``AutoregressiveImagePipeline``.

``pipeline("text-to-image", model=...)`` accepts a ``MaskedImagePipeline`` object, a folder it was saved to, or a
hub id in the local cache. A saved pipeline folder holds ``model_index.json`` (diffusers) and, written by
``MaskedImagePipeline.save_pretrained``, a one-line ``config.json`` whose ``model_type`` lets transformers'
factory resolve the folder; loading then goes through ``MaskedImagePipeline.from_pretrained``.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from diffusers import DiffusionPipeline
from transformers import AutoConfig, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from ..schedulers.scheduling_maskgit import is_integer
from ._sharing import MODEL_TYPE, MaskedImagePipelineConfig
from .pipeline_autoregressive_image import AutoregressiveImagePipeline
from .pipeline_masked_image import MaskedImagePipeline


class MaskedImagePipelineLoader:
    """The "model class" transformers' factory instantiates for this task: loads the diffusers pipeline."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str, **kwargs: Any):
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

    Call with a prompt or a list of prompts — for a class-conditional model, a class label or a list of labels;
    keyword arguments (``num_inference_steps``, ``guidance_scale``, ``generator`` …) go to the diffusers pipeline,
    which checks their values. Returns one PIL image per prompt, or a list of ``num_images_per_prompt`` images per
    prompt when that is > 1.

    Refused by name (`TypeError`/`ValueError`): inputs that are not strings (labels for class models), keyword
    arguments the diffusers pipeline does not take, ``prompt=``/``class_labels=`` (the input is the prompt or the
    label), ``return_dict`` (the task returns images), and ``batch_size``/``num_workers`` (each input is one call of
    the diffusers pipeline; batch with ``num_images_per_prompt``). A list of generators with a list of inputs is
    split in order: input ``i`` gets generators ``i·n … i·n + n − 1`` (``n = num_images_per_prompt``).
    """

    _load_tokenizer = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_processor = False
    _pipeline_calls_generate = False

    #: keyword arguments of the diffusers pipeline that this task sets itself
    _reserved = {"prompt": "pass the prompt as the input: `t2i(prompt, ...)`",
                 "class_labels": "pass the class label as the input: `t2i(label, ...)`",
                 "return_dict": "the task always returns images"}

    def __init__(self, model, *args, **kwargs) -> None:
        if isinstance(model, str):
            model = MaskedImagePipelineLoader.from_pretrained(model)
        model.can_generate = lambda: False  # consulted by transformers' Pipeline.__init__
        super().__init__(model, *args, **kwargs)

    @property
    def _class_conditional(self) -> bool:
        return getattr(self.model, "num_classes", 0) > 0

    def _accepted_kwargs(self) -> list[str]:
        parameters = inspect.signature(type(self.model).__call__).parameters
        return sorted(name for name, p in parameters.items()
                      if name != "self" and name not in self._reserved
                      and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))

    def _check_kwargs(self, kwargs: dict[str, Any]) -> None:
        for name, reason in self._reserved.items():
            if name in kwargs:
                raise TypeError(f"text-to-image does not take `{name}`: {reason}.")
        accepted = self._accepted_kwargs()
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise TypeError(f"text-to-image got unexpected keyword argument(s) {unknown}; "
                            f"{type(self.model).__name__} accepts {accepted}.")

    def _check_input(self, inputs: Any) -> None:
        if self._class_conditional:
            labels = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
            if not labels or not all(is_integer(x) for x in labels):
                raise TypeError(f"text-to-image with a class-conditional model takes a class label (an integer) or "
                                f"a non-empty list of them as its input, got {inputs!r}.")
            return
        prompts = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if not prompts or not all(isinstance(x, str) for x in prompts):
            raise TypeError(f"text-to-image takes a prompt (a string) or a non-empty list of prompts as its input, "
                            f"got {inputs!r}.")

    def _sanitize_parameters(self, **kwargs):
        self._check_kwargs(kwargs)
        return {}, kwargs, {}

    def preprocess(self, inputs, **kwargs):
        return {"prompt": inputs}

    def _forward(self, model_inputs, **generate_kwargs):
        prompt = model_inputs["prompt"]
        if self._class_conditional:
            images = self.model(class_labels=prompt, **generate_kwargs).images
        else:
            images = self.model(prompt=prompt, **generate_kwargs).images
        return {"images": images, "per_prompt": generate_kwargs.get("num_images_per_prompt", 1)}

    def postprocess(self, model_outputs, **kwargs):
        images = model_outputs["images"]
        return images[0] if model_outputs["per_prompt"] == 1 and len(images) == 1 else images

    def __call__(self, inputs, **kwargs):
        for name in ("batch_size", "num_workers"):
            if kwargs.get(name) is not None:
                raise TypeError(f"text-to-image does not take `{name}`: each input is one call of the diffusers "
                                "pipeline (batch images with `num_images_per_prompt`).")
        self._check_input(inputs)
        self._check_kwargs(kwargs)
        if not isinstance(inputs, (list, tuple)):
            return super().__call__(inputs, **kwargs)
        generators = kwargs.get("generator")
        if not isinstance(generators, (list, tuple)):
            return [super(TextToImagePipeline, self).__call__(x, **kwargs) for x in inputs]
        per_input = kwargs.get("num_images_per_prompt", 1)
        if not is_integer(per_input) or per_input < 1:
            raise ValueError(f"`num_images_per_prompt` must be an integer >= 1, got {per_input!r}.")
        if len(generators) != len(inputs) * per_input:
            raise ValueError(f"`generator` is a list of {len(generators)} generators, but {len(inputs)} inputs × "
                             f"`num_images_per_prompt`={per_input} make {len(inputs) * per_input} images: pass one "
                             "generator per image, or a single generator.")
        return [super(TextToImagePipeline, self).__call__(
                    x, **{**kwargs, "generator": list(generators[i * per_input: (i + 1) * per_input])})
                for i, x in enumerate(inputs)]

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
    AutoConfig.register(MODEL_TYPE, MaskedImagePipelineConfig, exist_ok=True)
    if "text-to-image" not in PIPELINE_REGISTRY.get_supported_tasks():
        PIPELINE_REGISTRY.register_pipeline("text-to-image", pipeline_class=TextToImagePipeline,
                                            pt_model=MaskedImagePipelineLoader, type="multimodal")
    _registered = True


__all__ = ["MaskedImagePipelineConfig", "TextToImagePipeline", "register_text_to_image"]
