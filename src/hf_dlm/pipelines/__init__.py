"""diffusers pipelines for masked and autoregressive image generation, and the transformers ``text-to-image``
task over them."""

from .pipeline_autoregressive_image import AutoregressiveImagePipeline
from .pipeline_masked_image import MaskedImagePipeline
from .text_to_image import MaskedImagePipelineConfig, TextToImagePipeline, register_text_to_image

__all__ = ["AutoregressiveImagePipeline", "MaskedImagePipeline", "MaskedImagePipelineConfig", "TextToImagePipeline",
           "register_text_to_image"]
