"""Settings of masked-diffusion decoding, saved to and reloaded from ``generation_config.json``."""

from __future__ import annotations

import math
from typing import Any

from transformers import GenerationConfig
from transformers.generation.configuration_utils import CompileConfig

from ._contract import refuse_unsupported_fields
from ._reload import TOKEN_ID_FIELDS, token_ids_from_model_config
from .cache import CACHE_IMPLEMENTATIONS
from .dream_sampling import DREAM_ALGORITHMS

REMASKING_STRATEGIES = ("low_confidence", "random", "margin", "entropy", "origin")
SAMPLERS = ("llada", "dream")
FAMILY_DEFAULT_REMASKING = {"llada": "low_confidence", "dream": "origin"}
DEFAULT_MAX_NEW_TOKENS = 128


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class MaskedDiffusionGenerationConfig(GenerationConfig):
    """A [`GenerationConfig`] for masked-diffusion decoding: LLaDA's sampler (Nie et al., 2025, arXiv 2502.09992,
    Algorithms 4–5) and Dream's (Ye et al., 2025, arXiv 2508.15487), token for token by default.

    The answer of ``max_new_tokens`` tokens starts fully masked and is revealed over ``steps`` denoiser calls,
    block by block from left to right (semi-autoregressive decoding when ``block_length < max_new_tokens``).

    Args:
        sampler: the family whose schedule is used — ``"llada"`` (LLaDA's ``generate.py``: every block's masks are
            split evenly over its steps, proposals by float64 Gumbel-max on the raw logits, confidence from the
            untempered softmax) or ``"dream"`` (Dream's ``_sample``: the count ``⌊M·(1 − s/t)⌋`` recomputed every
            step from the current masks on ``linspace(1, eps, steps + 1)``, proposals and confidences from the
            tempered, nucleus- then top-k-filtered distribution). ``None`` = the model's own family (Dream
            checkpoints decode with Dream's, LLaDA's with LLaDA's).
        max_new_tokens: answer length ``L`` (default 128). ``max_length`` (prompt + answer) is honoured when
            ``max_new_tokens`` is not given.
        steps: denoiser calls for the whole answer; ``None`` = ``max_new_tokens`` (one token per call).
            Must be a multiple of the number of blocks; each block gets ``steps / num_blocks`` calls.
        block_length: tokens per block; ``None`` = ``max_new_tokens`` (a single block, Dream's only layout). Must
            divide ``max_new_tokens``; a saved value the caller did not pass adapts to a new ``max_new_tokens``.
        do_sample / temperature: sampling of the proposed tokens (greedy when ``do_sample`` is false or τ = 0).
            Passing ``temperature > 0`` without ``do_sample`` turns sampling on.
        top_k / top_p: restrict the proposals to the ``top_k`` most likely tokens / the nucleus of mass ``top_p``
            of the *tempered* distribution (Dream's and transformers' order). Dream computes confidences from the
            filtered distribution, LLaDA's family from the filtered raw logits.
        remasking: which proposed tokens are committed each step — ``low_confidence`` (highest probability of the
            proposed token; Dream's ``maskgit_plus``), ``random`` (uniform scores, LLaDA family only), ``margin``
            (top-1 minus top-2 probability; Dream's ``topk_margin``), ``entropy`` (lowest entropy) or ``origin``
            (Dream's probabilistic reveal: every masked token is revealed with probability ``1 − s/t``). ``None`` =
            the family's default (LLaDA ``low_confidence``, Dream ``origin``). Dream's name ``alg`` is accepted.
        alg_temp: when > 0, the committed positions are drawn without replacement from ``softmax(score / alg_temp)``
            instead of taking the top scores (Dream's ``alg_temp``).
        threshold: confidence-threshold parallel decoding (Fast-dLLM, arXiv 2505.22618) — each pass commits every
            masked token of the current block whose score is ≥ ``threshold`` and at least the best one; a block ends
            when it has no mask left or after ``block_length`` passes, so decoding always ends.
        factor: Fast-dLLM's factor-based parallel decoding (arXiv 2505.22618, Sec. 3.3; its
            ``get_transfer_index_dynamic``): with the block's masked confidences sorted c₁ ≥ c₂ ≥ …, commit the
            longest prefix whose every cₙ (n ≥ 2) is ≥ 1 − factor / (n + 1) — at least one token; like the authors'
            code, when only the last one fails it is committed too. Needs ``remasking="low_confidence"``; exclusive
            with ``threshold``; blocks end as with ``threshold``.
        cache_implementation: Fast-dLLM's approximate key/value cache (arXiv 2505.22618, Sec. 3.2;
            [`MaskedDiffusionCache`]): ``None`` (default, the authors' LLaDA and Dream: every pass encodes the whole
            canvas), ``"prefix"`` (one full pass per block stores every position's K/V; the other passes feed the
            block and the suffix and reuse the K/V left of the block) or ``"dual"`` (the other passes feed the block
            alone and reuse the K/V on both sides). The cached K/V are those of the canvas at the last refresh, so
            tokens can differ from uncached decoding; ``benchmarks/fast_decoding.py`` reports how much.
        cache_refresh_interval: with a cache, also re-encode the whole canvas every this many passes inside a
            block (``None``: only at block starts, Fast-dLLM's setting; 1: every pass, identical to no cache).
        compile_config: transformers' ``CompileConfig``: when set (and ``disable_compile`` is not), every denoiser
            pass runs through ``torch.compile`` (``PreTrainedModel.get_compiled_call``); the sampling rule stays
            eager. Shapes are static with the dual cache (the canvas at a refresh, the block otherwise), so it
            compiles two graphs. Not saved with the config (as in transformers). ``None`` (default): eager.
        cfg_scale: unsupervised classifier-free guidance (LLaDA): ``un + (cfg_scale + 1) · (cond − un)``, where
            ``un`` are the logits with the prompt masked. 0 disables it.
        min_new_tokens: EOS ids are never proposed in the first ``min_new_tokens`` answer positions.
        num_return_sequences: samples per prompt (each prompt repeated, as Dream's ``diffusion_generate``).
        mask_token_id: the mask id; ``None`` = the model config's.
        eps: final time of Dream's grid ``linspace(1, eps, steps + 1)`` (Dream: 1e-3).
        output_history: with ``return_dict_in_generate``, also return the canvas after every step.
        show_progress: show a progress bar over denoising steps.
        infill: a prompt may hold the mask id; those positions are decoded with the first block (counted in its
            schedule). Without it a prompt holding the mask id is refused.

    Improvements over the authors' samplers, each a switch (the defaults reproduce the authors' code, except
    ``stop_at_eos``, which never changes a token up to the first EOS):
        stop_at_eos (default True): once every row has produced an EOS, skip the remaining blocks, and stop within a
            block as soon as every row holds an EOS with no mask before it (fewer passes than the authors' loops, the
            same returned tokens); positions after a row's first generated EOS become ``pad_token_id`` and
            all-padding trailing columns are cut.
        suppress_mask_token (default False): never propose the mask token, nor the padded embedding rows beyond
            the model's ``vocab_size``. The authors' samplers may commit a proposed mask id, which leaves a hole
            the schedule no longer covers (the answer keeps a mask token).
        skip_idle_steps (default False): skip the forward pass of a step that commits nothing (a block with fewer
            masks than steps, or a block already full): fewer passes, the same tokens at temperature 0, other
            random draws (so other samples for a seed) above it.
        block_noise (default False): at temperature > 0 in the LLaDA family, draw the float64 Gumbel noise only for
            the positions that can be committed instead of LLaDA's whole (batch, length, vocab) canvas — far less
            time and memory at large vocabularies, samples from the same distribution but not LLaDA's for a seed.
        block_logits (default True): the output layer projects only the positions a pass can commit (the block;
            transformers' ``logits_to_keep``) instead of the whole canvas, as the authors' loops do. The logits are
            those rows of the whole canvas's up to the GEMM's rounding — the BLAS picks its kernel by the number of
            rows, so the last bit can differ — so tokens can differ only where two scores tie to that bit. False:
            the whole canvas's logits, bit for bit the authors'. Dream's hooks always get the whole canvas.
    """

    def __init__(self, **kwargs: Any) -> None:
        alg = kwargs.pop("alg", None)
        self.sampler: str | None = kwargs.pop("sampler", None)
        self.steps: int | None = kwargs.pop("steps", None)
        self.block_length: int | None = kwargs.pop("block_length", None)
        self.remasking: str | None = kwargs.pop("remasking", None)
        self.alg_temp: float | None = kwargs.pop("alg_temp", None)
        self.threshold: float | None = kwargs.pop("threshold", None)
        self.factor: float | None = kwargs.pop("factor", None)
        self.cache_refresh_interval: int | None = kwargs.pop("cache_refresh_interval", None)
        self.cfg_scale: float = kwargs.pop("cfg_scale", 0.0)
        self.stop_at_eos: bool = kwargs.pop("stop_at_eos", True)
        self.suppress_mask_token: bool = kwargs.pop("suppress_mask_token", False)
        self.skip_idle_steps: bool = kwargs.pop("skip_idle_steps", False)
        self.block_noise: bool = kwargs.pop("block_noise", False)
        self.block_logits: bool = kwargs.pop("block_logits", True)
        self.mask_token_id: int | None = kwargs.pop("mask_token_id", None)
        self.eps: float = kwargs.pop("eps", 1e-3)
        self.output_history: bool = kwargs.pop("output_history", False)
        self.show_progress: bool = kwargs.pop("show_progress", False)
        self.infill: bool = kwargs.pop("infill", False)
        if alg is not None:
            self._set_alg(alg)
        if kwargs.get("max_new_tokens") is None and kwargs.get("max_length") is None:
            kwargs["max_new_tokens"] = DEFAULT_MAX_NEW_TOKENS
        if "do_sample" not in kwargs:
            kwargs["do_sample"] = _is_number(kwargs.get("temperature")) and kwargs["temperature"] > 0
        super().__init__(**kwargs)

    def _set_alg(self, alg: str) -> None:
        """Dream's ``alg`` name for ``remasking``."""
        if alg not in DREAM_ALGORITHMS:
            raise ValueError(f"`alg` must be one of {sorted(DREAM_ALGORITHMS)} (Dream's names), got {alg!r}.")
        self.remasking = DREAM_ALGORITHMS[alg]

    def update(self, **kwargs: Any) -> dict[str, Any]:
        """Like [`GenerationConfig.update`]; ``temperature > 0`` without ``do_sample`` turns sampling on and Dream's
        ``alg`` sets ``remasking``."""
        if "alg" in kwargs:
            kwargs = dict(kwargs)
            alg = kwargs.pop("alg")
            if "remasking" in kwargs and DREAM_ALGORITHMS.get(alg) != kwargs["remasking"]:
                raise ValueError(f"`alg={alg!r}` and `remasking={kwargs['remasking']!r}` disagree; pass one of them.")
            self._set_alg(alg)
        if "do_sample" not in kwargs and _is_number(kwargs.get("temperature")) and kwargs["temperature"] > 0:
            kwargs["do_sample"] = True
        return super().update(**kwargs)

    @property
    def sampling_temperature(self) -> float:
        """The temperature actually used: 0 unless sampling is on."""
        return float(self.temperature or 0.0) if self.do_sample else 0.0

    @property
    def resolved_block_length(self) -> int:
        return self.block_length if self.block_length is not None else self.max_new_tokens

    @property
    def num_blocks(self) -> int:
        return self.max_new_tokens // self.resolved_block_length

    @property
    def resolved_steps(self) -> int:
        return self.steps if self.steps is not None else self.max_new_tokens

    @property
    def resolved_remasking(self) -> str:
        return self.remasking or FAMILY_DEFAULT_REMASKING[self.sampler or "llada"]

    def validate(self, strict: bool = False, user_set_attributes: set[str] | None = None) -> None:
        # temperature / top-k / top-p are read at temperature 0 too (filters shape the confidences), so
        # transformers' "only used in sample-based generation modes" warnings do not apply to them
        if user_set_attributes is None:
            user_set_attributes = {key for key in self.__dict__ if not key.startswith("_")}
        if not self.do_sample:  # transformers stays quiet about a flag when only `do_sample` counts as set
            user_set_attributes = (user_set_attributes - {"temperature", "top_k", "top_p"}) | {"do_sample"}
        if hasattr(self, "num_return_sequences"):  # our checks first: they name the field for any bad type
            self._validate_values()
        cache = getattr(self, "cache_implementation", None)
        if cache in CACHE_IMPLEMENTATIONS:  # our names, unknown to transformers' list of cache classes
            self.cache_implementation = None
        try:
            super().validate(strict=strict, user_set_attributes=user_set_attributes)
        finally:
            self.cache_implementation = cache

    def _validate_values(self) -> None:
        if self.sampler is not None and self.sampler not in SAMPLERS:
            raise ValueError(f"`sampler` must be one of {SAMPLERS} or None, got {self.sampler!r}.")
        if self.remasking is not None and self.remasking not in REMASKING_STRATEGIES:
            raise ValueError(f"`remasking` must be one of {REMASKING_STRATEGIES}, got {self.remasking!r}.")
        if self.sampler == "dream" and self.remasking == "random":
            raise ValueError("`remasking='random'` is LLaDA's rule; Dream's sampler has origin, maskgit_plus "
                             "(low_confidence), topk_margin (margin) and entropy. Pass sampler='llada' to use it.")
        if self.max_new_tokens is not None and (not _is_int(self.max_new_tokens) or self.max_new_tokens < 1):
            raise ValueError(f"`max_new_tokens` must be a positive integer, got {self.max_new_tokens!r}.")
        if self.steps is not None and (not _is_int(self.steps) or self.steps < 1):
            raise ValueError(f"`steps` must be an integer >= 1, got {self.steps!r}.")
        if self.block_length is not None and (not _is_int(self.block_length) or self.block_length < 1):
            raise ValueError(f"`block_length` must be an integer >= 1, got {self.block_length!r}.")
        if self.temperature is not None and not (_is_number(self.temperature)
                                                 and math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError(f"`temperature` must be a finite number >= 0, got {self.temperature!r}.")
        if self.top_k is not None and (not _is_int(self.top_k) or self.top_k < 1):
            raise ValueError(f"`top_k` must be an integer >= 1 or None, got {self.top_k!r}.")
        if self.top_p is not None and not (_is_number(self.top_p) and 0 < self.top_p <= 1):
            raise ValueError(f"`top_p` must lie in (0, 1] or be None, got {self.top_p!r}.")
        if self.alg_temp is not None and not (_is_number(self.alg_temp) and math.isfinite(self.alg_temp)
                                              and self.alg_temp >= 0):
            raise ValueError(f"`alg_temp` must be a finite number >= 0 or None, got {self.alg_temp}.")
        if not (_is_number(self.cfg_scale) and math.isfinite(self.cfg_scale) and self.cfg_scale >= 0):
            raise ValueError(f"`cfg_scale` must be a finite number >= 0, got {self.cfg_scale!r}.")
        if self.threshold is not None:
            if not (_is_number(self.threshold) and math.isfinite(self.threshold)):
                raise ValueError(f"`threshold` must be a finite number or None, got {self.threshold!r}.")
            if self.remasking in ("random", "origin"):
                raise ValueError(f"`threshold` needs a confidence score; it cannot be combined with "
                                 f"remasking={self.remasking!r} (use 'low_confidence', 'margin' or 'entropy').")
        if self.factor is not None:
            if not (_is_number(self.factor) and math.isfinite(self.factor) and self.factor > 0):
                raise ValueError(f"`factor` must be a finite number > 0 or None, got {self.factor!r}.")
            if self.threshold is not None:
                raise ValueError(f"`factor` ({self.factor}) and `threshold` ({self.threshold}) are two parallel "
                                 "decoding rules; pass one of them.")
            if self.remasking not in (None, "low_confidence"):
                raise ValueError(f"`factor` compares probabilities with 1 − factor/(n + 1); it needs "
                                 f"remasking='low_confidence', got {self.remasking!r}.")
        if self.cache_implementation is not None and self.cache_implementation not in CACHE_IMPLEMENTATIONS:
            raise ValueError(f"`cache_implementation` must be one of {CACHE_IMPLEMENTATIONS} or None for masked "
                             f"diffusion decoding, got {self.cache_implementation!r}.")
        if self.cache_implementation is not None and self.use_cache is False:
            raise ValueError(f"`cache_implementation={self.cache_implementation!r}` asks for a cache and "
                             "`use_cache=False` forbids one; pass one of them.")
        if self.cache_refresh_interval is not None and (not _is_int(self.cache_refresh_interval)
                                                        or self.cache_refresh_interval < 1):
            raise ValueError(f"`cache_refresh_interval` must be an integer >= 1 or None, got "
                             f"{self.cache_refresh_interval!r}.")
        if self.cache_config not in (None, {}):
            raise ValueError(f"`cache_config={self.cache_config!r}`: the masked-diffusion cache has no settings "
                             "besides `cache_implementation` and `cache_refresh_interval`.")
        if self.compile_config is not None and not isinstance(self.compile_config, CompileConfig):
            raise ValueError(f"`compile_config` must be a transformers `CompileConfig` or None, got "
                             f"{type(self.compile_config).__name__}.")
        if not (_is_number(self.eps) and 0 < self.eps < 1):
            raise ValueError(f"`eps` must lie in (0, 1), got {self.eps}.")
        for name in ("stop_at_eos", "suppress_mask_token", "skip_idle_steps", "block_noise", "block_logits",
                     "output_history", "show_progress", "infill"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"`{name}` must be True or False, got {getattr(self, name)!r}.")
        for name in ("do_sample", "return_dict_in_generate"):
            if getattr(self, name, None) not in (None, True, False):
                raise ValueError(f"`{name}` must be True or False, got {getattr(self, name)!r}.")
        if self.num_return_sequences is not None and (not _is_int(self.num_return_sequences)
                                                      or self.num_return_sequences < 1):
            raise ValueError(f"`num_return_sequences` must be an integer >= 1, got {self.num_return_sequences!r}.")
        if self.min_new_tokens is not None and (not _is_int(self.min_new_tokens) or self.min_new_tokens < 0):
            raise ValueError(f"`min_new_tokens` must be an integer >= 0, got {self.min_new_tokens!r}.")
        if self.pad_token_id is not None and self.mask_token_id is not None and self.pad_token_id == self.mask_token_id:
            raise ValueError(f"`pad_token_id` must differ from `mask_token_id` (both are {self.mask_token_id}).")

    def validate_layout(self) -> None:
        """Checks that need the final ``max_new_tokens``: blocks divide the answer, steps divide into blocks."""
        if self.max_new_tokens % self.resolved_block_length:
            raise ValueError(f"`max_new_tokens` ({self.max_new_tokens}) must be divisible by `block_length` "
                             f"({self.resolved_block_length}).")
        if self.resolved_steps % self.num_blocks:
            raise ValueError(f"`steps` ({self.resolved_steps}) must be divisible by the number of blocks "
                             f"({self.num_blocks} = max_new_tokens / block_length).")

    def refuse_unsupported(self) -> None:
        """``ValueError`` naming every transformers setting this sampler does not honour (``num_beams`` …)."""
        refuse_unsupported_fields(self, OWN_FIELDS)

    @classmethod
    def from_model_config(cls, model_config: Any) -> "MaskedDiffusionGenerationConfig":
        """The default settings with the model config's special-token ids (what ``post_init`` of a freshly built
        model uses; saved settings are reloaded from ``generation_config.json`` instead)."""
        return cls(**token_ids_from_model_config(model_config, TOKEN_ID_FIELDS + ("mask_token_id",)))


OWN_FIELDS = frozenset({"sampler", "steps", "block_length", "remasking", "alg_temp", "threshold", "factor",
                        "cache_implementation", "cache_refresh_interval", "cache_config", "cfg_scale",
                        "stop_at_eos", "suppress_mask_token", "skip_idle_steps", "block_noise", "block_logits",
                        "mask_token_id", "eps", "output_history", "show_progress", "infill", "compile_config"})

__all__ = ["MaskedDiffusionGenerationConfig", "REMASKING_STRATEGIES", "SAMPLERS"]
