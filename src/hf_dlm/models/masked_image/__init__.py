from .modeling_masked_image import MaskedImageTransformer

__all__ = ["MaskedImageTransformer"]
