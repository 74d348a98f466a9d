"""``generate()`` for masked diffusion language models over the denoiser contract: LLaDA's sampler (Nie et al.,
2025, arXiv 2502.09992, Algorithm 4 with semi-autoregressive blocks, Algorithm 5 low-confidence remasking) and
Dream's (Ye et al., 2025, arXiv 2508.15487), each token for token as its authors' code, plus confidence-threshold
parallel decoding (Fast-dLLM, arXiv 2505.22618) and transformers' ``generate()`` contract."""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from tqdm.auto import tqdm
from transformers.generation.streamers import BaseStreamer
from transformers.utils import ModelOutput, logging

from ..denoiser import get_mask_token_id, guided_denoise, predicts_next_token
from ._contract import largest_divisor_at_most, stop_string_ids
from ._inputs import check_generator, check_prompt
from ._reload import ReloadsGenerationConfig, merge_overrides
from .cache import MaskedDiffusionCache
from .configuration import MaskedDiffusionGenerationConfig
from .dream_sampling import dream_timesteps, dream_transfer_count
from .initial_state import DiMOInitialState, embedding_noise
from .sampling import add_gumbel_noise, filter_logits, num_transfer_tokens, trim_after_eos
from .steps import ProposalMasks, dream_step, llada_step

logger = logging.get_logger(__name__)

LogitsHook = Callable[[int, torch.LongTensor, torch.Tensor], torch.Tensor]
TokensHook = Callable[[int | None, torch.LongTensor, torch.Tensor | None], torch.LongTensor]


@dataclass
class MaskedDiffusionGenerationOutput(ModelOutput):
    """Output of [`MaskedDiffusionGenerationMixin.generate`] with ``return_dict_in_generate=True``.

    Args:
        sequences: prompt followed by the generated tokens, shape (batch, length).
        nfe: number of denoiser forward passes (a classifier-free-guidance pass on the doubled batch counts once;
            with a cache, window passes count as passes too).
        history: with ``output_history=True``, the canvas after every step, each of shape (batch, prompt + L).
        seconds: wall-clock time of the decoding loop.
        tokens_per_second: returned answer tokens (all rows) per second of decoding.
        tokens_per_forward: returned answer tokens per row per denoiser pass.
    """

    sequences: torch.LongTensor | None = None
    nfe: int | None = None
    history: tuple[torch.LongTensor, ...] | None = None
    seconds: float | None = None
    tokens_per_second: float | None = None
    tokens_per_forward: float | None = None


def _as_list(ids: int | list[int] | None) -> list[int]:
    if ids is None:
        return []
    return [int(i) for i in ids] if isinstance(ids, (list, tuple)) else [int(ids)]


class MaskedDiffusionGenerationMixin(ReloadsGenerationConfig):
    """Adds masked-diffusion ``generate()`` to a model that follows the denoiser contract.

    ``diffusion_sampler`` names the family the architecture's authors decode with (``"llada"`` or ``"dream"``);
    ``generation_config.sampler`` overrides it. The class name ends in ``GenerationMixin`` so that transformers'
    ``can_generate()`` recognises it, which gives the model a ``generation_config`` and lets
    ``pipeline("text-generation")`` drive it.
    """

    generation_config_class = MaskedDiffusionGenerationConfig
    diffusion_sampler = "llada"

    def _prepare_diffusion_config(self, generation_config: MaskedDiffusionGenerationConfig | None,
                                  kwargs: dict[str, Any], prompt_length: int = 0) -> MaskedDiffusionGenerationConfig:
        base = generation_config if generation_config is not None else self.generation_config
        tokenizer = kwargs.get("tokenizer")
        passed = set(kwargs) | ({"remasking"} if "alg" in kwargs else set())
        if generation_config is not None:
            passed |= set(generation_config.to_diff_dict())
        if "max_length" in kwargs and "max_new_tokens" not in kwargs:
            kwargs = {**kwargs, "max_new_tokens": None}  # the caller's max_length decides the answer length
        config = merge_overrides(MaskedDiffusionGenerationConfig, base, kwargs, "masked diffusion decoding")
        model_config = self.config
        for name in ("mask_token_id", "pad_token_id", "eos_token_id", "bos_token_id"):
            if getattr(config, name, None) is None and getattr(model_config, name, None) is not None:
                setattr(config, name, getattr(model_config, name))
        if config.mask_token_id is None:
            config.mask_token_id = get_mask_token_id(self)
        if config.stop_strings:  # single-token stop strings (end-of-turn markers) join the EOS ids
            extra = [i for i in stop_string_ids(config.stop_strings, tokenizer) if i not in _as_list(config.eos_token_id)]
            config.eos_token_id = _as_list(config.eos_token_id) + extra
            config.stop_strings = None
        config.sampler = config.sampler or self.diffusion_sampler
        config.remasking = config.resolved_remasking
        if config.max_new_tokens is None:
            if config.max_length is None or config.max_length <= prompt_length:
                raise ValueError(f"`max_length` ({config.max_length}) must exceed the prompt length ({prompt_length});"
                                 " or pass `max_new_tokens`.")
            config.max_new_tokens = config.max_length - prompt_length
        self._adapt_layout(config, passed)
        config._validate_values()
        config.validate_layout()
        config.refuse_unsupported()
        if config.bad_words_ids is not None:
            if any(len(ids) != 1 for ids in config.bad_words_ids):
                raise ValueError("`bad_words_ids` with sequences of more than one token cannot be honoured by masked "
                                 f"diffusion (tokens are not decoded left to right); got {config.bad_words_ids}.")
        return config

    @staticmethod
    def _adapt_layout(config: MaskedDiffusionGenerationConfig, passed: set[str]) -> None:
        """A saved ``block_length`` / ``steps`` the caller did not pass follows a new ``max_new_tokens``: the block
        becomes the largest divisor of the answer no longer than it, the steps are capped at the answer length and
        rounded up to a multiple of the number of blocks."""
        length = config.max_new_tokens
        if "block_length" not in passed and config.block_length is not None and length % config.block_length:
            adapted = largest_divisor_at_most(length, config.block_length)
            logger.info("block_length %d does not divide max_new_tokens %d: using %d", config.block_length, length,
                        adapted)
            config.block_length = adapted
        if "steps" not in passed and config.steps is not None:
            steps = min(config.steps, length)
            steps = -(-steps // config.num_blocks) * config.num_blocks
            if steps != config.steps:
                logger.info("steps %d adapted to %d for max_new_tokens %d", config.steps, steps, length)
                config.steps = steps

    @torch.no_grad()
    def generate(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                 generation_config: MaskedDiffusionGenerationConfig | None = None,
                 streamer: BaseStreamer | None = None, generator: torch.Generator | None = None,
                 generation_logits_hook_func: LogitsHook | None = None,
                 generation_tokens_hook_func: TokensHook | None = None,
                 **kwargs: Any) -> torch.LongTensor | MaskedDiffusionGenerationOutput:
        """Generate ``max_new_tokens`` tokens after each prompt by masked-diffusion decoding.

        Args:
            input_ids: prompts, shape (batch, prompt_length); batches are left-padded (``attention_mask`` 0 on the
                padding). ``None`` starts from a single BOS token.
            attention_mask: 1 for tokens, 0 for padding.
            generation_config: base settings; defaults to ``self.generation_config``.
            streamer: receives the prompt, then each finished block through ``put``; if it has ``put_draft``
                (e.g. ``transformers.TextDiffusionStreamer``) it also receives the current block after every step.
            generator: a ``torch.Generator`` for reproducible sampling (the global one when ``None``, as the
                authors' samplers).
            generation_logits_hook_func / generation_tokens_hook_func: Dream's hooks, ``(step, x, logits)`` →
                logits (called on the aligned logits of every pass) and → x (called before the first pass with
                ``step=None`` and after every pass).
            kwargs: any field of [`MaskedDiffusionGenerationConfig`] or of transformers' ``GenerationConfig``
                (honoured, or refused with a ``ValueError`` naming it); ``stop_strings`` with ``tokenizer`` (what
                ``pipeline(..., stop_sequence=...)`` passes) when each string is a single token.

        Returns:
            The sequences (prompt + answer), or a [`MaskedDiffusionGenerationOutput`] with
            ``return_dict_in_generate=True``.
        """
        device = self.device
        if input_ids is None:
            bos = kwargs.get("bos_token_id", self.generation_config.bos_token_id)
            if bos is None:
                bos = getattr(self.config, "bos_token_id", None)
            if bos is None:
                raise ValueError("`input_ids` is None and no `bos_token_id` is set to start from.")
            input_ids = torch.full((1, 1), bos, dtype=torch.long, device=device)
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            raise ValueError(f"`input_ids` must be a tensor of shape (batch, length), got "
                             f"{tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids)}.")
        check_generator(generator)
        config = self._prepare_diffusion_config(generation_config, kwargs, input_ids.shape[1])
        embeddings = self.get_input_embeddings() if hasattr(self, "get_input_embeddings") else None
        vocab_rows = embeddings.weight.shape[0] if embeddings is not None else None
        check_prompt(input_ids, attention_mask, vocab_rows, config.mask_token_id, config.infill)
        input_ids = input_ids.to(device=device, dtype=torch.long)
        copies = config.num_return_sequences or 1
        if copies > 1:
            input_ids = input_ids.repeat_interleave(copies, dim=0)
            attention_mask = None if attention_mask is None else attention_mask.repeat_interleave(copies, dim=0)
        batch, prompt_length = input_ids.shape
        total = prompt_length + config.max_new_tokens
        max_positions = getattr(self.config, "max_position_embeddings", None)
        if max_positions is not None and total > max_positions:
            raise ValueError(f"prompt length {prompt_length} + max_new_tokens {config.max_new_tokens} = {total} "
                             f"exceeds the model's {max_positions} positions.")
        if streamer is not None and batch != 1:
            raise ValueError(f"A streamer needs batch size 1, got {batch}.")

        x = torch.full((batch, total), config.mask_token_id, dtype=torch.long, device=device)
        x[:, :prompt_length] = input_ids
        if attention_mask is not None:
            attention_mask = attention_mask.to(device)
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones(batch, config.max_new_tokens)], dim=1)
            if bool(attention_mask.all()):
                attention_mask = None
        masks = self._proposal_masks(config, prompt_length)
        initial_state = DiMOInitialState.from_model(self)
        if initial_state is not None and config.resolved_steps == 1:
            return self._generate_one_step(x, prompt_length, attention_mask, config, initial_state, masks, generator,
                                           streamer)
        if streamer is not None:
            streamer.put(input_ids.cpu())
        if generation_tokens_hook_func is not None:
            x = generation_tokens_hook_func(None, x, None)
        started = time.perf_counter()
        x, nfe, history = self._denoise_blocks(x, prompt_length, attention_mask, config, masks, generator, streamer,
                                               generation_logits_hook_func, generation_tokens_hook_func)
        if streamer is not None:
            streamer.end()
        return self._finish(x, prompt_length, config, nfe, history, time.perf_counter() - started)

    def _proposal_masks(self, config: MaskedDiffusionGenerationConfig, prompt_length: int) -> ProposalMasks:
        suppressed = list(config.suppress_tokens or []) + [ids[0] for ids in (config.bad_words_ids or [])]
        vocab_limit = None
        if config.suppress_mask_token:
            suppressed.append(config.mask_token_id)
            vocab_limit = getattr(self.config, "vocab_size", None)
        early_end = prompt_length + config.min_new_tokens if config.min_new_tokens else 0
        return ProposalMasks(suppressed, vocab_limit, _as_list(config.eos_token_id), early_end)

    def _denoise_blocks(self, x: torch.LongTensor, prompt_length: int, attention_mask: torch.Tensor | None,
                        config: MaskedDiffusionGenerationConfig, masks: ProposalMasks,
                        generator: torch.Generator | None, streamer: BaseStreamer | None,
                        logits_hook: LogitsHook | None, tokens_hook: TokensHook | None
                        ) -> tuple[torch.LongTensor, int, list[torch.LongTensor]]:
        """The block loop. Without ``threshold`` / ``factor`` every block takes exactly ``steps / num_blocks`` passes
        (the authors' loops); with one, passes go on until the block has no mask, at most ``block_length`` of them.
        With ``stop_at_eos``, decoding ends as soon as every row holds an EOS with no mask before it."""
        mask_id = config.mask_token_id
        prompt_index = x != mask_id
        block_length, num_blocks = config.resolved_block_length, config.num_blocks
        steps_per_block = config.resolved_steps // num_blocks
        dream_schedule = config.sampler == "dream" or config.remasking == "origin"
        parallel = config.threshold is not None or config.factor is not None
        eos_ids = _as_list(config.eos_token_id)
        model_kwargs = self._decoding_model_kwargs(config)
        cache = MaskedDiffusionCache(config.cache_implementation) if config.cache_implementation else None
        # the hooks read the logits of the whole canvas, as Dream's do; otherwise only the block's are computed
        keep_block_logits = (config.block_logits and logits_hook is None and tokens_hook is None
                             and self._supports_logits_to_keep())
        forward = self._decoding_forward(config, x.device)
        if forward is not None:
            model_kwargs = {**model_kwargs, "forward": forward}
        history: list[torch.LongTensor] = []
        nfe = 0
        progress = tqdm(total=config.resolved_steps, disable=not config.show_progress, desc="denoising")
        for block in range(num_blocks):
            start = prompt_length + block * block_length
            end = start + block_length
            first = 0 if block == 0 and config.infill else start  # infilling: the prompt's masks go with block 0
            counts = num_transfer_tokens(x[:, first:end] == mask_id, steps_per_block)
            timesteps = dream_timesteps(steps_per_block, config.eps, x.device)
            passes = block_length if parallel else steps_per_block
            since_refresh: int | None = None  # passes since the cache last stored the canvas (None: not this block)
            for step in range(passes):
                candidates = x == mask_id
                candidates[:, end:] = False  # positions right of the current block are never committed
                if parallel and not candidates.any():
                    break
                if not parallel and config.skip_idle_steps and (
                        not candidates.any() or self._commits_nothing(candidates, counts, timesteps, step,
                                                                      steps_per_block, config, dream_schedule)):
                    progress.update(1)
                    continue
                refresh = since_refresh is None or (config.cache_refresh_interval is not None
                                                    and since_refresh >= config.cache_refresh_interval)
                needed = self._logits_window(candidates, first, end)
                logits, offset = self._denoise_pass(x, attention_mask, prompt_index, config, cache, refresh, needed,
                                                    keep_block_logits, model_kwargs)
                since_refresh = 1 if refresh else since_refresh + 1
                nfe += 1
                if logits_hook is not None:
                    logits = logits_hook(step, x, logits)
                if dream_schedule:
                    transfer, proposals = dream_step(logits, x, candidates, timesteps, step, steps_per_block, config,
                                                     masks, generator, offset)
                else:
                    count = None if parallel else counts[:, step]  # parallel rules may take more passes than steps
                    transfer, proposals = llada_step(logits, x, candidates, count, config, masks, generator, offset)
                x = torch.where(transfer, proposals, x)
                if tokens_hook is not None:
                    x = tokens_hook(step, x, logits)
                progress.update(1)
                if config.output_history:
                    history.append(x.clone())
                if streamer is not None and hasattr(streamer, "put_draft"):
                    streamer.put_draft(x[:, start:end].cpu())
                if config.stop_at_eos and eos_ids and self._answer_complete(x, prompt_length, eos_ids, mask_id):
                    break
            if streamer is not None:
                streamer.put(x[0, start:end].cpu())
            if config.stop_at_eos and eos_ids and block < num_blocks - 1:
                generated = x[:, prompt_length:end]
                if bool(torch.isin(generated, torch.tensor(eos_ids, device=x.device)).any(dim=1).all()):
                    logger.info("every row produced EOS after block %d of %d: stopping", block + 1, num_blocks)
                    break
        progress.close()
        return x, nfe, history

    def _decoding_forward(self, config: MaskedDiffusionGenerationConfig,
                          device: torch.device) -> Callable[..., Any] | None:
        """The compiled model call when ``compile_config`` is set (transformers' ``CompileConfig``; overridden by
        ``disable_compile``), else ``None`` (the eager model). Only the denoiser pass is compiled: it is where the
        time goes, and with the dual cache its shapes are static (the canvas at a refresh, the block otherwise); the
        sampling rule stays eager, so the tokens are the eager ones up to the compiled kernels' rounding."""
        if config.compile_config is None or config.disable_compile:
            return None
        if config.compile_config.mode == "reduce-overhead" and config.cache_implementation and device.type == "cuda":
            raise ValueError(
                f"`compile_config` with mode='reduce-overhead' (CUDA graphs) cannot be combined with "
                f"`cache_implementation={config.cache_implementation!r}`: a graph replay reuses the memory of the "
                f"keys and values the cache keeps between passes. Pass CompileConfig(mode='default') or "
                f"mode='max-autotune-no-cudagraphs'.")
        logger.info("decoding with the compiled denoiser (torch.compile: %s)", config.compile_config.to_dict())
        return self.get_compiled_call(config.compile_config)

    def _supports_logits_to_keep(self) -> bool:
        """Whether ``forward`` takes transformers' ``logits_to_keep`` (then a pass computes the head on the block)."""
        return "logits_to_keep" in inspect.signature(self.forward).parameters

    def _logits_window(self, candidates: torch.BoolTensor, first: int, end: int) -> tuple[int, int]:
        """The canvas positions whose logits a pass must return: from the first position that may be committed (the
        block's start, or an earlier mask left uncommitted, e.g. by Dream's random ``origin`` reveal) to the block's
        end, starting one position earlier for a model whose logits at *i* predict token *i + 1* (Dream)."""
        earlier = candidates[:, :first].any(dim=0).nonzero()
        start = int(earlier[0]) if len(earlier) else first
        return max(0, start - self._logits_lead()), end

    def _logits_lead(self) -> int:
        """How many positions before a position its logits read: 1 for Dream's head, whose output at *i − 1*
        predicts token *i* (raw, or shifted inside ``forward`` as ``DreamForMaskedLM`` does), else 0."""
        return 1 if predicts_next_token(self) or getattr(self, "aligns_by_shifting", False) else 0

    def _denoise_pass(self, x: torch.LongTensor, attention_mask: torch.Tensor | None, prompt_index: torch.BoolTensor,
                      config: MaskedDiffusionGenerationConfig, cache: MaskedDiffusionCache | None, refresh: bool,
                      needed: tuple[int, int], keep_block_logits: bool, model_kwargs: dict[str, Any]
                      ) -> tuple[torch.Tensor, int]:
        """One denoiser pass; returns aligned logits and the canvas position of their first row.

        Without a cache, or on a refresh (which stores every position's keys and values), the whole canvas is fed;
        otherwise only a window starting at ``needed[0]``: the block for ``dual``, the block and everything right of
        it for ``prefix`` (Fast-dLLM, arXiv 2505.22618, Sec. 3.2). With ``keep_block_logits`` the head runs on the
        ``needed`` positions only (``logits_to_keep``: the same rows up to the GEMM's rounding); otherwise the
        logits cover the canvas, with zeros outside a cached window (positions that pass never commits)."""
        mask_id, canvas = config.mask_token_id, x.shape[1]
        start, end = needed
        kwargs = dict(model_kwargs)
        if cache is not None:
            kwargs["cache"] = cache
        if cache is None or refresh:
            if keep_block_logits:
                kwargs["logits_to_keep"] = torch.arange(start, end, device=x.device)
                return guided_denoise(self, x, attention_mask, prompt_index, config.cfg_scale, mask_id,
                                      **kwargs), start
            return guided_denoise(self, x, attention_mask, prompt_index, config.cfg_scale, mask_id, **kwargs), 0
        stop = canvas if config.cache_implementation == "prefix" else end
        kwargs["cache_position"] = torch.arange(start, stop, device=x.device)
        if keep_block_logits and stop > end:
            kwargs["logits_to_keep"] = torch.arange(0, end - start, device=x.device)
        partial = guided_denoise(self, x[:, start:stop], attention_mask, prompt_index[:, start:stop],
                                 config.cfg_scale, mask_id, **kwargs)
        if keep_block_logits:
            return partial, start
        logits = partial.new_zeros(x.shape[0], canvas, partial.shape[-1])
        logits[:, start:stop] = partial
        return logits, 0

    @staticmethod
    def _answer_complete(x: torch.LongTensor, prompt_length: int, eos_ids: list[int], mask_id: int) -> bool:
        """Every row holds a committed EOS in its answer and no mask before it: what follows becomes padding, so
        no further pass can change the returned tokens (adaptive stopping with ``stop_at_eos``)."""
        answer = x[:, prompt_length:]
        is_eos = torch.isin(answer, torch.tensor(eos_ids, device=x.device))
        if not bool(is_eos.any(dim=1).all()):
            return False
        first_eos = is_eos.int().argmax(dim=1, keepdim=True)
        before = torch.arange(answer.shape[1], device=x.device).unsqueeze(0) < first_eos
        return not bool(((answer == mask_id) & before).any())

    @staticmethod
    def _commits_nothing(candidates: torch.BoolTensor, counts: torch.LongTensor, timesteps: torch.Tensor, step: int,
                         steps: int, config: MaskedDiffusionGenerationConfig, dream_schedule: bool) -> bool:
        """Whether a fixed-schedule pass would commit no token (``skip_idle_steps``)."""
        if config.remasking == "origin":
            return False  # the reveal is random: every pass may commit
        if dream_schedule:
            return dream_transfer_count(candidates, timesteps, step, steps) <= 0
        return int(counts[:, step].sum()) == 0

    def _finish(self, x: torch.LongTensor, prompt_length: int, config: MaskedDiffusionGenerationConfig, nfe: int,
                history: list[torch.LongTensor], seconds: float | None = None
                ) -> torch.LongTensor | MaskedDiffusionGenerationOutput:
        eos_ids = _as_list(config.eos_token_id)
        sequences = x
        if config.stop_at_eos and eos_ids:
            pad = config.pad_token_id if config.pad_token_id is not None else eos_ids[0]
            sequences = trim_after_eos(x, prompt_length, eos_ids, pad)
        if config.return_dict_in_generate:
            answer_tokens = sequences.shape[1] - prompt_length
            return MaskedDiffusionGenerationOutput(
                sequences=sequences, nfe=nfe, history=tuple(history) if config.output_history else None,
                seconds=seconds,
                tokens_per_second=None if not seconds else sequences.shape[0] * answer_tokens / seconds,
                tokens_per_forward=answer_tokens / nfe if nfe else None)
        return sequences

    def _decoding_model_kwargs(self, config: MaskedDiffusionGenerationConfig) -> dict[str, Any]:
        """Extra forward arguments kept for one decoding loop (a model's per-canvas caches); none by default."""
        return {}

    def diffusion_generate(self, inputs: torch.LongTensor | None = None, **kwargs: Any
                           ) -> torch.LongTensor | MaskedDiffusionGenerationOutput:
        """Dream's entry point, kept so Dream's scripts run unchanged: Dream's settings (``alg``, ``alg_temp``,
        ``steps``, ``eps``, ``top_p``, ``top_k``, ``max_new_tokens`` / ``max_length``, the two hooks, …) go to
        [`generate`], which decodes with the model's own sampler family."""
        return self.generate(inputs, **kwargs)

    def _generate_one_step(self, x: torch.LongTensor, prompt_length: int, attention_mask: torch.Tensor | None,
                           config: MaskedDiffusionGenerationConfig, initial_state: DiMOInitialState,
                           masks: ProposalMasks, generator: torch.Generator | None, streamer: BaseStreamer | None
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
        kwargs: dict[str, Any] = {}
        forward = self._decoding_forward(config, x.device)
        if forward is not None:
            kwargs["forward"] = forward
        offset = 0
        if config.block_logits and self._supports_logits_to_keep():  # the head on the answer only
            offset = max(0, prompt_length - self._logits_lead())
            kwargs["logits_to_keep"] = torch.arange(offset, x.shape[1], device=x.device)
        with embedding_noise(self, initial_state.embedding_noise_std, noise_positions, generator,
                             initial_state.embedding_noise_mode):
            logits = guided_denoise(self, x, attention_mask, prompt_index, config.cfg_scale, config.mask_token_id,
                                    **kwargs)
        answer = logits[:, prompt_length - offset:]
        if bool(torch.isnan(answer).any()) or bool(torch.isposinf(answer).any()):
            raise ValueError("The denoiser returned NaN or +inf logits: refusing to turn them into tokens.")
        answer = masks.apply(answer, torch.arange(prompt_length, x.shape[1], device=x.device))
        temperature = config.sampling_temperature
        answer = filter_logits(answer, config.top_k, config.top_p, temperature)
        x = torch.cat([x[:, :prompt_length], torch.argmax(add_gumbel_noise(answer, temperature, generator), dim=-1)],
                      dim=1)
        if streamer is not None:
            streamer.put(x[:, :prompt_length].cpu())
            streamer.put(x[0, prompt_length:].cpu())
            streamer.end()
        return self._finish(x, prompt_length, config, 1, [x.clone()])


__all__ = ["MaskedDiffusionGenerationMixin", "MaskedDiffusionGenerationOutput"]
