"""The conditioning half of the denoiser contract: one object holding what a denoiser is conditioned on, and one
function that builds it for any kind of model.

- text language models (LLaDA, arXiv:2502.09992; Dream): a prompt prefix and its attention mask; their null
  condition for classifier-free guidance is the prompt masked (LLaDA's unsupervised CFG, Appendix B.3);
- class-conditional image transformers (MaskGIT, arXiv:2202.04200): class labels; the null condition is the extra
  label ``num_classes``;
- text-conditional image transformers (aMUSEd, arXiv:2401.01808; Meissonic): captions through a frozen CLIP-like
  text encoder — the pooled embedding and the penultimate hidden states; the null condition is the empty (or
  negative) caption;
- inputs every pass shares: aMUSEd's micro-conditioning, and the mask ratio of models that read it (by default the
  fraction of mask ids in the input, see [`mask_ratio_input`]).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import nn

from .kind import fixed_length, get_mask_token_id, is_image_denoiser, null_class_label, uses_mask_ratio

_MODEL_INPUTS = ("class_labels", "encoder_hidden_states", "pooled_text_emb", "micro_conds", "mask_ratio")


@dataclass
class DenoiserConditions:
    """What one batch is conditioned on, for any denoiser (build it with [`build_conditions`]).

    Attributes:
        batch_size: rows of the batch.
        generated_length: tokens the denoiser writes per row — after the prompt for a language model, the whole
            grid for an image model.
        prompt_ids / attention_mask: a language model's prompt prefix (batch, prompt_length) and the attention mask
            over prompt + generated tokens (None: no padding).
        class_labels: class-conditional image models, (batch,).
        encoder_hidden_states / pooled_text_emb: text-conditional image models, from the text encoder.
        micro_conds: aMUSEd's micro-conditioning (batch, 5), shared by the conditional and null passes.
        mask_ratio: explicit mask-ratio input (batch,); None derives it from the input ids for models that read it.
        null: the unconditional inputs of classifier-free guidance for image models; None for a language model,
            whose unconditional pass masks the prompt instead.
    """

    batch_size: int
    generated_length: int | None = None
    prompt_ids: torch.LongTensor | None = None
    attention_mask: torch.Tensor | None = None
    class_labels: torch.LongTensor | None = None
    encoder_hidden_states: torch.Tensor | None = None
    pooled_text_emb: torch.Tensor | None = None
    micro_conds: torch.Tensor | None = None
    mask_ratio: torch.Tensor | None = None
    null: DenoiserConditions | None = None

    @property
    def prompt_length(self) -> int:
        """Tokens of the prompt prefix (0 for image models)."""
        return 0 if self.prompt_ids is None else int(self.prompt_ids.shape[1])

    def model_kwargs(self) -> dict[str, torch.Tensor]:
        """The keyword inputs of the model's forward that are set."""
        return {name: getattr(self, name) for name in _MODEL_INPUTS if getattr(self, name) is not None}

    def shared(self, **inputs: torch.Tensor | None) -> DenoiserConditions:
        """A copy with ``inputs`` (e.g. ``micro_conds``) set on the conditional and the null condition alike."""
        null = replace(self.null, **inputs) if self.null is not None else None
        return replace(self, null=null, **inputs)

    def repeat(self, copies: int) -> DenoiserConditions:
        """Every row tensor tiled ``copies`` times along the batch (``num_images_per_prompt``, as ``Tensor.repeat``)."""
        changes: dict = {"batch_size": self.batch_size * copies}
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, torch.Tensor):
                changes[field.name] = value.repeat(copies, *([1] * (value.ndim - 1)))
        if self.null is not None:
            changes["null"] = self.null.repeat(copies)
        return replace(self, **changes)


def encode_captions(text_encoder: nn.Module, caption_ids: torch.LongTensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(pooled text embedding, penultimate hidden states) of a CLIP-like text encoder, as aMUSEd conditions on
    them (arXiv:2401.01808, Sec. 3)."""
    outputs = text_encoder(caption_ids, output_hidden_states=True, return_dict=True)
    return outputs.text_embeds, outputs.hidden_states[-2]


def mask_ratio_input(model: nn.Module, input_ids: torch.LongTensor,
                     conditions: DenoiserConditions | None = None) -> dict[str, torch.Tensor]:
    """``{"mask_ratio": …}`` for a model that reads the mask ratio — the explicit one of ``conditions`` or the
    fraction of mask ids per row of ``input_ids`` — and ``{}`` for the others."""
    if not uses_mask_ratio(model):
        return {}
    if conditions is not None and conditions.mask_ratio is not None:
        return {"mask_ratio": conditions.mask_ratio}
    return {"mask_ratio": (input_ids == get_mask_token_id(model)).flatten(1).float().mean(1)}


def _rows(value: torch.Tensor | None, device: torch.device | str | None) -> torch.Tensor | None:
    return value if value is None or device is None else value.to(device)


def build_conditions(model: nn.Module, *, prompt_ids: torch.LongTensor | None = None,
                     attention_mask: torch.Tensor | None = None, generation_length: int | None = None,
                     class_labels: torch.LongTensor | None = None, caption_ids: torch.LongTensor | None = None,
                     text_encoder: nn.Module | None = None, null_caption_ids: torch.LongTensor | None = None,
                     drop: torch.BoolTensor | None = None, with_null: bool = True,
                     micro_conds: torch.Tensor | None = None, mask_ratio: torch.Tensor | None = None,
                     device: torch.device | str | None = None) -> DenoiserConditions:
    """The [`DenoiserConditions`] of one batch for ``model``, whatever its kind.

    Args:
        prompt_ids / attention_mask / generation_length: a language model's prompt (a [BOS] for unconditional
            text), its mask and how many tokens follow it; the mask is extended over the generated tokens.
        class_labels: a class-conditional image model's labels.
        caption_ids / text_encoder / null_caption_ids: a text-conditional image model's tokenized captions, the
            encoder that embeds them (see [`encode_captions`]) and the tokenized null caption — one row, expanded
            to the batch, or one per row (negative prompts).
        drop: rows that get the null condition instead of theirs (condition dropout when training for CFG).
        with_null: also build the null condition of classifier-free guidance (image models).
        micro_conds / mask_ratio: inputs shared by every pass (see [`DenoiserConditions`]).
        device: where the condition tensors go.

    Raises ``ValueError`` naming what is missing for the model's kind.
    """
    if not is_image_denoiser(model):
        if prompt_ids is None:
            raise ValueError("a text denoiser is conditioned on `prompt_ids` (the prompt; a [BOS] for unconditional "
                             "text).")
        if generation_length is None:
            raise ValueError("a text denoiser needs `generation_length`: how many tokens follow the prompt.")
        prompt_ids = _rows(prompt_ids, device)
        if attention_mask is not None:
            ones = attention_mask.new_ones(len(prompt_ids), generation_length)
            attention_mask = torch.cat([attention_mask.to(prompt_ids.device), ones.to(prompt_ids.device)], dim=1)
        return DenoiserConditions(len(prompt_ids), generation_length, prompt_ids, attention_mask,
                                  micro_conds=micro_conds, mask_ratio=mask_ratio)
    length = fixed_length(model)
    if class_labels is not None:
        labels = torch.as_tensor(class_labels, device=device).long().view(-1)
        null_label = null_class_label(model)
        if (drop is not None or with_null) and null_label is None:
            raise ValueError(f"{type(model).__name__} has no null class (`num_classes` is not set): it cannot take a "
                             "null condition.")
        if drop is not None:
            labels = labels.masked_fill(drop.to(labels.device), null_label)
        null = DenoiserConditions(len(labels), length, class_labels=torch.full_like(labels, null_label)) \
            if with_null else None
        return DenoiserConditions(len(labels), length, class_labels=labels, null=null).shared(
            micro_conds=micro_conds, mask_ratio=mask_ratio)
    if caption_ids is None:
        raise ValueError("an image denoiser is conditioned on `class_labels` or on `caption_ids` (with a "
                         "`text_encoder`).")
    if text_encoder is None:
        raise ValueError("caption conditions need the `text_encoder` that embeds them.")
    captions = _rows(caption_ids, device)
    if (drop is not None or with_null) and null_caption_ids is None:
        raise ValueError("a null caption condition needs `null_caption_ids` (the tokenized empty caption).")
    null_ids = None if null_caption_ids is None else null_caption_ids.to(captions.device).expand(len(captions), -1)
    if drop is not None:
        captions = torch.where(drop.to(captions.device)[:, None], null_ids, captions)
    pooled, hidden = encode_captions(text_encoder, captions)
    null = None
    if with_null:
        null_pooled, null_hidden = encode_captions(text_encoder, null_ids)
        null = DenoiserConditions(len(captions), length, encoder_hidden_states=null_hidden, pooled_text_emb=null_pooled)
    return DenoiserConditions(len(captions), length, encoder_hidden_states=hidden, pooled_text_emb=pooled,
                              null=null).shared(micro_conds=micro_conds, mask_ratio=mask_ratio)


__all__ = ["DenoiserConditions", "build_conditions", "encode_captions", "mask_ratio_input"]
