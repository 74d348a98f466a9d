"""diffusers pipelines for masked image generation."""

from .pipeline_masked_image import MaskedImagePipeline

__all__ = ["MaskedImagePipeline"]
