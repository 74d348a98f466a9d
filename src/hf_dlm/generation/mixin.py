"""``generate()`` for masked diffusion language models: the decoding loop of LLaDA (Nie et al., 2025,
Algorithm 4 with semi-autoregressive blocks, Algorithm 5 low-confidence remasking), Dream's samplers and
confidence-threshold parallel decoding, over the denoiser contract."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers.generation.streamers import BaseStreamer
from transformers.utils import ModelOutput, logging

from ..denoiser import get_mask_token_id, guided_denoise
from ._reload import ReloadsGenerationConfig, merge_overrides
from .configuration import MaskedDiffusionGenerationConfig
from .initial_state import DiMOInitialState, embedding_noise
from .sampling import (
    add_gumbel_noise,
    confidence_scores,
    filter_logits,
    num_transfer_tokens,
    origin_reveal,
    select_above_threshold,
    select_top,
    trim_after_eos,
)

logger = logging.get_logger(__name__)


@dataclass
class MaskedDiffusionGenerationOutput(ModelOutput):
    """Output of [`MaskedDiffusionGenerationMixin.generate`] with ``return_dict_in_generate=True``.

    Args:
        sequences: prompt followed by the generated tokens, shape (batch, length).
        nfe: number of denoiser forward passes (a classifier-free-guidance pass on the doubled batch counts once).
        history: with ``output_history=True``, the canvas after every step, each of shape (batch, prompt + L).
    """

    sequences: torch.LongTensor | None = None
    nfe: int | None = None
    history: tuple[torch.LongTensor, ...] | None = None


def _as_list(ids: int | list[int] | None) -> list[int]:
    if ids is None:
        return []
    return [int(i) for i in ids] if isinstance(ids, (list, tuple)) else [int(ids)]


class MaskedDiffusionGenerationMixin(ReloadsGenerationConfig):
    """Adds masked-diffusion ``generate()`` to a model that follows the denoiser contract.

    The class name ends in ``GenerationMixin`` so that transformers' ``can_generate()`` recognises it, which gives
    the model a ``generation_config`` and lets ``pipeline("text-generation")`` drive it.
    """

    generation_config_class = MaskedDiffusionGenerationConfig

    def _prepare_diffusion_config(self, generation_config: MaskedDiffusionGenerationConfig | None,
                                  kwargs: dict[str, Any]) -> MaskedDiffusionGenerationConfig:
        base = generation_config if generation_config is not None else self.generation_config
        config = merge_overrides(MaskedDiffusionGenerationConfig, base, kwargs, "masked diffusion decoding")
        model_config = self.config
        for name in ("mask_token_id", "pad_token_id", "eos_token_id", "bos_token_id"):
            if getattr(config, name, None) is None and getattr(model_config, name, None) is not None:
                setattr(config, name, getattr(model_config, name))
        if config.mask_token_id is None:
            config.mask_token_id = get_mask_token_id(self)
        config.validate()
        return config

    @torch.no_grad()
    def generate(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                 generation_config: MaskedDiffusionGenerationConfig | None = None,
                 streamer: BaseStreamer | None = None, generator: torch.Generator | None = None,
                 **kwargs: Any) -> torch.LongTensor | MaskedDiffusionGenerationOutput:
        """Generate ``max_new_tokens`` tokens after each prompt by masked-diffusion decoding.

        Args:
            input_ids: prompts, shape (batch, prompt_length); batches are left-padded (``attention_mask`` 0 on the
                padding). ``None`` starts from a single BOS token.
            attention_mask: 1 for tokens, 0 for padding.
            generation_config: base settings; defaults to ``self.generation_config``.
            streamer: receives the prompt, then each finished block through ``put``; if it has ``put_draft``
                (e.g. ``transformers.TextDiffusionStreamer``) it also receives the current block after every step.
            generator: a ``torch.Generator`` for reproducible sampling.
            kwargs: any field of [`MaskedDiffusionGenerationConfig`], overriding ``generation_config``.

        Returns:
            The sequences (prompt + answer), or a [`MaskedDiffusionGenerationOutput`] with
            ``return_dict_in_generate=True``.
        """
        config = self._prepare_diffusion_config(generation_config, kwargs)
        mask_id = config.mask_token_id
        device = self.device
        if input_ids is None:
            if config.bos_token_id is None:
                raise ValueError("`input_ids` is None and no `bos_token_id` is set to start from.")
            input_ids = torch.full((1, 1), config.bos_token_id, dtype=torch.long, device=device)
        if input_ids.dim() != 2:
            raise ValueError(f"`input_ids` must have shape (batch, length), got {tuple(input_ids.shape)}.")
        input_ids = input_ids.to(device)
        batch, prompt_length = input_ids.shape
        total = prompt_length + config.max_new_tokens
        max_positions = getattr(self.config, "max_position_embeddings", None)
        if max_positions is not None and total > max_positions:
            raise ValueError(f"prompt length {prompt_length} + max_new_tokens {config.max_new_tokens} = {total} "
                             f"exceeds the model's {max_positions} positions.")
        if streamer is not None and batch != 1:
            raise ValueError(f"A streamer needs batch size 1, got {batch}.")

        x = torch.full((batch, total), mask_id, dtype=torch.long, device=device)
        x[:, :prompt_length] = input_ids
        if attention_mask is not None:
            attention_mask = attention_mask.to(device)
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones(batch, config.max_new_tokens)], dim=1)
            if bool(attention_mask.all()):
                attention_mask = None
        initial_state = DiMOInitialState.from_model(self)
        if initial_state is not None and config.resolved_steps == 1:
            return self._generate_one_step(x, prompt_length, attention_mask, config, initial_state, generator, streamer)
        prompt_index = x != mask_id

        block_length, num_blocks = config.resolved_block_length, config.num_blocks
        steps_per_block = config.resolved_steps // num_blocks
        temperature = config.sampling_temperature
        eos_ids = _as_list(config.eos_token_id)
        history: list[torch.LongTensor] = []
        nfe = 0
        model_kwargs = self._decoding_model_kwargs(config)
        if streamer is not None:
            streamer.put(input_ids.cpu())

        progress = tqdm(total=config.resolved_steps, disable=not config.show_progress, desc="denoising")
        for block in range(num_blocks):
            start = prompt_length + block * block_length
            end = start + block_length
            block_masked = x[:, start:end] == mask_id
            counts = num_transfer_tokens(block_masked, steps_per_block)
            timesteps = torch.linspace(1.0, config.eps, steps_per_block + 1).tolist()
            step = 0
            while True:
                mask_index = x == mask_id
                mask_index[:, end:] = False  # positions right of the current block are never committed
                if not mask_index.any():
                    break
                if config.threshold is None:
                    if step >= steps_per_block:
                        break
                    if config.remasking != "origin" and int(counts[:, step].sum()) == 0:
                        step += 1  # nothing to commit: skip the forward pass (the canvas would not change)
                        progress.update(1)
                        continue
                logits = guided_denoise(self, x, attention_mask, prompt_index, config.cfg_scale, mask_id,
                                        **model_kwargs)
                nfe += 1
                logits = self._proposal_logits(logits, config)
                proposal = torch.argmax(add_gumbel_noise(logits, temperature, generator), dim=-1)
                if config.remasking == "origin":
                    transfer = origin_reveal(mask_index, timesteps[step], timesteps[step + 1],
                                             step == steps_per_block - 1, generator)
                else:
                    confidence = confidence_scores(logits, proposal, config.remasking, generator)
                    confidence = confidence.masked_fill(~mask_index, float("-inf"))
                    if config.threshold is not None:
                        transfer = select_above_threshold(confidence, config.threshold)
                    else:
                        transfer = select_top(confidence, counts[:, step], config.alg_temp, generator)
                x = torch.where(transfer & mask_index, proposal, x)
                step += 1
                progress.update(1)
                if config.output_history:
                    history.append(x.clone())
                if streamer is not None and hasattr(streamer, "put_draft"):
                    streamer.put_draft(x[:, start:end].cpu())
            if streamer is not None:
                streamer.put(x[0, start:end].cpu())
            if config.stop_at_eos and eos_ids and block < num_blocks - 1:
                generated = x[:, prompt_length:end]
                if bool(torch.isin(generated, torch.tensor(eos_ids, device=device)).any(dim=1).all()):
                    logger.info("every row produced EOS after block %d of %d: stopping", block + 1, num_blocks)
                    break
        progress.close()
        if streamer is not None:
            streamer.end()

        sequences = x
        if config.stop_at_eos and eos_ids:
            pad = config.pad_token_id if config.pad_token_id is not None else eos_ids[0]
            sequences = trim_after_eos(x, prompt_length, eos_ids, pad)
        if config.return_dict_in_generate:
            return MaskedDiffusionGenerationOutput(sequences=sequences, nfe=nfe,
                                                   history=tuple(history) if config.output_history else None)
        return sequences

    def _decoding_model_kwargs(self, config: MaskedDiffusionGenerationConfig) -> dict[str, Any]:
        """Extra forward arguments kept for one decoding loop (a model's per-canvas caches); none by default."""
        return {}

    def _proposal_logits(self, logits: torch.Tensor, config: MaskedDiffusionGenerationConfig) -> torch.Tensor:
        """Logits tokens are proposed from: suppressed ids (and the mask token and padded rows past the real
        vocabulary, with ``suppress_mask_token``) set to −inf, then top-k / top-p filtering."""
        if config.suppress_tokens:
            logits[..., list(config.suppress_tokens)] = float("-inf")
        if config.suppress_mask_token:
            logits[..., config.mask_token_id] = float("-inf")
            real_vocab = getattr(self.config, "vocab_size", None) or config.mask_token_id + 1
            logits[..., real_vocab:] = float("-inf")
        return filter_logits(logits, config.top_k, config.top_p)

    def _generate_one_step(self, x: torch.LongTensor, prompt_length: int, attention_mask: torch.Tensor | None,
                           config: MaskedDiffusionGenerationConfig, initial_state: DiMOInitialState,
                           generator: torch.Generator | None, streamer: BaseStreamer | None
                           ) -> torch.LongTensor | MaskedDiffusionGenerationOutput:
        """One-step generation of a Di[M]O-distilled generator (Zhu et al., 2025, Algorithm 1 lines 4–6): the answer
        starts from x_init ~ p_init with the settings saved at distillation (partly masked random tokens, embedding
        noise), the model is called once, and every answer position is sampled from its logits."""
        batch = x.shape[0]
        x[:, prompt_length:] = initial_state.sample(batch, config.max_new_tokens, config.mask_token_id, x.device,
                                                    generator)
        generated = torch.zeros_like(x, dtype=torch.bool)
        generated[:, prompt_length:] = True
        prompt_index = ~generated
        noise_positions = torch.cat([generated, generated]) if config.cfg_scale > 0 else generated
        with embedding_noise(self, initial_state.embedding_noise_std, noise_positions, generator):
            logits = guided_denoise(self, x, attention_mask, prompt_index, config.cfg_scale, config.mask_token_id)
        logits = self._proposal_logits(logits, config)
        proposal = torch.argmax(add_gumbel_noise(logits, config.sampling_temperature, generator), dim=-1)
        x = torch.where(generated, proposal, x)
        if streamer is not None:
            streamer.put(x[:, :prompt_length].cpu())
            streamer.put(x[0, prompt_length:].cpu())
            streamer.end()
        eos_ids = _as_list(config.eos_token_id)
        sequences = x
        if config.stop_at_eos and eos_ids:
            pad = config.pad_token_id if config.pad_token_id is not None else eos_ids[0]
            sequences = trim_after_eos(x, prompt_length, eos_ids, pad)
        if config.return_dict_in_generate:
            return MaskedDiffusionGenerationOutput(sequences=sequences, nfe=1,
                                                   history=(x.clone(),) if config.output_history else None)
        return sequences


__all__ = ["MaskedDiffusionGenerationMixin", "MaskedDiffusionGenerationOutput"]
