"""MaskedImagePipeline: class- or text-conditional masked image generation (MaskGIT, aMUSEd, Meissonic family)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput, VQModel
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils import logging

from ..denoiser import DenoiserConditions, build_conditions, conditional_denoise, encode_captions
from ..generation.initial_state import DiMOInitialState, embedding_noise, input_embedding_module, mix_embedding_noise
from ..schedulers.scheduling_maskgit import (check_bool, check_generator, check_real, check_temperature, is_integer,
                                             is_real)
from ._sharing import PipelineSharingMixin
from ._vq import OUTPUT_TYPES, decode_token_grid

logger = logging.get_logger(__name__)


def _check_finite(logits: torch.Tensor, step: int, source: str) -> None:
    """NaN or infinite logits must never be sampled into tokens."""
    finite = torch.isfinite(logits)
    if not finite.all():
        raise ValueError(f"{source} non-finite logits (NaN or inf) at step {step}: {int((~finite).sum())} of "
                         f"{finite.numel()} values; refusing to sample tokens from them (check the transformer's "
                         "weights and dtype).")


@contextlib.contextmanager
def _per_image_embedding_noise(model: torch.nn.Module, std: float, generators: list[torch.Generator],
                               copies: int, mode: str = "additive") -> Iterator[None]:
    """Di[M]O's embedding noise with one generator per image: image ``i`` draws its ``copies`` rows (the
    unconditional and conditional copies under guidance) from ``generators[i]`` alone, as a call for that image
    alone would. No-op for ``std == 0``."""
    if std <= 0:
        yield
        return

    def add_noise(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        rows = [torch.randn((copies, *output.shape[1:]), generator=g, dtype=torch.float32) for g in generators]
        noise = torch.stack(rows, dim=1).reshape(output.shape)  # (copies, images, ...) → rows copy-major
        return mix_embedding_noise(output, noise.to(output.device, output.dtype), std, mode)

    handle = input_embedding_module(model).register_forward_hook(add_noise)
    try:
        yield
    finally:
        handle.remove()


class MaskedImagePipeline(PipelineSharingMixin, DiffusionPipeline):
    """Generates images by iterative parallel decoding of VQ tokens.

    Components: ``vqvae`` (diffusers ``VQModel``), ``transformer`` (our ``MaskedImageTransformer`` or diffusers'
    ``UVit2DModel``), ``scheduler`` (``MaskGITScheduler`` or ``AmusedScheduler``) and, for text conditioning,
    ``tokenizer`` + ``text_encoder`` (a transformers ``CLIPTextModelWithProjection``-like encoder that returns
    ``text_embeds`` and hidden states). With aMUSEd components it reproduces ``AmusedPipeline``.
    """

    model_cpu_offload_seq = "text_encoder->transformer->vqvae"
    _optional_components = ["tokenizer", "text_encoder"]
    _callback_tensor_inputs = ["latents"]

    def __init__(self, vqvae: VQModel, transformer: torch.nn.Module, scheduler: Any, tokenizer: Any = None,
                 text_encoder: Any = None) -> None:
        super().__init__()
        self.register_modules(vqvae=vqvae, tokenizer=tokenizer, text_encoder=text_encoder, transformer=transformer,
                              scheduler=scheduler)
        self.vae_scale_factor = 2 ** (len(self.vqvae.config.block_out_channels) - 1) if vqvae is not None else 1
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor, do_normalize=False)

    # ------------------------------------------------------------------ inputs
    @property
    def num_classes(self) -> int:
        return int(getattr(self.transformer.config, "num_classes", 0) or 0)

    @property
    def codebook_size(self) -> int | None:
        """Codebook entries of the VQ model (token ids ``0 … codebook_size − 1``; the mask id lies outside)."""
        vq_config = getattr(self.vqvae, "config", None)
        size = getattr(vq_config, "num_vq_embeddings", None)
        return int(size) if size is not None else None

    @property
    def reads_micro_conditioning(self) -> bool:
        """Whether the transformer uses aMUSEd's micro-conditioning (``UVit2DModel`` does; ours ignores it)."""
        return getattr(self.transformer.config, "micro_cond_encode_dim", None) is not None

    def _max_grid_tokens(self) -> int | None:
        positions = getattr(self.transformer, "position_embedding", None)
        return int(positions.shape[1]) if isinstance(positions, torch.Tensor) and positions.ndim == 3 else None

    def batch_size(self, prompt: list[str] | None, class_labels: Any, num_images_per_prompt: int) -> int:
        """Images this call generates: (prompts or labels) × ``num_images_per_prompt``."""
        count = len(prompt) if prompt is not None else int(torch.as_tensor(class_labels).numel())
        return count * num_images_per_prompt

    def check_inputs(self, prompt: list[str] | None, class_labels: Any, height: Any, width: Any,
                     num_inference_steps: Any, guidance_scale: Any = 1.0, negative_prompt: Any = None,
                     num_images_per_prompt: Any = 1, generator: Any = None, temperature: Any = (2, 0),
                     latents: Any = None, output_type: Any = "pil", return_dict: Any = True,
                     callback_on_step_end: Any = None, callback_on_step_end_tensor_inputs: Any = None,
                     micro_conditioning_aesthetic_score: Any = 6,
                     micro_conditioning_crop_coord: Any = (0, 0)) -> None:
        """Refuse every argument of `__call__` that cannot be honoured, with a `TypeError` (wrong type) or
        `ValueError` (wrong value) naming the argument, the value and what is allowed. ``prompt`` is a list of
        strings or None and ``class_labels`` an integer, integer sequence or integer tensor, or None."""
        # sizes and step count
        for name, value in (("height", height), ("width", width)):
            if not is_integer(value):
                raise TypeError(f"`{name}` must be a positive integer multiple of {self.vae_scale_factor} (or None "
                                f"for the transformer's size), got {value!r}.")
            if value < self.vae_scale_factor or value % self.vae_scale_factor:
                raise ValueError(f"`{name}`={value!r} is not allowed: `height` ({height}) and `width` ({width}) "
                                 f"must be positive multiples of the VQ downscale factor {self.vae_scale_factor}.")
        limit = self._max_grid_tokens()
        tokens = (height // self.vae_scale_factor) * (width // self.vae_scale_factor)
        if limit is not None and tokens > limit:
            raise ValueError(f"`height` × `width` = {height} × {width} gives {tokens} tokens, more than the "
                             f"{limit} positions of the transformer (sample_size "
                             f"{getattr(self.transformer.config, 'sample_size', '?')}).")
        if not is_integer(num_inference_steps) or num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be an integer >= 1, got {num_inference_steps!r}.")
        check_real(guidance_scale, "guidance_scale", low=0.0)
        if not is_integer(num_images_per_prompt) or num_images_per_prompt < 1:
            raise ValueError(f"`num_images_per_prompt` must be an integer >= 1, got {num_images_per_prompt!r}.")
        check_temperature(temperature, "temperature")

        # conditioning
        if prompt is not None and (not isinstance(prompt, list) or not prompt
                                   or not all(isinstance(p, str) for p in prompt)):
            raise TypeError(f"`prompt` must be a string or a non-empty list of strings, got {prompt!r}.")
        if class_labels is not None:
            if isinstance(class_labels, torch.Tensor):
                if class_labels.dtype.is_floating_point or class_labels.dtype.is_complex \
                        or class_labels.dtype == torch.bool or class_labels.ndim > 1:
                    raise TypeError(f"`class_labels` as a tensor must hold integers in 0 or 1 dimensions, got a "
                                    f"{class_labels.dtype} tensor of shape {tuple(class_labels.shape)}.")
                values = class_labels.reshape(-1).tolist()
            else:
                values = list(class_labels) if isinstance(class_labels, (list, tuple)) else [class_labels]
                bad = [v for v in values if not is_integer(v)]
                if bad:
                    raise TypeError(f"`class_labels` must be integers (a label or a list of labels), got {bad[0]!r} "
                                    f"of type {type(bad[0]).__name__} in {class_labels!r}.")
            if not values:
                raise ValueError("`class_labels` must name at least one class, got an empty sequence.")
        if self.num_classes > 0:
            if class_labels is None or prompt is not None:
                raise ValueError("this pipeline's transformer is class-conditional: pass `class_labels` and no "
                                 "`prompt`.")
            if any(v < 0 or v >= self.num_classes for v in values):
                raise ValueError(f"`class_labels` must lie in [0, {self.num_classes - 1}], got {values}.")
            if negative_prompt is not None:
                raise ValueError("`negative_prompt` needs a text-conditional transformer; this one is "
                                 "class-conditional and guides against the null class.")
        elif prompt is None or class_labels is not None:
            raise ValueError("this pipeline's transformer is text-conditional: pass `prompt` and no `class_labels`.")
        if negative_prompt is not None:
            negatives = [negative_prompt] if isinstance(negative_prompt, str) else negative_prompt
            if not isinstance(negatives, list) or not all(isinstance(p, str) for p in negatives):
                raise TypeError(f"`negative_prompt` must be a string or a list of strings, got {negative_prompt!r}.")
            if not isinstance(negative_prompt, str) and len(negatives) != len(prompt):
                raise ValueError(f"`negative_prompt` has {len(negatives)} entries but `prompt` has {len(prompt)}: "
                                 "pass one string (used for every prompt) or one per prompt.")
            if guidance_scale <= 1:
                raise ValueError(f"`negative_prompt` only acts through classifier-free guidance, which is off at "
                                 f"`guidance_scale`={guidance_scale}; pass `guidance_scale` > 1 or no negative prompt.")

        # randomness and starting tokens
        batch_size = self.batch_size(prompt, class_labels, num_images_per_prompt)
        check_generator(generator, batch_size)
        if latents is not None:
            shape = (batch_size, height // self.vae_scale_factor, width // self.vae_scale_factor)
            if not isinstance(latents, torch.Tensor) or latents.dtype.is_floating_point \
                    or latents.dtype.is_complex or latents.dtype == torch.bool:
                got = latents.dtype if isinstance(latents, torch.Tensor) else type(latents).__name__
                raise TypeError(f"`latents` must be an integer tensor of token ids of shape {shape}, got {got}.")
            if tuple(latents.shape) != shape:
                raise ValueError(f"`latents` must have shape (batch, height / {self.vae_scale_factor}, width / "
                                 f"{self.vae_scale_factor}) = {shape}, got {tuple(latents.shape)}.")
            mask_id, codebook = self.scheduler.config.mask_token_id, self.codebook_size
            if codebook is not None:
                valid = (latents == mask_id) | ((latents >= 0) & (latents < codebook))
                if not valid.all():
                    raise ValueError(f"`latents` hold ids {latents[~valid].unique()[:5].tolist()} outside the "
                                     f"codebook [0, {codebook - 1}] and the mask id {mask_id}.")

        # outputs and callbacks
        if not isinstance(output_type, str) or output_type not in OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {OUTPUT_TYPES}, got {output_type!r}.")
        check_bool(return_dict, "return_dict")
        if callback_on_step_end is not None and not callable(callback_on_step_end):
            raise TypeError(f"`callback_on_step_end` must be callable, got {type(callback_on_step_end).__name__}.")
        if callback_on_step_end_tensor_inputs is not None:
            names = callback_on_step_end_tensor_inputs
            if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
                raise TypeError(f"`callback_on_step_end_tensor_inputs` must be a list of names, got {names!r}.")
            unknown = set(names) - set(self._callback_tensor_inputs)
            if unknown:
                raise ValueError(f"`callback_on_step_end_tensor_inputs` may only name {self._callback_tensor_inputs}"
                                 f", got {sorted(unknown)}.")
            if callback_on_step_end is None:
                raise ValueError("`callback_on_step_end_tensor_inputs` was given without `callback_on_step_end`.")

        # aMUSEd micro-conditioning
        check_real(micro_conditioning_aesthetic_score, "micro_conditioning_aesthetic_score")
        crop = micro_conditioning_crop_coord
        if not isinstance(crop, (list, tuple)) or len(crop) != 2 or not all(is_real(c) for c in crop):
            raise TypeError(f"`micro_conditioning_crop_coord` must be a (top, left) pair of numbers, got {crop!r}.")
        for value in crop:
            check_real(value, "micro_conditioning_crop_coord")
        if not self.reads_micro_conditioning and (micro_conditioning_aesthetic_score != 6 or tuple(crop) != (0, 0)):
            raise ValueError(f"{type(self.transformer).__name__} ignores aMUSEd's micro-conditioning: leave "
                             "`micro_conditioning_aesthetic_score` (6) and `micro_conditioning_crop_coord` (0, 0) "
                             f"at their defaults, got {micro_conditioning_aesthetic_score!r} and {crop!r}.")

    def tokenize_prompt(self, prompt: list[str]) -> torch.LongTensor:
        """Caption ids padded to the tokenizer's ``model_max_length``, as aMUSEd tokenizes them."""
        if self.tokenizer is None or self.text_encoder is None:
            raise ValueError("text conditioning needs the `tokenizer` and `text_encoder` components.")
        return self.tokenizer(prompt, return_tensors="pt", padding="max_length", truncation=True,
                              max_length=self.tokenizer.model_max_length).input_ids.to(self._execution_device)

    def encode_prompt(self, prompt: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled text embedding, penultimate hidden states), as aMUSEd conditions on them."""
        return encode_captions(self.text_encoder, self.tokenize_prompt(prompt))

    def conditions(self, prompt: list[str] | None, class_labels: Any, negative_prompt: str | list[str] | None,
                   num_images_per_prompt: int, with_null: bool) -> DenoiserConditions:
        """The transformer's conditions for a batch (``hf_dlm.denoiser.build_conditions``): class labels
        repeat-interleaved, or prompts encoded and tiled as in ``AmusedPipeline``; with the null class or the
        negative (default: empty) prompt for classifier-free guidance when ``with_null``."""
        if prompt is None:
            labels = torch.as_tensor(class_labels, device=self._execution_device).long().view(-1)
            return build_conditions(self.transformer, class_labels=labels.repeat_interleave(num_images_per_prompt),
                                    with_null=with_null)
        negative = negative_prompt if negative_prompt is not None else [""] * len(prompt)
        negative = [negative] * len(prompt) if isinstance(negative, str) else negative
        conditions = build_conditions(self.transformer, caption_ids=self.tokenize_prompt(prompt),
                                      text_encoder=self.text_encoder, with_null=with_null,
                                      null_caption_ids=self.tokenize_prompt(negative) if with_null else None)
        return conditions.repeat(num_images_per_prompt)

    # ------------------------------------------------------------------ call
    @torch.no_grad()
    def __call__(self, prompt: str | list[str] | None = None, class_labels: int | list[int] | None = None,
                 height: int | None = None, width: int | None = None, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, negative_prompt: str | list[str] | None = None,
                 num_images_per_prompt: int = 1, generator: torch.Generator | list[torch.Generator] | None = None,
                 temperature: float | tuple[float, float] = (2, 0), latents: torch.LongTensor | None = None,
                 output_type: str = "pil", return_dict: bool = True,
                 callback_on_step_end: Callable[..., dict] | None = None,
                 callback_on_step_end_tensor_inputs: list[str] | None = None,
                 micro_conditioning_aesthetic_score: int = 6,
                 micro_conditioning_crop_coord: tuple[int, int] = (0, 0)) -> ImagePipelineOutput | tuple:
        """Generate images for ``prompt`` (text models) or ``class_labels`` (class-conditional models).

        Classifier-free guidance (``guidance_scale > 1``) evaluates the unconditional (negative prompt or null
        class) and conditional inputs in one batched forward pass per step and combines
        ``uncond + guidance_scale · (cond − uncond)``; ``guidance_scale <= 1`` runs the conditional pass alone.
        ``temperature`` is the scheduler's choice temperature. ``output_type``: ``pil`` | ``np`` | ``pt`` | ``latent``.

        A transformer distilled with Di[M]O (its config has ``dimo_initial_state``) at ``num_inference_steps=1``
        starts from the saved initial state instead of an all-mask grid and is called once; it was distilled with
        the teacher's guidance, so it runs with ``guidance_scale=1``. Left unset, ``num_inference_steps`` and
        ``guidance_scale`` are 1 and 1 for such a transformer (the one-step recipe) and 12 and 10 otherwise.

        What each argument accepts (anything else raises a `TypeError` or `ValueError` naming it, see
        `check_inputs`): ``prompt`` a string or non-empty list of strings (text models only); ``class_labels`` an
        integer label in ``[0, num_classes)``, a list of them or an integer tensor (class models only — a float such
        as 3.7 is refused, not rounded); ``height``/``width`` None (the transformer's size) or a positive multiple of
        the VQ downscale factor whose grid fits the transformer; ``num_inference_steps`` an integer >= 1;
        ``guidance_scale`` a finite number >= 0; ``negative_prompt`` one string or one per prompt, text models with
        ``guidance_scale > 1`` only; ``num_images_per_prompt`` an integer >= 1; ``generator`` None, one
        ``torch.Generator``, or a list of exactly one per generated image (``len(prompt or class_labels) ×
        num_images_per_prompt``, images ordered as the batch: class labels repeat-interleaved, prompts repeated as
        in ``AmusedPipeline``) — image ``i`` is then drawn only from ``generator[i]``, so it is the image a call for
        that image alone with that generator gives; ``temperature`` a finite number >= 0 or a ``(start, end)`` pair;
        ``latents`` an integer (batch, h, w) grid of codebook ids or the mask id; ``output_type`` one of
        ``pil``/``np``/``pt``/``latent``; micro-conditioning only for transformers that read it (``UVit2DModel``).
        NaN or infinite logits from the transformer raise a `ValueError` naming the step; they never become tokens.
        """
        saved_state = DiMOInitialState.from_model(self.transformer)
        if num_inference_steps is None:
            num_inference_steps = 1 if saved_state is not None else 12
        if guidance_scale is None:
            guidance_scale = 1.0 if saved_state is not None else 10.0
        sample_size = getattr(self.transformer.config, "sample_size", 16)
        height = sample_size * self.vae_scale_factor if height is None else height
        width = sample_size * self.vae_scale_factor if width is None else width
        if isinstance(prompt, str):
            prompt = [prompt]
        if class_labels is not None and not isinstance(class_labels, (list, tuple, torch.Tensor)):
            class_labels = torch.as_tensor(class_labels) if isinstance(class_labels, np.ndarray) else [class_labels]
        if isinstance(generator, tuple):
            generator = list(generator)
        self.check_inputs(prompt, class_labels, height, width, num_inference_steps, guidance_scale=guidance_scale,
                          negative_prompt=negative_prompt, num_images_per_prompt=num_images_per_prompt,
                          generator=generator, temperature=temperature, latents=latents, output_type=output_type,
                          return_dict=return_dict, callback_on_step_end=callback_on_step_end,
                          callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
                          micro_conditioning_aesthetic_score=micro_conditioning_aesthetic_score,
                          micro_conditioning_crop_coord=micro_conditioning_crop_coord)
        num_inference_steps, height, width = int(num_inference_steps), int(height), int(width)
        device = self._execution_device
        do_cfg = guidance_scale > 1.0
        per_image = isinstance(generator, list)

        # 1. conditioning, and aMUSEd's micro-conditioning (UVit2DModel reads it; MaskedImageTransformer ignores it)
        conditions = self.conditions(prompt, class_labels, negative_prompt, num_images_per_prompt, do_cfg)
        batch_size = conditions.batch_size
        cond_dtype = conditions.encoder_hidden_states.dtype if conditions.encoder_hidden_states is not None \
            else next(self.transformer.parameters()).dtype
        micro_conds = torch.tensor([width, height, *micro_conditioning_crop_coord, micro_conditioning_aesthetic_score],
                                   device=device, dtype=cond_dtype)
        conditions = conditions.shared(micro_conds=micro_conds.unsqueeze(0).expand(batch_size, -1))

        # 2. latents: a fully masked token grid, or for a Di[M]O one-step generator its initial state x_init
        shape = (batch_size, height // self.vae_scale_factor, width // self.vae_scale_factor)
        mask_token_id = self.scheduler.config.mask_token_id
        initial_state = saved_state if num_inference_steps == 1 else None
        if latents is None and initial_state is not None:
            if per_image:
                latents = torch.cat([initial_state.sample(1, shape[1] * shape[2], mask_token_id, device, g)
                                     for g in generator])
            else:
                latents = initial_state.sample(batch_size, shape[1] * shape[2], mask_token_id, device, generator)
            latents = latents.view(shape)
        elif latents is None:
            latents = torch.full(shape, mask_token_id, dtype=torch.long, device=device)
        else:
            latents = latents.to(device=device, dtype=torch.long)
        noise_std = initial_state.embedding_noise_std if initial_state is not None else 0.0
        noise_mode = initial_state.embedding_noise_mode if initial_state is not None else "additive"

        # 3. denoising loop
        self.scheduler.set_timesteps(num_inference_steps, temperature, device)
        with self.progress_bar(total=num_inference_steps) as progress_bar:
            for i, timestep in enumerate(self.scheduler.timesteps):
                rows = 2 * batch_size if do_cfg else batch_size
                positions = torch.ones(rows, shape[1] * shape[2], dtype=torch.bool, device=device)
                noise = _per_image_embedding_noise(self.transformer, noise_std, generator, 2 if do_cfg else 1,
                                                   noise_mode) \
                    if per_image else embedding_noise(self.transformer, noise_std, positions, generator, noise_mode)
                with noise:  # one batched pass under guidance: null rows first, then the conditional ones
                    model_output = conditional_denoise(self.transformer, latents, conditions,
                                                       guidance_scale if do_cfg else 1.0)
                model_output = model_output.transpose(1, 2).reshape(batch_size, -1, *shape[1:])  # the grid layout
                _check_finite(model_output, i, "the transformer (with classifier-free guidance, scale "
                              f"{guidance_scale}) returned" if do_cfg else "the transformer returned")
                # a one-step generator predicts every token, the random ones of x_init included: the scheduler is
                # shown an all-mask canvas so that it samples all positions
                canvas = torch.full_like(latents, mask_token_id) if initial_state is not None else latents
                if per_image:  # one generator per image: each row is stepped alone with its own generator
                    latents = torch.cat([
                        self.scheduler.step(model_output=model_output[b: b + 1], timestep=timestep,
                                            sample=canvas[b: b + 1], generator=g).prev_sample
                        for b, g in enumerate(generator)])
                else:
                    latents = self.scheduler.step(model_output=model_output, timestep=timestep, sample=canvas,
                                                  generator=generator).prev_sample
                if callback_on_step_end is not None:
                    available = {"latents": latents}
                    names = callback_on_step_end_tensor_inputs or list(available)
                    outputs = callback_on_step_end(self, i, timestep, {n: available[n] for n in names})
                    if not isinstance(outputs, dict):
                        raise TypeError(f"`callback_on_step_end` must return a dict of tensors, got "
                                        f"{type(outputs).__name__} at step {i}.")
                    returned = outputs.pop("latents", latents)
                    if not isinstance(returned, torch.Tensor) or returned.shape != latents.shape \
                            or returned.dtype.is_floating_point or returned.dtype == torch.bool:
                        raise ValueError(f"`callback_on_step_end` returned `latents` that are not an integer tensor "
                                         f"of shape {tuple(latents.shape)} at step {i}.")
                    latents = returned
                progress_bar.update()

        # 4. decode
        output = decode_token_grid(self.vqvae, latents, self.image_processor, output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (output,)
        return ImagePipelineOutput(output)


__all__ = ["MaskedImagePipeline"]
