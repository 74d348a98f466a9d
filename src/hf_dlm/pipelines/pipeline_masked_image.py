"""MaskedImagePipeline: class- or text-conditional masked image generation (MaskGIT, aMUSEd, Meissonic family)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput, VQModel
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils import logging

from ..generation.initial_state import DiMOInitialState, embedding_noise
from ._sharing import PipelineSharingMixin
from ._vq import decode_token_grid

logger = logging.get_logger(__name__)


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

    def check_inputs(self, prompt, class_labels, height: int, width: int, num_inference_steps: int) -> None:
        if height % self.vae_scale_factor or width % self.vae_scale_factor:
            raise ValueError(f"`height` ({height}) and `width` ({width}) must be multiples of the VQ downscale "
                             f"factor {self.vae_scale_factor}.")
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be an integer >= 1, got {num_inference_steps!r}.")
        if self.num_classes > 0:
            if class_labels is None or prompt is not None:
                raise ValueError("this pipeline's transformer is class-conditional: pass `class_labels` and no "
                                 "`prompt`.")
            labels = torch.as_tensor(class_labels).view(-1)
            if ((labels < 0) | (labels >= self.num_classes)).any():
                raise ValueError(f"`class_labels` must lie in [0, {self.num_classes - 1}], got {labels.tolist()}.")
        elif prompt is None or class_labels is not None:
            raise ValueError("this pipeline's transformer is text-conditional: pass `prompt` and no `class_labels`.")

    def encode_prompt(self, prompt: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled text embedding, penultimate hidden states), as aMUSEd conditions on them."""
        if self.tokenizer is None or self.text_encoder is None:
            raise ValueError("text conditioning needs the `tokenizer` and `text_encoder` components.")
        input_ids = self.tokenizer(prompt, return_tensors="pt", padding="max_length", truncation=True,
                                   max_length=self.tokenizer.model_max_length).input_ids.to(self._execution_device)
        outputs = self.text_encoder(input_ids, return_dict=True, output_hidden_states=True)
        return outputs.text_embeds, outputs.hidden_states[-2]

    # ------------------------------------------------------------------ call
    @torch.no_grad()
    def __call__(self, prompt: str | list[str] | None = None, class_labels: int | list[int] | None = None,
                 height: int | None = None, width: int | None = None, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, negative_prompt: str | list[str] | None = None,
                 num_images_per_prompt: int = 1, generator: torch.Generator | None = None,
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
        """
        saved_state = DiMOInitialState.from_model(self.transformer)
        if num_inference_steps is None:
            num_inference_steps = 1 if saved_state is not None else 12
        if guidance_scale is None:
            guidance_scale = 1.0 if saved_state is not None else 10.0
        sample_size = getattr(self.transformer.config, "sample_size", 16)
        height = height or sample_size * self.vae_scale_factor
        width = width or sample_size * self.vae_scale_factor
        if isinstance(prompt, str):
            prompt = [prompt]
        if class_labels is not None and not isinstance(class_labels, (list, tuple, torch.Tensor)):
            class_labels = [class_labels]
        self.check_inputs(prompt, class_labels, height, width, num_inference_steps)
        unknown = set(callback_on_step_end_tensor_inputs or []) - set(self._callback_tensor_inputs)
        if unknown:
            raise ValueError(f"`callback_on_step_end_tensor_inputs` may only name {self._callback_tensor_inputs}, "
                             f"got {sorted(unknown)}.")
        device = self._execution_device
        do_cfg = guidance_scale > 1.0

        # 1. conditioning
        conditioning: dict[str, torch.Tensor] = {}
        if self.num_classes > 0:
            labels = torch.as_tensor(class_labels, device=device).long().view(-1)
            labels = labels.repeat_interleave(num_images_per_prompt)
            batch_size = len(labels)
            if do_cfg:
                labels = torch.cat([torch.full_like(labels, self.num_classes), labels])
            conditioning["class_labels"] = labels
        else:
            batch_size = len(prompt) * num_images_per_prompt
            pooled, hidden = self.encode_prompt(prompt)
            pooled, hidden = pooled.repeat(num_images_per_prompt, 1), hidden.repeat(num_images_per_prompt, 1, 1)
            if do_cfg:
                negative = negative_prompt if negative_prompt is not None else [""] * len(prompt)
                negative = [negative] if isinstance(negative, str) else negative
                neg_pooled, neg_hidden = self.encode_prompt(negative)
                pooled = torch.cat([neg_pooled.repeat(num_images_per_prompt, 1), pooled])
                hidden = torch.cat([neg_hidden.repeat(num_images_per_prompt, 1, 1), hidden])
            conditioning.update(pooled_text_emb=pooled, encoder_hidden_states=hidden)
        # aMUSEd's micro-conditioning (UVit2DModel reads it; MaskedImageTransformer ignores it)
        cond_dtype = conditioning["encoder_hidden_states"].dtype if "encoder_hidden_states" in conditioning \
            else next(self.transformer.parameters()).dtype
        micro_conds = torch.tensor([width, height, *micro_conditioning_crop_coord, micro_conditioning_aesthetic_score],
                                   device=device, dtype=cond_dtype)
        micro_conds = micro_conds.unsqueeze(0).expand(2 * batch_size if do_cfg else batch_size, -1)

        # 2. latents: a fully masked token grid, or for a Di[M]O one-step generator its initial state x_init
        shape = (batch_size, height // self.vae_scale_factor, width // self.vae_scale_factor)
        mask_token_id = self.scheduler.config.mask_token_id
        initial_state = saved_state if num_inference_steps == 1 else None
        if latents is None and initial_state is not None:
            latents = initial_state.sample(batch_size, shape[1] * shape[2], mask_token_id, device, generator)
            latents = latents.view(shape)
        elif latents is None:
            latents = torch.full(shape, mask_token_id, dtype=torch.long, device=device)
        noise_std = initial_state.embedding_noise_std if initial_state is not None else 0.0

        # 3. denoising loop
        self.scheduler.set_timesteps(num_inference_steps, temperature, device)
        uses_ratio = bool(getattr(self.transformer.config, "use_mask_ratio", False))
        with self.progress_bar(total=num_inference_steps) as progress_bar:
            for i, timestep in enumerate(self.scheduler.timesteps):
                model_input = torch.cat([latents] * 2) if do_cfg else latents
                extra = {}
                if uses_ratio:
                    extra["mask_ratio"] = (model_input == self.scheduler.config.mask_token_id).float().mean((1, 2))
                positions = torch.ones(model_input.shape[0], shape[1] * shape[2], dtype=torch.bool, device=device)
                with embedding_noise(self.transformer, noise_std, positions, generator):
                    model_output = self.transformer(model_input, micro_conds=micro_conds, **conditioning, **extra)
                model_output = model_output.sample if hasattr(model_output, "sample") else model_output
                if do_cfg:
                    uncond, cond = model_output.chunk(2)
                    model_output = uncond + guidance_scale * (cond - uncond)
                # a one-step generator predicts every token, the random ones of x_init included: the scheduler is
                # shown an all-mask canvas so that it samples all positions
                canvas = torch.full_like(latents, mask_token_id) if initial_state is not None else latents
                latents = self.scheduler.step(model_output=model_output, timestep=timestep, sample=canvas,
                                              generator=generator).prev_sample
                if callback_on_step_end is not None:
                    available = {"latents": latents}
                    names = callback_on_step_end_tensor_inputs or list(available)
                    outputs = callback_on_step_end(self, i, timestep, {n: available[n] for n in names})
                    latents = outputs.pop("latents", latents)
                progress_bar.update()

        # 4. decode
        output = decode_token_grid(self.vqvae, latents, self.image_processor, output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (output,)
        return ImagePipelineOutput(output)


__all__ = ["MaskedImagePipeline"]
