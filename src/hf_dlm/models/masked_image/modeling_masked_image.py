"""MaskedImageTransformer: a bidirectional transformer over a grid of VQ token ids (MaskGIT, Chang et al. 2022;
aMUSEd / Meissonic for text conditioning), as a diffusers ``ModelMixin``.

The mask token is id ``codebook_size``. Conditioning enters every block through adaptive RMS/LayerNorm
(diffusers' ``AdaLayerNormContinuous``) driven by one vector: the class embedding (MaskGIT style; the extra index
``num_classes`` is the null class used for classifier-free guidance) or the projected pooled text embedding
(aMUSEd / Meissonic style), plus an optional mask-ratio embedding. Text hidden states also enter through
cross-attention. Layout: a grid input (batch, height, width) returns logits (batch, codebook, height, width) like
diffusers' ``UVit2DModel``; a flat input (batch, length) returns (batch, length, codebook), which is the denoiser
contract of ``hf_dlm.denoiser`` (position i predicts token i).
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.normalization import AdaLayerNormContinuous
from torch import nn

from .._loading import StrictDiffusersLoadingMixin


class MaskedImageTransformer(StrictDiffusersLoadingMixin, ModelMixin, ConfigMixin):
    """Bidirectional transformer denoiser for token grids.

    Args:
        codebook_size: VQ codebook entries; logits have this width and the mask token is ``codebook_size``.
        sample_size: side of the token grid (positions are learned for ``sample_size ** 2`` tokens).
        hidden_size / num_layers / num_attention_heads: transformer shape.
        num_classes: > 0 for class-conditional generation (labels ``0 … num_classes − 1``; ``num_classes`` is the
            null label); 0 for text conditioning or none.
        pooled_projection_dim: width of a pooled text embedding (``text_embeds`` of a CLIP text encoder), or None.
        cross_attention_dim: width of text hidden states to cross-attend to, or None.
        use_mask_ratio: condition on the fraction of masked tokens (a timestep-like input), MaskGIT-style models
            usually do not.
        dimo_initial_state: for a one-step generator distilled with Di[M]O, the settings of its initial state
            (``hf_dlm.generation.initial_state.DiMOInitialState.to_dict()``); None for a multi-step denoiser.

    ``from_pretrained`` refuses a ``config.json`` lacking one of ``required_fields`` and a checkpoint whose weights
    do not cover the architecture (``strict=False`` loads a partial one on purpose); see ``hf_dlm.models._loading``.
    """

    _supports_gradient_checkpointing = True
    required_fields = ("codebook_size", "sample_size", "hidden_size", "num_layers", "num_attention_heads",
                       "num_classes", "pooled_projection_dim", "cross_attention_dim", "use_mask_ratio")
    predicts_next_token = False
    denoiser_kind = "image"  # a grid of VQ tokens: hf_dlm.denoiser calls it in grid layout

    @register_to_config
    def __init__(self, codebook_size: int = 1024, sample_size: int = 16, hidden_size: int = 256, num_layers: int = 4,
                 num_attention_heads: int = 4, num_classes: int = 0, pooled_projection_dim: int | None = None,
                 cross_attention_dim: int | None = None, use_mask_ratio: bool = False, dropout: float = 0.0,
                 dimo_initial_state: dict | None = None) -> None:
        super().__init__()
        if hidden_size % num_attention_heads:
            raise ValueError(f"`hidden_size` ({hidden_size}) must be a multiple of `num_attention_heads` "
                             f"({num_attention_heads}).")
        if codebook_size < 2 or sample_size < 1 or num_classes < 0:
            raise ValueError(f"bad sizes: codebook_size={codebook_size}, sample_size={sample_size}, "
                             f"num_classes={num_classes}.")
        self.token_embedding = nn.Embedding(codebook_size + 1, hidden_size)
        self.position_embedding = nn.Parameter(torch.randn(1, sample_size * sample_size, hidden_size) * 0.02)
        self.class_embedding = nn.Embedding(num_classes + 1, hidden_size) if num_classes > 0 else None
        self.pooled_projection = nn.Linear(pooled_projection_dim, hidden_size) if pooled_projection_dim else None
        if use_mask_ratio:
            self.ratio_proj = Timesteps(hidden_size, flip_sin_to_cos=True, downscale_freq_shift=0)
            self.ratio_embedding = TimestepEmbedding(hidden_size, hidden_size)
        self.blocks = nn.ModuleList(
            BasicTransformerBlock(hidden_size, num_attention_heads, hidden_size // num_attention_heads,
                                  dropout=dropout, cross_attention_dim=cross_attention_dim, activation_fn="gelu",
                                  norm_type="ada_norm_continuous", norm_elementwise_affine=False,
                                  ada_norm_continous_conditioning_embedding_dim=hidden_size, ada_norm_bias=None)
            for _ in range(num_layers))
        self.norm_out = AdaLayerNormContinuous(hidden_size, hidden_size, elementwise_affine=False, eps=1e-6)
        self.proj_out = nn.Linear(hidden_size, codebook_size)
        self.gradient_checkpointing = False

    @property
    def mask_token_id(self) -> int:
        return self.config.codebook_size

    def get_input_embeddings(self) -> nn.Embedding:
        return self.token_embedding

    def get_output_embeddings(self) -> nn.Linear:
        return self.proj_out

    def _conditioning(self, batch: int, device: torch.device, class_labels, pooled_text_emb, mask_ratio):
        cond = torch.zeros(batch, self.config.hidden_size, device=device, dtype=self.token_embedding.weight.dtype)
        if self.class_embedding is not None:
            if class_labels is None:
                raise ValueError("this transformer is class-conditional: pass `class_labels`.")
            labels = torch.as_tensor(class_labels, device=device).long().view(-1)
            if ((labels < 0) | (labels > self.config.num_classes)).any():
                raise ValueError(f"`class_labels` must lie in [0, {self.config.num_classes - 1}] (or "
                                 f"{self.config.num_classes} for the null class), got {labels.tolist()}.")
            cond = cond + self.class_embedding(labels)
        if self.pooled_projection is not None:
            if pooled_text_emb is None:
                raise ValueError("this transformer is text-conditional: pass `pooled_text_emb`.")
            cond = cond + self.pooled_projection(pooled_text_emb.to(cond.dtype))
        if self.config.use_mask_ratio:
            if mask_ratio is None:
                raise ValueError("this transformer conditions on the mask ratio: pass `mask_ratio`.")
            ratio = torch.as_tensor(mask_ratio, device=device, dtype=torch.float32).expand(batch) * 1000
            cond = cond + self.ratio_embedding(self.ratio_proj(ratio).to(cond.dtype))
        return cond

    def forward(self, input_ids: torch.LongTensor, class_labels: torch.LongTensor | None = None,
                encoder_hidden_states: torch.Tensor | None = None, pooled_text_emb: torch.Tensor | None = None,
                mask_ratio: torch.Tensor | float | None = None, micro_conds: torch.Tensor | None = None,
                cross_attention_kwargs: dict | None = None, attention_mask: torch.Tensor | None = None,
                return_dict: bool = True) -> Transformer2DModelOutput | tuple:
        """Logits over the codebook for every position (see the module docstring for the layouts).

        ``micro_conds`` and ``attention_mask`` are accepted for call compatibility with ``UVit2DModel`` and the
        text denoiser contract, and ignored (images have no padding)."""
        grid = input_ids.dim() == 3
        batch = input_ids.shape[0]
        tokens = input_ids.reshape(batch, -1)
        if tokens.shape[1] > self.position_embedding.shape[1]:
            raise ValueError(f"{tokens.shape[1]} tokens exceed the {self.position_embedding.shape[1]} positions of "
                             f"this transformer (sample_size {self.config.sample_size}).")
        hidden = self.token_embedding(tokens) + self.position_embedding[:, : tokens.shape[1]]
        cond = self._conditioning(batch, tokens.device, class_labels, pooled_text_emb, mask_ratio)
        added = {"pooled_text_emb": cond}
        for block in self.blocks:
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                hidden = self._gradient_checkpointing_func(block, hidden, None, encoder_hidden_states, None,
                                                           None, cross_attention_kwargs, None, added)
            else:
                hidden = block(hidden, encoder_hidden_states=encoder_hidden_states,
                               cross_attention_kwargs=cross_attention_kwargs, added_cond_kwargs=added)
        logits = self.proj_out(self.norm_out(hidden, cond))
        if grid:
            height, width = input_ids.shape[1:]
            logits = logits.permute(0, 2, 1).reshape(batch, -1, height, width)
        if not return_dict:
            return (logits,)
        return Transformer2DModelOutput(sample=logits)


__all__ = ["MaskedImageTransformer"]
