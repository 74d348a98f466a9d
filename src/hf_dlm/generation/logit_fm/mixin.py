"""``generate()`` for Logit-FM models."""

from __future__ import annotations

from typing import Any

import torch

from .._reload import ReloadsGenerationConfig
from .configuration import LogitFMGenerationConfig
from .sampler import LogitFMGenerationOutput, resolve_config, sample_logit_fm


class LogitFMGenerationMixin(ReloadsGenerationConfig):
    """Adds Logit-FM ``generate()`` (the paper's ODE, semi-randomized, randomized and hybrid samplers) to a model
    that returns the logits of p(x_1 | x_t, t). The name ends in ``GenerationMixin`` so that transformers'
    ``can_generate()`` accepts the model and ``pipeline("text-generation")`` drives it."""

    generation_config_class = LogitFMGenerationConfig

    @torch.no_grad()
    def generate(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                 generation_config: LogitFMGenerationConfig | None = None, generator: torch.Generator | None = None,
                 **kwargs: Any) -> torch.LongTensor | LogitFMGenerationOutput:
        """Generate ``max_new_tokens`` tokens after each prompt.

        Args:
            input_ids: prompts (batch, prompt_length), left-padded with ``attention_mask`` 0 on padding; their
                positions stay fixed one-hot points. ``None`` = one unconditional sample (an empty prompt).
            attention_mask: 1 for tokens, 0 for padding.
            generation_config: base settings; defaults to ``self.generation_config``.
            generator: a ``torch.Generator`` for reproducible noise and sampling.
            kwargs: any field of [`LogitFMGenerationConfig`], overriding ``generation_config``.
        """
        config = resolve_config(self, generation_config if generation_config is not None else self.generation_config,
                                kwargs)
        if input_ids is None:
            input_ids = torch.empty(1, 0, dtype=torch.long)
        if input_ids.dim() != 2:
            raise ValueError(f"`input_ids` must have shape (batch, length), got {tuple(input_ids.shape)}.")
        input_ids = input_ids.to(self.device)
        total = input_ids.shape[1] + config.max_new_tokens
        if total > self.config.max_position_embeddings:
            raise ValueError(f"prompt length {input_ids.shape[1]} + max_new_tokens {config.max_new_tokens} = {total} "
                             f"exceeds the model's {self.config.max_position_embeddings} positions.")
        if attention_mask is not None:
            attention_mask = attention_mask.to(self.device)
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(input_ids), config.max_new_tokens)],
                                       dim=1)
            if bool(attention_mask.all()):
                attention_mask = None
        output = sample_logit_fm(self, input_ids, config, self.config.vocab_size, attention_mask, generator)
        return output if config.return_dict_in_generate else output.sequences


__all__ = ["LogitFMGenerationMixin"]
