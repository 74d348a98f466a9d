"""Settings of masked-diffusion decoding, saved to and reloaded from ``generation_config.json``."""

from __future__ import annotations

from typing import Any

from transformers import GenerationConfig

from ._reload import TOKEN_ID_FIELDS, token_ids_from_model_config

REMASKING_STRATEGIES = ("low_confidence", "random", "margin", "entropy", "origin")


class MaskedDiffusionGenerationConfig(GenerationConfig):
    """A [`GenerationConfig`] for masked-diffusion decoding (LLaDA Algorithm 4/5; Dream's samplers).

    The answer of ``max_new_tokens`` tokens starts fully masked and is revealed over ``steps`` denoiser calls,
    block by block from left to right (semi-autoregressive decoding when ``block_length < max_new_tokens``).

    Args:
        max_new_tokens: answer length ``L`` (default 128).
        steps: denoiser calls for the whole answer; ``None`` = ``max_new_tokens`` (one token per call).
            Must be a multiple of the number of blocks; each block gets ``steps / num_blocks`` calls.
        block_length: tokens per block; ``None`` = ``max_new_tokens`` (a single block). Must divide ``max_new_tokens``.
        do_sample / temperature: sampling of the proposed tokens by Gumbel-max in float64, as LLaDA's reference
            (``temperature`` τ; greedy when ``do_sample`` is false or τ = 0). Passing ``temperature > 0`` without
            ``do_sample`` turns sampling on.
        suppress_tokens: token ids never proposed (e.g. special tokens).
        suppress_mask_token: never propose the mask token, nor the padded embedding rows beyond the model's
            ``vocab_size`` (default). LLaDA's reference sampler does not do this; a committed mask token would leave
            a hole the schedule no longer covers. Set False to reproduce the reference bit for bit.
        top_k / top_p: restrict the proposal distribution before sampling and before computing confidences.
        remasking: which proposed tokens are committed each step —
            ``low_confidence`` (highest probability of the proposed token, LLaDA), ``random`` (uniform scores,
            LLaDA), ``margin`` (top-1 minus top-2 probability), ``entropy`` (lowest entropy), or ``origin``
            (Dream's probabilistic reveal: every masked token of the block is revealed with probability
            ``1 − s/t`` on the time grid ``linspace(1, eps, steps + 1)``).
        alg_temp: when > 0, the committed positions are drawn without replacement from ``softmax(score / alg_temp)``
            instead of taking the top scores (Dream's ``alg_temp``).
        threshold: confidence-threshold parallel decoding — each step commits every masked token of the current
            block whose score is ≥ ``threshold`` (at least the best one), ignoring the fixed schedule; a block ends
            when it has no mask left, so ``nfe`` drops on easy text.
        cfg_scale: unsupervised classifier-free guidance (LLaDA): ``un + (cfg_scale + 1) · (cond − un)``, where
            ``un`` are the logits with the prompt masked. 0 disables it.
        stop_at_eos: once every row has produced an EOS, stop generating further blocks; positions after a row's
            first generated EOS become ``pad_token_id`` and all-padding trailing columns are cut.
        mask_token_id: the mask id; ``None`` = the model config's.
        eps: final time of the ``origin`` schedule (Dream: 1e-3).
        output_history: with ``return_dict_in_generate``, also return the canvas after every step.
        show_progress: show a progress bar over denoising steps.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.steps: int | None = kwargs.pop("steps", None)
        self.block_length: int | None = kwargs.pop("block_length", None)
        self.remasking: str = kwargs.pop("remasking", "low_confidence")
        self.alg_temp: float | None = kwargs.pop("alg_temp", None)
        self.threshold: float | None = kwargs.pop("threshold", None)
        self.cfg_scale: float = kwargs.pop("cfg_scale", 0.0)
        self.stop_at_eos: bool = kwargs.pop("stop_at_eos", True)
        self.suppress_mask_token: bool = kwargs.pop("suppress_mask_token", True)
        self.mask_token_id: int | None = kwargs.pop("mask_token_id", None)
        self.eps: float = kwargs.pop("eps", 1e-3)
        self.output_history: bool = kwargs.pop("output_history", False)
        self.show_progress: bool = kwargs.pop("show_progress", False)
        kwargs.setdefault("max_new_tokens", 128)
        if "do_sample" not in kwargs:
            kwargs["do_sample"] = (kwargs.get("temperature") or 0.0) > 0
        super().__init__(**kwargs)

    def update(self, **kwargs: Any) -> dict[str, Any]:
        """Like [`GenerationConfig.update`], and ``temperature > 0`` without ``do_sample`` turns sampling on."""
        if "do_sample" not in kwargs and (kwargs.get("temperature") or 0.0) > 0:
            kwargs["do_sample"] = True
        return super().update(**kwargs)

    @property
    def sampling_temperature(self) -> float:
        """The Gumbel temperature actually used: 0 unless sampling is on."""
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

    def validate(self, strict: bool = False, user_set_attributes: set[str] | None = None) -> None:
        super().validate(strict=strict, user_set_attributes=user_set_attributes)
        if not hasattr(self, "remasking"):  # called by the parent __init__ before our fields exist
            return
        if self.remasking not in REMASKING_STRATEGIES:
            raise ValueError(f"`remasking` must be one of {REMASKING_STRATEGIES}, got {self.remasking!r}.")
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"`max_new_tokens` must be a positive integer, got {self.max_new_tokens!r}.")
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
            raise ValueError(f"`steps` must be an integer >= 1, got {self.steps!r}.")
        if self.block_length is not None and (not isinstance(self.block_length, int) or self.block_length < 1):
            raise ValueError(f"`block_length` must be an integer >= 1, got {self.block_length!r}.")
        if self.max_new_tokens % self.resolved_block_length:
            raise ValueError(f"`max_new_tokens` ({self.max_new_tokens}) must be divisible by `block_length` "
                             f"({self.resolved_block_length}).")
        if self.resolved_steps % self.num_blocks:
            raise ValueError(f"`steps` ({self.resolved_steps}) must be divisible by the number of blocks "
                             f"({self.num_blocks} = max_new_tokens / block_length).")
        if self.temperature is not None and self.temperature < 0:
            raise ValueError(f"`temperature` must be >= 0, got {self.temperature}.")
        if self.alg_temp is not None and self.alg_temp < 0:
            raise ValueError(f"`alg_temp` must be >= 0 or None, got {self.alg_temp}.")
        if self.cfg_scale < 0:
            raise ValueError(f"`cfg_scale` must be >= 0, got {self.cfg_scale}.")
        if self.threshold is not None and self.remasking in ("random", "origin"):
            raise ValueError(f"`threshold` needs a confidence score; it cannot be combined with "
                             f"remasking={self.remasking!r} (use 'low_confidence', 'margin' or 'entropy').")
        if self.remasking == "origin" and not 0 < self.eps < 1:
            raise ValueError(f"`eps` must lie in (0, 1) for remasking='origin', got {self.eps}.")
        if self.pad_token_id is not None and self.mask_token_id is not None and self.pad_token_id == self.mask_token_id:
            raise ValueError(f"`pad_token_id` must differ from `mask_token_id` (both are {self.mask_token_id}).")

    @classmethod
    def from_model_config(cls, model_config: Any) -> "MaskedDiffusionGenerationConfig":
        """The default settings with the model config's special-token ids (what ``post_init`` of a freshly built
        model uses; saved settings are reloaded from ``generation_config.json`` instead)."""
        return cls(**token_ids_from_model_config(model_config, TOKEN_ID_FIELDS + ("mask_token_id",)))


__all__ = ["MaskedDiffusionGenerationConfig", "REMASKING_STRATEGIES"]
