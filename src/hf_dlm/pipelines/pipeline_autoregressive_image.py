"""AutoregressiveImagePipeline: text-to-image with a causal language model extended with image tokens (seed 003).

The language model continues ``<doc> <text> caption </text> <image>`` with exactly one image's worth of codebook
tokens (constrained by [`ImageSpanLogitsProcessor`]) and ``</image>``; the codes are decoded by the VQ model.
Sampling, the KV cache and classifier-free guidance are transformers' ``generate``.
"""

from __future__ import annotations

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput, VQModel
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils import logging
from transformers import LogitsProcessorList, PreTrainedModel
from transformers.generation.streamers import BaseStreamer

from ..multimodal.constraints import ImageSpanLogitsProcessor
from ..multimodal.data import check_vq_model, prompt_ids
from ..multimodal.tokens import ImageTokenMap
from ._sharing import PipelineSharingMixin
from ._vq import decode_token_grid

logger = logging.get_logger(__name__)


class _ProgressStreamer(BaseStreamer):
    """Advances a progress bar once per generated token (``generate`` pushes the prompt first, then each step)."""

    def __init__(self, bar) -> None:
        self.bar, self.prompt_seen = bar, False

    def put(self, value) -> None:
        if self.prompt_seen:
            self.bar.update()
        self.prompt_seen = True

    def end(self) -> None:
        return None


class AutoregressiveImagePipeline(PipelineSharingMixin, DiffusionPipeline):
    """Generates images autoregressively with ``language_model`` (a transformers causal LM whose config carries
    ``image_tokens``, see [`add_image_tokens`]), its ``tokenizer`` and the ``vqvae`` whose codebook it models.

    Saved and loaded like any diffusers pipeline; ``transformers.pipeline("text-to-image", model=pipe)`` accepts it
    too, as it does the masked image pipeline.
    """

    model_cpu_offload_seq = "language_model->vqvae"

    def __init__(self, language_model: PreTrainedModel, tokenizer, vqvae: VQModel) -> None:
        super().__init__()
        self.register_modules(language_model=language_model, tokenizer=tokenizer, vqvae=vqvae)
        self.vae_scale_factor = 2 ** (len(vqvae.config.block_out_channels) - 1)
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor, do_normalize=False)

    @property
    def token_map(self) -> ImageTokenMap:
        token_map = ImageTokenMap.from_model(self.language_model)
        if token_map.image_grid is None:
            raise ValueError("the language model's `image_tokens` has no `image_grid`; extend it with "
                             "`add_image_tokens(..., image_grid=(h, w))`.")
        return token_map

    def check_inputs(self, prompt, num_images_per_prompt: int, guidance_scale: float, temperature: float,
                     top_k: int | None) -> None:
        if not isinstance(prompt, list) or not prompt or not all(isinstance(p, str) for p in prompt):
            raise ValueError(f"`prompt` must be a string or a non-empty list of strings, got {prompt!r}.")
        if not isinstance(num_images_per_prompt, int) or num_images_per_prompt < 1:
            raise ValueError(f"`num_images_per_prompt` must be an integer >= 1, got {num_images_per_prompt!r}.")
        if guidance_scale < 0:
            raise ValueError(f"`guidance_scale` must be >= 0, got {guidance_scale}.")
        if not temperature > 0:
            raise ValueError(f"`temperature` must be > 0, got {temperature}.")
        if top_k is not None and top_k < 1:
            raise ValueError(f"`top_k` must be None or >= 1, got {top_k}.")
        check_vq_model(self.vqvae, self.token_map)

    def encode_prompt(self, prompt: list[str]) -> tuple[torch.LongTensor, torch.LongTensor]:
        """``<doc> <text> caption </text> <image>`` per prompt, left-padded: (input_ids, attention_mask)."""
        token_map = self.token_map
        captions = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        rows = [prompt_ids(token_map, ids) for ids in captions]
        length = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), length), token_map["pad"], dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for i, row in enumerate(rows):
            input_ids[i, length - len(row):] = torch.tensor(row)
            attention_mask[i, length - len(row):] = 1
        return input_ids.to(self._execution_device), attention_mask.to(self._execution_device)

    @torch.no_grad()
    def __call__(self, prompt: str | list[str], num_images_per_prompt: int = 1, guidance_scale: float = 1.0,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 generator: torch.Generator | None = None, output_type: str = "pil",
                 return_dict: bool = True) -> ImagePipelineOutput | tuple:
        """Generate ``num_images_per_prompt`` images per prompt.

        ``guidance_scale > 1`` applies classifier-free guidance against the empty caption
        ``<doc> <text> </text> <image>`` (transformers' ``UnbatchedClassifierFreeGuidanceLogitsProcessor``: one
        extra forward pass per token). ``temperature``, ``top_k`` and ``top_p`` are the sampling settings of
        ``generate``. ``output_type``: ``pil`` | ``np`` | ``pt`` | ``latent`` (the (B, h, w) code grid).
        """
        prompt = [prompt] if isinstance(prompt, str) else prompt
        self.check_inputs(prompt, num_images_per_prompt, guidance_scale, temperature, top_k)
        token_map = self.token_map
        num_tokens = token_map.num_image_tokens

        # 1. prompt
        input_ids, attention_mask = self.encode_prompt(prompt)
        input_ids = input_ids.repeat_interleave(num_images_per_prompt, dim=0)
        attention_mask = attention_mask.repeat_interleave(num_images_per_prompt, dim=0)
        guidance = {}
        if guidance_scale != 1.0:
            negative = torch.tensor([prompt_ids(token_map, [])], device=input_ids.device).expand(len(input_ids), -1)
            guidance = {"guidance_scale": guidance_scale, "negative_prompt_ids": negative,
                        "negative_prompt_attention_mask": torch.ones_like(negative)}

        # 2. autoregressive sampling of the image span (codes, then </image>)
        seed = int(torch.randint(2**62, (1,), generator=generator)) if generator is not None else None
        with torch.random.fork_rng(devices=[]), self.progress_bar(total=num_tokens + 1) as bar:
            if seed is not None:
                torch.manual_seed(seed)
            sequences = self.language_model.generate(
                input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=num_tokens + 1,
                min_new_tokens=num_tokens + 1, do_sample=True, temperature=temperature, top_k=top_k or 0,
                top_p=top_p if top_p is not None else 1.0, pad_token_id=token_map["pad"],
                logits_processor=LogitsProcessorList([ImageSpanLogitsProcessor(token_map, num_tokens)]),
                streamer=_ProgressStreamer(bar), **guidance)
        codes = token_map.ids_to_codes(sequences[:, input_ids.shape[1]: input_ids.shape[1] + num_tokens])
        codes = codes.view(len(codes), *token_map.image_grid)

        # 3. decode
        output = decode_token_grid(self.vqvae, codes, self.image_processor, output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (output,)
        return ImagePipelineOutput(output)


__all__ = ["AutoregressiveImagePipeline"]
