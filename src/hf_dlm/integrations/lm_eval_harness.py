"""The lm-evaluation-harness model ``hf-dlm``: any hf-dlm text artifact, scored as a masked diffusion model.

The harness's plain ``hf`` backend scores every model as a causal LM: on a bidirectional denoiser that is garbage,
reported without a warning. This backend scores likelihoods the way the diffusion-LM papers do:

* ``loglikelihood``: the Monte-Carlo ELBO of log p(continuation | context) of LLaDA (Nie et al., 2025,
  arXiv:2502.09992, eq. 6 and Appendix B.6 — :func:`hf_dlm.evaluation.elbo_log_likelihood`): ``mc_num`` samples,
  ``batch_size`` per forward pass with stratified mask counts, optional unsupervised CFG (``cfg``). ``is_greedy``
  unmasks the continuation greedily, one token per pass at the most confident position, and compares (LLaDA's
  ``is_check_greedy``). Every request draws from a generator seeded with ``seed`` and its context
  (:meth:`DiffusionLM.request_generator`): the same pair always gets the same score, the choices of a multiple-choice
  question share their random masks (common random numbers), different questions draw independent ones.
* ``loglikelihood_rolling``: the sum of the ELBOs of the harness's disjoint rolling windows.
* ``generate_until``: ``generate()`` with the model's own sampler and saved generation config, ``max_gen_toks`` as
  ``max_new_tokens``, ``until`` applied to the decoded text, ``temperature`` / ``do_sample`` honoured, every other key
  honoured or refused by generate().

Dream's next-token shift is handled by the denoiser contract (:mod:`hf_dlm.denoiser`). Quant-dLLM checkpoints and
N-gram models load and score unchanged. A Di[M]O one-step generator (arXiv:2503.15457) and a Logit-FM model
(arXiv:2411.16821)) serve generation tasks and refuse likelihood
tasks with :class:`LikelihoodUnavailableError`.

Use it from the command line with ``hf-dlm eval`` or from Python::

    import lm_eval
    from hf_dlm.integrations.lm_eval_harness import DiffusionLM   # registers "hf-dlm" with the harness

    lm_eval.simple_evaluate(model="hf-dlm", model_args="pretrained=outputs/demo,mc_num=32", tasks=[...])

The harness's own ``lm_eval`` command does not import hf-dlm, so it does not know ``--model hf-dlm``.
"""

from __future__ import annotations

import logging
import math
import zlib
from typing import Any

import lm_eval.models  # noqa: F401  (fills the harness's model registry first: it loads its models only while empty)
import torch
from lm_eval.api.instance import Instance
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.generation.configuration_utils import CompileConfig

from ..denoiser import get_mask_token_id, guided_denoise
from ..evaluation.likelihood import elbo_log_likelihood
from ..generation.configuration import REMASKING_STRATEGIES
from ..generation.initial_state import DiMOInitialState
from ._lm_eval_requests import cut_at_stop_strings, encode_pair, fit_context, parse_gen_kwargs, rolling_windows

logger = logging.getLogger(__name__)

DTYPES = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
REMASKING = REMASKING_STRATEGIES
# masked-diffusion sampler settings: refused for a Logit-FM model, which samples with its own scheme
_MASKED_ONLY = ("steps", "block_length", "threshold", "remasking", "cfg", "factor", "cache", "compile")
CACHES = ("none", "prefix", "dual")


class LikelihoodUnavailableError(ValueError):
    """The model has no likelihood to score (a one-step generator or a flow model): it serves generation tasks."""


def _positive_int(name: str, value: Any, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be an integer >= 1{' or None' if allow_none else ''}, got {value!r}.")
    return value


def _number(name: str, value: Any, low: float, high: float = math.inf, low_open: bool = False
            ) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < low or (low_open and value == low) or value > high:
        bound = f"{'>' if low_open else '>='} {low}" + (f" and <= {high}" if high != math.inf else "")
        raise ValueError(f"`{name}` must be a number {bound}, got {value!r}.")
    return float(value)


@register_model("hf-dlm", "hf_dlm")
class DiffusionLM(LM):
    """lm-evaluation-harness model for hf-dlm text artifacts (LLaDA, Dream, Quant-dLLM, N-gram, Di[M]O, Logit-FM).

    Args:
        pretrained: a folder written by ``save_pretrained``, a hub id, or a loaded model.
        tokenizer: a tokenizer or its folder / hub id; default: the one saved with ``pretrained``.
        mc_num: Monte-Carlo samples per likelihood (LLaDA's ``mc_num``; 128 in its paper).
        batch_size: samples per forward pass; must divide ``mc_num`` (the harness's ``--batch_size``).
        cfg: unsupervised classifier-free guidance scale (LLaDA Appendix B.3) for likelihoods and, when given, for
            generation; ``None``: 0 for likelihoods, the saved generation config for generation.
        is_check_greedy: compute ``is_greedy`` by greedy unmasking (one pass per continuation token); False
            reports False at no cost (LLaDA's switch; no metric of its paper needs it).
        steps, block_length, threshold, remasking: sampler settings for generation tasks; ``None``: the model's
            saved generation config (generate() adapts steps and block length to ``max_gen_toks``).
        factor: Fast-dLLM's factor-based parallel decoding for generation tasks (arXiv 2505.22618).
        cache: Fast-dLLM's key/value cache for generation tasks: ``none``, ``prefix`` or ``dual``; ``None``: the
            saved generation config (likelihoods are single full passes and never use it).
        compile: ``True`` runs generation's denoiser passes through ``torch.compile`` (transformers'
            ``CompileConfig``; the first request compiles); ``None`` / ``False``: eager.
        max_length: longest sequence scored at once (context + continuation, a rolling window); default: the
            model's positions (``max_sequence_length`` / ``max_position_embeddings``). Longer contexts are cut on
            the left, with a logged count.
        max_gen_toks: new tokens when a task does not say (the harness's default, 256).
        dtype: ``auto`` (the checkpoint's), ``float32``, ``bfloat16`` or ``float16``.
        device: where the model runs; default ``cuda`` when available, else ``cpu``.
        seed: seeds every request's random numbers (masks, sampling).
        show_progress: progress bars over requests.
        max_batch_size: refused (there is no automatic batch size); accepted as None because the harness passes it.
    """

    def __init__(self, pretrained: Any, tokenizer: Any = None, mc_num: int = 128, batch_size: int | str = 32,
                 cfg: float | None = None, is_check_greedy: bool = True, steps: int | None = None,
                 block_length: int | None = None, threshold: float | None = None, remasking: str | None = None,
                 factor: float | None = None, cache: str | None = None, compile: bool | None = None,
                 max_length: int | None = None, max_gen_toks: int = 256, dtype: str = "auto",
                 device: str | None = None, seed: int = 1234, show_progress: bool = True,
                 max_batch_size: int | None = None) -> None:
        super().__init__()
        self.mc_num = _positive_int("mc_num", mc_num)
        if batch_size == "auto" or (isinstance(batch_size, str) and batch_size.startswith("auto")):
            raise ValueError("`batch_size` 'auto' is not supported: hf-dlm's batch is the Monte-Carlo samples per "
                             f"forward pass; give an integer that divides `mc_num` ({self.mc_num}).")
        self.batch_size = _positive_int("batch_size", batch_size)
        if self.mc_num % self.batch_size:
            raise ValueError(f"`batch_size` ({self.batch_size}) must divide `mc_num` ({self.mc_num}): the samples "
                             "of one likelihood are drawn in whole batches.")
        if max_batch_size is not None:
            raise ValueError(f"`max_batch_size` ({max_batch_size!r}) is not supported: hf-dlm has no automatic "
                             "batch size; give `batch_size`.")
        self.cfg = _number("cfg", cfg, 0.0)
        if not isinstance(is_check_greedy, bool):
            raise ValueError(f"`is_check_greedy` must be true or false, got {is_check_greedy!r}.")
        self.is_check_greedy = is_check_greedy
        self.steps = _positive_int("steps", steps, allow_none=True)
        self.block_length = _positive_int("block_length", block_length, allow_none=True)
        self.threshold = _number("threshold", threshold, 0.0, 1.0, low_open=True)
        if remasking is not None and remasking not in REMASKING:
            raise ValueError(f"`remasking` must be one of {REMASKING} or None, got {remasking!r}.")
        self.remasking = remasking
        self.factor = _number("factor", factor, 0.0, low_open=True)
        if cache is not None and cache not in CACHES:
            raise ValueError(f"`cache` must be one of {CACHES} or None, got {cache!r}.")
        self.cache = cache
        if compile not in (None, True, False):
            raise ValueError(f"`compile` must be true or false, got {compile!r}.")
        self.compile = compile or None
        self.max_gen_toks = _positive_int("max_gen_toks", max_gen_toks)
        if dtype not in DTYPES:
            raise ValueError(f"`dtype` must be one of {tuple(DTYPES)}, got {dtype!r}.")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"`seed` must be an integer, got {seed!r}.")
        self.seed = seed
        self.show_progress = bool(show_progress)
        self._device = torch.device(device if device is not None else "cuda" if torch.cuda.is_available() else "cpu")
        self.model, self.tokenizer = self._load(pretrained, tokenizer, DTYPES[dtype])
        self.kind = self._kind(self.model)
        if self.kind == "logit_fm":
            given = [name for name in _MASKED_ONLY if getattr(self, name) is not None]
            if given:
                raise ValueError(f"{', '.join(f'`{g}`' for g in given)} do not apply to a Logit-FM model: it samples "
                                 "with its own scheme (its saved generation config: scheme, num_steps).")
        positions = getattr(self.model.config, "max_sequence_length", None) or getattr(
            self.model.config, "max_position_embeddings", None)
        self.max_length = _positive_int("max_length", max_length if max_length is not None else positions or 2048)

    # ------------------------------------------------------------------ loading
    def _load(self, pretrained: Any, tokenizer: Any, dtype: Any) -> tuple[Any, Any]:
        if isinstance(pretrained, PreTrainedModel):
            model = pretrained if dtype == "auto" else pretrained.to(dtype)
            name = getattr(model, "name_or_path", None)
        elif isinstance(pretrained, str) and pretrained:
            model = AutoModelForCausalLM.from_pretrained(pretrained, dtype=dtype)
            name = pretrained
        else:
            raise ValueError(f"`pretrained` must be a folder, a hub id or a loaded model, got {pretrained!r}.")
        model = model.to(self._device).eval()
        if tokenizer is None or isinstance(tokenizer, str):
            source = tokenizer or name
            try:
                tokenizer = AutoTokenizer.from_pretrained(source)
            except (OSError, ValueError, TypeError, KeyError) as error:
                raise ValueError(f"`tokenizer`: the harness works on text and {source!r} has no tokenizer that "
                                 f"loads ({error}); pass `tokenizer=`.") from error
        return model, tokenizer

    @staticmethod
    def _kind(model: Any) -> str:
        if model.config.model_type == "logit_fm":
            return "logit_fm"
        if DiMOInitialState.from_model(model) is not None:
            return "dimo"
        get_mask_token_id(model)  # a masked diffusion model: refuses a model without a mask id
        return "masked"

    # ------------------------------------------------------------------ the harness's properties
    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def eot_token_id(self) -> int | None:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int | None:
        """The token a document's first rolling window is conditioned on (BOS, else EOS), as the ``hf`` backend."""
        return self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.eot_token_id

    @property
    def tokenizer_name(self) -> str:
        return str(getattr(self.tokenizer, "name_or_path", "tokenizer")).replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        """The template ``--apply_chat_template`` selects: the tokenizer's default (``True``) or the template of that
        name when the tokenizer holds several (a string); refused by name when the tokenizer has none."""
        if chat_template is False or chat_template is None:
            return None
        templates = getattr(self.tokenizer, "chat_template", None)
        if not templates:
            raise ValueError(f"`apply_chat_template`: the tokenizer of {self.tokenizer_name!r} has no chat template; "
                             "evaluate without it, or save one with the tokenizer.")
        if isinstance(chat_template, str):
            if not (isinstance(templates, dict) and chat_template in templates):
                names = sorted(templates) if isinstance(templates, dict) else ["default"]
                raise ValueError(f"`apply_chat_template`: the tokenizer has no chat template named {chat_template!r} "
                                 f"(it has {names}); pass `--apply_chat_template` alone for its default.")
            self._chat_template = templates[chat_template]
        else:
            self._chat_template = templates.get("default") if isinstance(templates, dict) else templates
            if self._chat_template is None:
                raise ValueError(f"`apply_chat_template`: the tokenizer's templates {sorted(templates)} include no "
                                 "'default'; name one.")
        return self._chat_template

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The chat history rendered with the selected chat template (the tokenizer's default unless the harness
        named one)."""
        template = getattr(self, "_chat_template", None) or self.chat_template(True)
        return self.tokenizer.apply_chat_template(chat_history, chat_template=template, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)

    # ------------------------------------------------------------------ likelihoods
    def _refuse_likelihood(self, request_type: str) -> None:
        if self.kind == "dimo":
            raise LikelihoodUnavailableError(
                f"{request_type}: this model is a one-step Di[M]O generator (arXiv:2503.15457). Its logits map an "
                "initial state to tokens in one pass; they are not the conditionals of a denoiser, so its ELBO is "
                "not a likelihood of the text. Evaluate it on generation tasks, and its teacher on likelihood tasks.")
        if self.kind == "logit_fm":
            raise LikelihoodUnavailableError(
                f"{request_type}: this model is a Logit-FM flow model (arXiv:2411.16821). It moves logits along a "
                "flow from Dirichlet noise; it has no masked-denoiser ELBO and no tractable likelihood here. "
                "Evaluate it on generation tasks.")

    def request_generator(self, context: list[int]) -> torch.Generator:
        """The generator a likelihood request draws its masks from: seeded by ``seed`` and the context's token ids,
        so a pair always gets the same score, the choices of one question share their masks (common random numbers:
        their comparison has less variance) and different questions draw independent masks."""
        digest = zlib.crc32(",".join(map(str, context)).encode())
        return torch.Generator().manual_seed((self.seed * 1_000_003 + digest) % 2**63)

    def _elbo(self, context: list[int], target: list[int]) -> float:
        estimate = elbo_log_likelihood(self.model, torch.tensor(context, dtype=torch.long),
                                       torch.tensor(target, dtype=torch.long), mc_samples=self.mc_num,
                                       batch_size=self.batch_size, cfg_scale=self.cfg or 0.0,
                                       generator=self.request_generator(context))
        score = float(estimate.log_likelihood)
        if not math.isfinite(score):
            raise FloatingPointError(f"the ELBO of a {len(target)}-token continuation is {score}: the model's logits "
                                     "are not finite (check `dtype`; float16 overflows in some models).")
        return score

    @torch.no_grad()
    def greedy_unmask(self, context: list[int], target_length: int) -> torch.LongTensor:
        """The continuation greedy unmasking produces: start from ``target_length`` masks after the context and
        commit, each pass, the argmax token at the masked position whose softmax probability is highest (LLaDA's
        ``is_check_greedy``)."""
        mask_id = get_mask_token_id(self.model)
        sequence = torch.tensor([context + [mask_id] * target_length], dtype=torch.long, device=self._device)
        prompt_index = torch.zeros_like(sequence, dtype=torch.bool)
        prompt_index[:, :len(context)] = True
        for _ in range(target_length):
            masked = sequence == mask_id
            logits = guided_denoise(self.model, sequence, None, prompt_index, self.cfg or 0.0, mask_id)[masked]
            tokens = logits.argmax(dim=-1)
            confidence = torch.softmax(logits.float(), dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
            best = int(torch.argmax(confidence))
            position = masked.nonzero()[best]
            sequence[position[0], position[1]] = tokens[best]
        return sequence[0, len(context):].cpu()

    def loglikelihood(self, requests: list[Instance], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        self._refuse_likelihood("loglikelihood")
        results, dropped = [], 0
        for request in tqdm(requests, desc="hf-dlm loglikelihood", disable=disable_tqdm or not self.show_progress):
            context_text, continuation_text = request.args
            context, target = encode_pair(self.tokenizer, context_text, continuation_text)
            if not target:
                raise ValueError(f"loglikelihood: the continuation {continuation_text!r} tokenizes to nothing; "
                                 "there is nothing to score.")
            context, cut = fit_context(context, target, self.max_length)
            dropped += bool(cut)
            score = self._elbo(context, target)
            greedy = self.is_check_greedy and bool(
                torch.equal(self.greedy_unmask(context, len(target)), torch.tensor(target)))
            results.append((score, greedy))
            self.cache_hook.add_partial("loglikelihood", request.args, (score, greedy))
        if dropped:
            logger.warning("loglikelihood: %d of %d contexts were cut on the left to fit max_length=%d", dropped,
                           len(requests), self.max_length)
        return results

    def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False) -> list[float]:
        self._refuse_likelihood("loglikelihood_rolling")
        results = []
        for request in tqdm(requests, desc="hf-dlm loglikelihood_rolling",
                            disable=disable_tqdm or not self.show_progress):
            (text,) = request.args
            token_ids = self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]  # windows fit it
            total = sum(self._elbo(context, target)
                        for context, target in rolling_windows(token_ids, self.prefix_token_id, self.max_length))
            results.append(total)
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), total)
        return results

    # ------------------------------------------------------------------ generation
    def _generate_kwargs(self) -> dict[str, Any]:
        if self.kind == "logit_fm":
            return {}
        settings = {"steps": self.steps, "block_length": self.block_length, "threshold": self.threshold,
                    "remasking": self.remasking, "cfg_scale": self.cfg, "factor": self.factor}
        settings = {name: value for name, value in settings.items() if value is not None}
        if self.cache is not None:
            settings["cache_implementation"] = None if self.cache == "none" else self.cache
        if self.compile:
            settings["compile_config"] = CompileConfig(mode="default")  # no CUDA graphs: the cache outlives a pass
        return settings

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        eos_text = self.tokenizer.eos_token if self.tokenizer.eos_token_id is not None else None
        outputs = []
        for request in tqdm(requests, desc="hf-dlm generate_until", disable=disable_tqdm or not self.show_progress):
            context_text, gen_kwargs = request.args
            parsed = parse_gen_kwargs(gen_kwargs, self.max_gen_toks, eos_text)
            if parsed.max_new_tokens > self.max_length:
                raise ValueError(f"`max_gen_toks` ({parsed.max_new_tokens}) exceeds `max_length` ({self.max_length}): "
                                 "give the task (or --gen_kwargs) a smaller `max_gen_toks`, or raise `max_length`.")
            context = self.tokenizer(context_text)["input_ids"]
            context, cut = fit_context(context, [0] * parsed.max_new_tokens, self.max_length)
            if cut:
                logger.warning("generate_until: a context was cut by %d tokens on the left to fit max_length=%d",
                               cut, self.max_length)
            input_ids = torch.tensor([context], dtype=torch.long, device=self._device)
            generator = torch.Generator(device=self._device).manual_seed(self.seed)
            kwargs = {**self._generate_kwargs(), **parsed.generate_kwargs}
            if self.kind == "logit_fm":
                kwargs.pop("do_sample", None)  # Logit-FM samples x_1 at `temperature` (0 = greedy)
            with torch.no_grad():
                sequences = self.model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                                                max_new_tokens=parsed.max_new_tokens, generator=generator, **kwargs)
            text = self._decode_new(sequences[0, input_ids.shape[1]:])
            text = cut_at_stop_strings(text, parsed.until)
            outputs.append(text)
            self.cache_hook.add_partial("generate_until", request.args, text)
        return outputs

    def _decode_new(self, new_ids: torch.LongTensor) -> str:
        """The new tokens as text: up to the first EOS, special tokens left out."""
        ids = new_ids.tolist()
        eos = self.tokenizer.eos_token_id
        if eos is not None and eos in ids:
            ids = ids[:ids.index(eos)]
        return self.tokenizer.decode(ids, skip_special_tokens=True)


__all__ = ["DiffusionLM", "LikelihoodUnavailableError"]
