"""AutoregressiveImagePipeline: text-to-image with a causal language model extended with image tokens (Zhang et al.,
2023, arXiv:2311.16201).

The language model continues ``<doc> <text> caption </text> <image>`` with exactly one image's worth of codebook
tokens (constrained by [`ImageSpanLogitsProcessor`]) and ``</image>``; the codes are decoded by the VQ model.
Sampling, the KV cache and classifier-free guidance are transformers' ``generate``.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput, VQModel
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils import logging
from transformers import LogitsProcessor, LogitsProcessorList, PreTrainedModel
from transformers.generation.streamers import BaseStreamer

from ..multimodal.constraints import ImageSpanLogitsProcessor
from ..multimodal.data import check_vq_model, prompt_ids
from ..multimodal.tokens import ImageTokenMap
from ..schedulers.scheduling_maskgit import check_bool, check_generator, check_real, is_integer
from ._sharing import PipelineSharingMixin
from ._vq import OUTPUT_TYPES, decode_token_grid

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


class _RefuseNonFiniteScores(LogitsProcessor):
    """Raises instead of letting NaN or +inf next-token scores be sampled (runs before the image-span mask)."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        bad = torch.isnan(scores) | (scores == float("inf"))
        if bad.any():
            raise ValueError(f"the language model returned non-finite next-token scores (NaN or +inf) at "
                             f"{int(bad.sum())} of {bad.numel()} entries after {input_ids.shape[1]} tokens; refusing "
                             "to sample image tokens from them (check the model's weights and dtype).")
        return scores


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

    def check_inputs(self, prompt: Any, num_images_per_prompt: Any, guidance_scale: Any, temperature: Any,
                     top_k: Any, top_p: Any = None, generator: Any = None, output_type: Any = "pil",
                     return_dict: Any = True) -> None:
        """Refuse every argument of `__call__` that cannot be honoured, with a `TypeError` or `ValueError` naming
        it, the value and what is allowed (``prompt`` is already a list here)."""
        if not isinstance(prompt, list) or not prompt or not all(isinstance(p, str) for p in prompt):
            raise ValueError(f"`prompt` must be a string or a non-empty list of strings, got {prompt!r}.")
        if not is_integer(num_images_per_prompt) or num_images_per_prompt < 1:
            raise ValueError(f"`num_images_per_prompt` must be an integer >= 1, got {num_images_per_prompt!r}.")
        check_real(guidance_scale, "guidance_scale", low=0.0)
        check_real(temperature, "temperature", low=0.0, low_open=True)
        if top_k is not None and (not is_integer(top_k) or top_k < 1):
            raise ValueError(f"`top_k` must be None or an integer >= 1, got {top_k!r}.")
        if top_p is not None:
            check_real(top_p, "top_p", low=0.0, high=1.0, low_open=True)
        check_generator(generator, len(prompt) * num_images_per_prompt)
        if not isinstance(output_type, str) or output_type not in OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {OUTPUT_TYPES}, got {output_type!r}.")
        check_bool(return_dict, "return_dict")
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
                 generator: torch.Generator | list[torch.Generator] | None = None, output_type: str = "pil",
                 return_dict: bool = True) -> ImagePipelineOutput | tuple:
        """Generate ``num_images_per_prompt`` images per prompt.

        ``guidance_scale > 1`` applies classifier-free guidance against the empty caption
        ``<doc> <text> </text> <image>`` (transformers' ``UnbatchedClassifierFreeGuidanceLogitsProcessor``: one
        extra forward pass per token). ``temperature``, ``top_k`` and ``top_p`` are the sampling settings of
        ``generate``. ``output_type``: ``pil`` | ``np`` | ``pt`` | ``latent`` (the (B, h, w) code grid).

        Allowed values (anything else raises a `TypeError` or `ValueError` naming the argument): ``prompt`` a
        string or non-empty list of strings; ``num_images_per_prompt`` an integer >= 1; ``guidance_scale`` a finite
        number >= 0; ``temperature`` a finite number > 0; ``top_k`` None or an integer >= 1; ``top_p`` None or a
        number in (0, 1]; ``generator`` None, one ``torch.Generator`` (one batched ``generate``), or a list of one
        per image (images ordered prompt by prompt, ``num_images_per_prompt`` each): each image is then generated
        on its own from its generator, exactly as a call for that prompt alone with that generator. NaN or +inf
        scores from the language model raise a `ValueError`; they never become image tokens.
        """
        prompt = [prompt] if isinstance(prompt, str) else prompt
        if isinstance(generator, tuple):
            generator = list(generator)
        self.check_inputs(prompt, num_images_per_prompt, guidance_scale, temperature, top_k, top_p=top_p,
                          generator=generator, output_type=output_type, return_dict=return_dict)
        settings = dict(guidance_scale=float(guidance_scale), temperature=float(temperature), top_k=top_k,
                        top_p=top_p)

        # 1-2. prompt, then autoregressive sampling of the image span (codes, then </image>)
        if isinstance(generator, list):  # one generator per image: each image is generated alone
            rows = [p for p in prompt for _ in range(num_images_per_prompt)]
            codes = torch.cat([self._sample_codes([p], 1, g, **settings) for p, g in zip(rows, generator)])
        else:
            codes = self._sample_codes(prompt, num_images_per_prompt, generator, **settings)

        # 3. decode
        output = decode_token_grid(self.vqvae, codes, self.image_processor, output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (output,)
        return ImagePipelineOutput(output)

    def _sample_codes(self, prompt: list[str], num_images_per_prompt: int, generator: torch.Generator | None,
                      guidance_scale: float, temperature: float, top_k: int | None,
                      top_p: float | None) -> torch.LongTensor:
        """(len(prompt) · num_images_per_prompt, h, w) codebook indices sampled with ``generate``."""
        token_map = self.token_map
        num_tokens = token_map.num_image_tokens
        input_ids, attention_mask = self.encode_prompt(prompt)
        input_ids = input_ids.repeat_interleave(num_images_per_prompt, dim=0)
        attention_mask = attention_mask.repeat_interleave(num_images_per_prompt, dim=0)
        guidance = {}
        if guidance_scale != 1.0:
            negative = torch.tensor([prompt_ids(token_map, [])], device=input_ids.device).expand(len(input_ids), -1)
            guidance = {"guidance_scale": guidance_scale, "negative_prompt_ids": negative,
                        "negative_prompt_attention_mask": torch.ones_like(negative)}
        seed = int(torch.randint(2**62, (1,), generator=generator)) if generator is not None else None
        processors = LogitsProcessorList([_RefuseNonFiniteScores(), ImageSpanLogitsProcessor(token_map, num_tokens)])
        with torch.random.fork_rng(devices=[]), self.progress_bar(total=num_tokens + 1) as bar:
            if seed is not None:
                torch.manual_seed(seed)
            sequences = self.language_model.generate(
                input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=num_tokens + 1,
                min_new_tokens=num_tokens + 1, do_sample=True, temperature=temperature, top_k=top_k or 0,
                top_p=top_p if top_p is not None else 1.0, pad_token_id=token_map["pad"],
                logits_processor=processors, streamer=_ProgressStreamer(bar), **guidance)
        codes = token_map.ids_to_codes(sequences[:, input_ids.shape[1]: input_ids.shape[1] + num_tokens])
        return codes.view(len(codes), *token_map.image_grid)


__all__ = ["AutoregressiveImagePipeline"]
