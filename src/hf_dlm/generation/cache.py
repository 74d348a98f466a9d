"""A key/value cache for masked-diffusion decoding: Fast-dLLM's block-wise approximate cache (Wu et al., 2025,
arXiv 2505.22618, Sec. 3.2), as a transformers ``Cache`` that our attention layers consume.

A bidirectional denoiser has no exact cache: every position's keys and values depend on the whole canvas, which
changes at every step. Fast-dLLM observes that they change little within a block of semi-autoregressive decoding and
reuses them:

- at a **refresh** (the first pass of every block, and optionally every ``cache_refresh_interval`` passes) the whole
  canvas is encoded and every layer's K/V of every position is stored;
- between refreshes only a **window** of the canvas is fed: the current block and everything right of it for the
  *prefix* cache (``cache_implementation="prefix"``: the K/V left of the block are reused), the current block alone
  for the *dual* cache (``"dual"``: the K/V left and right of the block are reused). The window's fresh K/V are
  written over the stored ones in place (Fast-dLLM's ``replace_position``), so attention always sees a full canvas
  of keys and values, and nothing is allocated per pass.

The window is given to the model HF-style: ``input_ids`` hold only the window's tokens and ``cache_position`` their
canvas indices; ``attention_mask`` and the positions cover the whole canvas (left padding stays correct).
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

CACHE_IMPLEMENTATIONS = ("prefix", "dual")


class MaskedDiffusionCacheLayer(CacheLayerMixin):
    """One layer's keys and values of the whole canvas, shape (batch, kv_heads, canvas, head_dim)."""

    is_sliding = False

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor,
               window: torch.LongTensor | None = None, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the canvas' K/V (``window`` None: a refresh), or write the window's fresh K/V (canvas indices
        ``window``) over the stored ones and return the full canvas of K/V."""
        if window is None:
            self.lazy_initialization(key_states, value_states)
            self.keys, self.values = key_states, value_states
            return key_states, value_states
        if not self.is_initialized:
            raise RuntimeError("The masked-diffusion cache was fed a window before any refresh pass stored the canvas.")
        if not torch.compiler.is_compiling() and key_states.shape[0] != self.keys.shape[0]:
            raise ValueError(f"the cache holds a batch of {self.keys.shape[0]} rows, this pass feeds "
                             f"{key_states.shape[0]} (classifier-free guidance must be on or off for both).")
        self.keys.index_copy_(2, window, key_states)
        self.values.index_copy_(2, window, value_states)
        return self.keys, self.values

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.get_seq_length(), 0

    def get_seq_length(self) -> int:
        return 0 if self.keys is None else self.keys.shape[-2]

    def get_max_length(self) -> int:
        return self.get_seq_length()


class MaskedDiffusionCache(Cache):
    """Fast-dLLM's prefix / dual cache for one ``generate()`` call (see the module docstring).

    The trunk sets the window of each pass from its ``cache_position`` ([`set_window`]); attention layers call
    ``update(k, v, layer_idx)`` as with any transformers cache. ``mode`` only records what the caller feeds
    (``"prefix"``: the block and the suffix; ``"dual"``: the block), so that a test or a log can tell.
    """

    def __init__(self, mode: str = "dual") -> None:
        if mode not in CACHE_IMPLEMENTATIONS:
            raise ValueError(f"`cache_implementation` must be one of {CACHE_IMPLEMENTATIONS}, got {mode!r}.")
        super().__init__(layer_class_to_replicate=MaskedDiffusionCacheLayer)
        self.mode = mode
        self.window: torch.LongTensor | None = None

    def set_window(self, cache_position: torch.LongTensor | None, input_length: int) -> None:
        """The canvas positions this pass feeds: ``None`` (the whole canvas: a refresh) or the ``cache_position``
        indices of the ``input_length`` fed tokens (checked to be contiguous and inside the cached canvas, except
        under ``torch.compile``, where the check would break the graph)."""
        if cache_position is None:
            if self.get_seq_length() not in (0, input_length):
                raise ValueError(f"A refresh pass must feed the whole canvas of {self.get_seq_length()} positions, "
                                 f"got {input_length} without `cache_position`.")
            self.window = None
            return
        if not torch.compiler.is_compiling():
            canvas = self.get_seq_length()
            start = int(cache_position[0]) if cache_position.numel() else 0
            expected = torch.arange(start, start + input_length, device=cache_position.device)
            if cache_position.shape != expected.shape or not bool((cache_position == expected).all()):
                raise ValueError("`cache_position` must be the contiguous canvas indices of the fed tokens, "
                                 f"got {cache_position.tolist()} for {input_length} tokens.")
            if canvas == 0:
                raise RuntimeError("The masked-diffusion cache was fed a window before any refresh pass stored "
                                   "the canvas.")
            if start + input_length > canvas:
                raise ValueError(f"window [{start}, {start + input_length}) lies outside the cached canvas of "
                                 f"{canvas} positions.")
        self.window = cache_position

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args,
               **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        while len(self.layers) <= layer_idx:
            self.layers.append(self.layer_class_to_replicate())
        return self.layers[layer_idx].update(key_states, value_states, self.window)

    def get_mask_sizes(self, query_length: int, layer_idx: int = 0) -> tuple[int, int]:
        """Keys span the whole canvas (length, offset 0) whatever the window."""
        length = self.get_seq_length(layer_idx)
        return (length if self.window is not None else query_length), 0

    def get_query_offset(self, layer_idx: int = 0) -> int:
        """0: bidirectional masks read only the key index (padding), never the query's."""
        return 0


__all__ = ["CACHE_IMPLEMENTATIONS", "MaskedDiffusionCache", "MaskedDiffusionCacheLayer"]
