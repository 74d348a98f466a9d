"""diffusers pipelines for masked image generation, and the transformers ``text-to-image`` task over them."""

from .pipeline_masked_image import MaskedImagePipeline
from .text_to_image import MaskedImagePipelineConfig, TextToImagePipeline, register_text_to_image

__all__ = ["MaskedImagePipeline", "MaskedImagePipelineConfig", "TextToImagePipeline", "register_text_to_image"]
