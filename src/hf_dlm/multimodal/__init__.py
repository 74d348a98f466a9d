"""Image tokens in a pretrained language model (Zhang et al., 2023, arXiv:2311.16201, "Pre-trained Language Models
Do Not Help Auto-regressive Text-to-Image Generation"): vocabulary extension, contrastive alignment initialisation, the paper's sequence format,
modality-split training with text replay, constrained decoding and the forgetting probe.

The text-to-image pipeline over an extended model is ``hf_dlm.pipelines.AutoregressiveImagePipeline``.
"""

from .alignment import AlignmentResult, bag_of_words, clip_loss, contrastive_alignment, nearest_text_tokens
from .constraints import ImageSpanLogitsProcessor
from .data import ImageTextCollator, encode_images, format_sequence, prompt_ids
from .forgetting import ForgettingProbe, forgetting_probe
from .tokens import FORMAT_TOKENS, ImageTokenMap, add_image_tokens, image_token_string
from .trainer import ModalitySplitTrainer, ModalitySplitTrainingArguments, ReplayBatchSampler, modality_loss_sums

__all__ = ["AlignmentResult", "FORMAT_TOKENS", "ForgettingProbe", "ImageSpanLogitsProcessor", "ImageTextCollator",
           "ImageTokenMap", "ModalitySplitTrainer", "ModalitySplitTrainingArguments", "ReplayBatchSampler",
           "add_image_tokens", "bag_of_words", "clip_loss", "contrastive_alignment", "encode_images",
           "forgetting_probe", "format_sequence", "image_token_string", "modality_loss_sums", "nearest_text_tokens",
           "prompt_ids"]
