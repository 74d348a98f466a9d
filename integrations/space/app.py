"""hf-dlm Space: masked diffusion at work, in a Gradio app.

Three tabs:

* **Text** — a prompt and the sampler settings (steps, answer length, block length, remasking rule, confidence
  threshold, temperature, seed, and Fast-dLLM's key/value cache where this hf-dlm has it); the canvas is redrawn
  after every denoiser pass: grey boxes are still masked, green tokens were committed by the last pass, white ones
  earlier; the prompt is blue. NFE and seconds are measured on the ``generate()`` call alone.
* **Side by side** — the teacher at N steps, the one-step Di[M]O student and the 2-bit Quant-dLLM model on the same
  prompt and seed: text, NFE, seconds, and the exact log-likelihood of each answer under the oracle language when the
  model speaks it (the demo's models do).
* **Images** — a caption (or a class label), the MaskGIT steps shown as they unmask (blue cells are still masked), and
  the final image large.

Models are named by folder or hub id and loaded on first use: nothing is downloaded or loaded when the app starts.
The defaults are the folders ``make demo`` writes (``outputs/demo``, ``outputs/demo-2bit``, ``outputs/demo-digits``)
and the Di[M]O student ``hf-dlm distill examples/dimo_text.json`` writes (``outputs/dimo-text/generator``). They can be
changed by ``hf-dlm app --teacher ...``, by a ``space_config.json`` next to this file (what ``hf-dlm push --space``
writes) or by the variables ``HF_DLM_TEACHER``, ``HF_DLM_STUDENT``, ``HF_DLM_QUANTIZED``, ``HF_DLM_IMAGE``.
Errors appear in the page as one line; the traceback goes to the server's log.

Run it with ``hf-dlm app`` (127.0.0.1), ``make app``, or ``python app.py`` in a Space.
"""

from __future__ import annotations

import dataclasses
import html
import json
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from the app's process

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers.generation.streamers import BaseStreamer  # noqa: E402

import hf_dlm  # noqa: E402,F401  (registers the architectures)
from hf_dlm.evaluation.oracle import OracleLanguage  # noqa: E402
from hf_dlm.generation import REMASKING_STRATEGIES  # noqa: E402

try:  # Fast-dLLM's key/value caches, where this hf-dlm has them
    from hf_dlm.generation.cache import CACHE_IMPLEMENTATIONS  # noqa: E402
except ImportError:  # an hf-dlm without caches: the Text tab shows no cache setting
    CACHE_IMPLEMENTATIONS: tuple[str, ...] = ()
from hf_dlm.pipelines import AutoregressiveImagePipeline  # noqa: E402
from hf_dlm.pipelines.images import preview_token_grid, save_png, to_viewable  # noqa: E402
from hf_dlm.recipes.digits import shows_ink_inverted  # noqa: E402

logger = logging.getLogger("hf_dlm.space")

ROLES = ("teacher", "student", "quantized", "image")
ROLE_TITLES = {"teacher": "teacher (N steps)", "student": "Di[M]O student (1 step)",
               "quantized": "Quant-dLLM 2-bit (N steps)", "image": "image pipeline"}
CACHE_DEFAULT = "model default"  # the cache the model's saved generation config names (none for the demo's)
CACHE_CHOICES = (CACHE_DEFAULT, "none", *CACHE_IMPLEMENTATIONS)
DEFAULT_SOURCES = {"teacher": "outputs/demo", "student": "outputs/dimo-text/generator",
                   "quantized": "outputs/demo-2bit", "image": "outputs/demo-digits"}
ENVIRONMENT = {role: f"HF_DLM_{role.upper()}" for role in ROLES}
SPACE_CONFIG = "space_config.json"
MASK_GLYPH = "\u2588\u2588"  # a grey block where a token is still masked
MASKED_COLOUR = (96, 150, 255)  # image cells that are still masked
CSS = """
#text-canvas .tok, #text-history .tok {display:inline-block; margin:1px 2px; padding:1px 4px; border-radius:4px;
  font-family: ui-monospace, monospace; font-size: 15px;}
.tok.prompt {background:#dbe8ff; color:#123a8c;}
.tok.mask {background:#d4d4d4; color:#d4d4d4;}
.tok.new {background:#c8f2c8; color:#0b5d0b; font-weight:bold;}
.tok.fixed {background:#ffffff; color:#111111; border:1px solid #e2e2e2;}
#text-history .frame {margin: 2px 0;}
#text-history .frame b {display:inline-block; width: 5em; font-size: 12px;}
.error-line {color: #b00020; font-weight: bold;}
"""


class AppError(Exception):
    """A problem shown to the person as one line in the page (a missing model, an empty prompt, a bad setting)."""


# ----------------------------------------------------------------------------------------------------------- sources
@dataclasses.dataclass
class AppSources:
    """Where each model comes from: a folder, a hub id, an object already loaded (tests, notebooks), or None (the
    part of the app that needs it says it is not configured). Text roles take a model or a ``(model, tokenizer)``
    pair; ``image`` takes an hf-dlm image pipeline."""

    teacher: Any = DEFAULT_SOURCES["teacher"]
    student: Any = DEFAULT_SOURCES["student"]
    quantized: Any = DEFAULT_SOURCES["quantized"]
    image: Any = DEFAULT_SOURCES["image"]

    @classmethod
    def from_environment(cls, folder: str | os.PathLike | None = None, **overrides: Any) -> AppSources:
        """The defaults, then ``space_config.json`` in ``folder`` (default: this file's folder), then the
        ``HF_DLM_<ROLE>`` variables, then ``overrides`` (values that are not None)."""
        values: dict[str, Any] = dict(DEFAULT_SOURCES)
        config_path = Path(folder if folder is not None else Path(__file__).parent) / SPACE_CONFIG
        if config_path.is_file():
            saved = json.loads(config_path.read_text())
            unknown = sorted(set(saved) - set(ROLES))
            if not isinstance(saved, dict) or unknown:
                raise ValueError(f"{config_path} may only name {ROLES}, got {unknown or type(saved).__name__}.")
            values.update(saved)
        for role, variable in ENVIRONMENT.items():
            if os.environ.get(variable):
                values[role] = os.environ[variable]
        unknown = sorted(set(overrides) - set(ROLES))
        if unknown:
            raise TypeError(f"unknown model roles {unknown}; the roles are {ROLES}.")
        values.update({role: value for role, value in overrides.items() if value is not None})
        return cls(**values)

    def describe(self, role: str) -> str:
        value = getattr(self, role)
        if value is None:
            return "not configured"
        if isinstance(value, (str, os.PathLike)):
            return str(value)
        return f"a {type(value[0] if isinstance(value, tuple) else value).__name__} given in-process"


class ModelStore:
    """Loads each role's model on first use (thread-safe) and keeps it; a load that fails is reported as one line
    and tried again the next time the role is asked for (a folder `make demo` writes while the app runs is found)."""

    def __init__(self, sources: AppSources) -> None:
        self.sources = sources
        self._loaded: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _load(self, role: str) -> Any:
        from hf_dlm.cli._errors import CLIError  # the CLI's loaders name the argument and say what was expected
        from hf_dlm.cli._loading import load_pipeline, load_text_model

        source = getattr(self.sources, role)
        if source is None:
            raise AppError(f"no {ROLE_TITLES[role]} is configured (pass --{role} to `hf-dlm app`).")
        if not isinstance(source, (str, os.PathLike)):
            if role == "image":
                return source
            return source if isinstance(source, tuple) else (source, None)
        name = str(source)
        if name.startswith((".", "/", "outputs")) and not os.path.isdir(name):
            hint = " (run `make demo`)" if name in DEFAULT_SOURCES.values() else ""
            if role == "student" and name == DEFAULT_SOURCES["student"]:
                hint = " (run `hf-dlm distill examples/dimo_text.json` after `make demo`)"
            raise AppError(f"{ROLE_TITLES[role]}: folder {name!r} does not exist{hint}.")
        try:
            if role == "image":
                return load_pipeline(name, f"the {role}")
            model, tokenizer = load_text_model(name, f"the {role}")
            return model.eval(), tokenizer
        except CLIError as error:
            raise AppError(str(error)) from error

    def get(self, role: str) -> Any:
        if role not in ROLES:
            raise ValueError(f"`role` must be one of {ROLES}, got {role!r}.")
        with self._lock:
            if role not in self._loaded:
                try:
                    self._loaded[role] = self._load(role)
                except AppError:
                    raise
                except Exception as error:  # anything else: one line in the page, the traceback in the log
                    logger.exception("loading the %s failed", role)
                    raise AppError(f"{ROLE_TITLES[role]} could not be loaded: {error}") from error
            return self._loaded[role]

    def text(self, role: str) -> tuple[Any, Any]:
        """(model, tokenizer); a model without a tokenizer borrows the teacher's (the 2-bit folder has none)."""
        model, tokenizer = self.get(role)
        if tokenizer is None and role != "teacher":
            try:
                tokenizer = self.get("teacher")[1]
            except AppError:
                tokenizer = None
        if tokenizer is None:
            raise AppError(f"{ROLE_TITLES[role]} has no tokenizer, and the teacher's is not available either.")
        return model, tokenizer


# ------------------------------------------------------------------------------------------------------------- text
class CanvasRecorder(BaseStreamer):
    """A ``generate()`` streamer that rebuilds the whole canvas after every denoiser pass.

    ``generate`` sends the prompt (``put``), then after each pass the current block (``put_draft``) and after each
    block the finished block (``put``); the canvas is prompt + finished blocks + current draft + masks. Each new
    canvas goes to ``on_frame`` as a list of token ids.
    """

    def __init__(self, max_new_tokens: int, mask_token_id: int, on_frame: Callable[[list[int]], None]) -> None:
        self.max_new_tokens, self.mask_token_id, self.on_frame = max_new_tokens, mask_token_id, on_frame
        self.prompt: list[int] | None = None
        self.finished: list[int] = []
        self.last: list[int] | None = None

    def _emit(self, draft: list[int]) -> None:
        answer = (self.finished + draft)[: self.max_new_tokens]
        canvas = self.prompt + answer + [self.mask_token_id] * (self.max_new_tokens - len(answer))
        if canvas != self.last:
            self.last = canvas
            self.on_frame(canvas)

    def put(self, value: torch.Tensor) -> None:
        ids = value.reshape(-1).tolist()
        if self.prompt is None:
            self.prompt = ids
            self._emit([])
        else:
            self.finished.extend(ids)
            self._emit([])

    def put_draft(self, value: torch.Tensor) -> None:
        self._emit(value.reshape(-1).tolist())

    def end(self) -> None:
        return None


def _token_text(tokenizer: Any, token_id: int) -> str:
    return tokenizer.decode([token_id]).strip() or tokenizer.convert_ids_to_tokens(token_id)


def canvas_html(canvas: list[int], prompt_length: int, previous: list[int] | None, mask_token_id: int,
                tokenizer: Any) -> str:
    """One canvas as HTML: ``prompt`` / ``mask`` / ``new`` (committed since ``previous``) / ``fixed`` token spans."""
    spans = []
    for i, token in enumerate(canvas):
        if i < prompt_length:
            kind, text = "prompt", _token_text(tokenizer, token)
        elif token == mask_token_id:
            kind, text = "mask", MASK_GLYPH
        elif previous is None or previous[i] == mask_token_id:
            kind, text = "new", _token_text(tokenizer, token)
        else:
            kind, text = "fixed", _token_text(tokenizer, token)
        spans.append(f'<span class="tok {kind}">{html.escape(text)}</span>')
    return "".join(spans)


def _int(value: Any, name: str, low: int, high: int | None = None) -> int:
    if value is None or isinstance(value, bool) or float(value) != int(float(value)):
        raise AppError(f"{name} must be a whole number, got {value!r}.")
    number = int(float(value))
    if number < low or (high is not None and number > high):
        allowed = f">= {low}" if high is None else f"between {low} and {high}"
        raise AppError(f"{name} must be {allowed}, got {number}.")
    return number


def _float(value: Any, name: str, low: float) -> float:
    if value is None or not np.isfinite(float(value)) or float(value) < low:
        raise AppError(f"{name} must be a finite number >= {low:g}, got {value!r}.")
    return float(value)


def text_generation_kwargs(steps: Any, max_new_tokens: Any, block_length: Any, remasking: Any, threshold: Any,
                           temperature: Any, cache: Any = CACHE_DEFAULT) -> dict[str, Any]:
    """The ``generate()`` settings of the Text tab, checked (an :class:`AppError` names the field and value).
    ``threshold`` 0 turns confidence-threshold decoding off; ``cache`` "model default" passes nothing, "none" turns
    a saved cache off, "prefix" / "dual" choose Fast-dLLM's caches (``cache_implementation``)."""
    if cache not in CACHE_CHOICES:
        raise AppError(f"cache must be one of {', '.join(CACHE_CHOICES)}, got {cache!r}.")
    if remasking not in REMASKING_STRATEGIES:
        raise AppError(f"remasking must be one of {', '.join(REMASKING_STRATEGIES)}, got {remasking!r}.")
    kwargs: dict[str, Any] = {"steps": _int(steps, "steps", 1), "max_new_tokens": _int(max_new_tokens, "answer length",
                                                                                          1),
                              "block_length": _int(block_length, "block length", 1), "remasking": remasking,
                              "temperature": _float(temperature, "temperature", 0.0)}
    threshold = _float(threshold, "threshold", 0.0)
    if threshold > 1:
        raise AppError(f"threshold must lie in [0, 1] (0 = off), got {threshold:g}.")
    if threshold > 0:
        kwargs["threshold"] = threshold
    if cache != CACHE_DEFAULT:
        kwargs["cache_implementation"] = None if cache == "none" else cache
    return kwargs


def _prompt_ids(tokenizer: Any, prompt: str) -> torch.LongTensor:
    if not isinstance(prompt, str) or not prompt.strip():
        raise AppError("the prompt is empty: type a few words first.")
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    if ids.shape[1] == 0:
        raise AppError(f"the prompt {prompt!r} gives no tokens.")
    return ids


class OracleScorer:
    """The exact log p(answer | prompt) under the oracle language (``hf_dlm.evaluation.oracle``) for models whose
    tokenizer is the oracle's (the demo's models): identified by the vocabulary, word for word."""

    def __init__(self) -> None:
        self._oracle: OracleLanguage | None = None
        self._known: dict[int, bool] = {}

    def applies(self, tokenizer: Any) -> bool:
        key = id(tokenizer)
        if key not in self._known:
            if self._oracle is None:
                self._oracle = OracleLanguage()
            self._known[key] = tokenizer.get_vocab() == self._oracle.tokenizer().get_vocab()
        return self._known[key]

    def score(self, tokenizer: Any, sequence: torch.Tensor, prompt_length: int) -> tuple[float, float] | None:
        """(log p(answer | prompt) in nats, per word), or None when the oracle does not apply or the text holds
        special tokens (which the oracle cannot score)."""
        if not self.applies(tokenizer):
            return None
        ids = sequence.reshape(1, -1)
        if bool(((ids < 0) | (ids >= self._oracle.num_words)).any()):
            return None
        conditional = self._oracle.conditional_log_prob(ids)[0, prompt_length:]
        total = float(conditional.sum())
        return total, total / max(len(conditional), 1)


def _error_line(error: Exception) -> str:
    """An error as one red line of the page: its first line, never a traceback."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return f'<span class="error-line">Error: {html.escape(text)}</span>'


def _log_failure(what: str, error: BaseException) -> None:
    """A refused setting (ValueError / TypeError from the library) is one warning line; anything else keeps its
    traceback in the server's log. The page shows one line either way."""
    if isinstance(error, (ValueError, TypeError, AppError)):
        logger.warning("%s refused: %s", what, error)
    else:
        logger.error("%s failed: %s", what, error, exc_info=error)


def _in_thread(work: Callable[[], Any], frames: queue.Queue) -> threading.Thread:
    """Run ``work`` in a thread; its result (or exception) arrives on ``frames`` as ``("done", value)`` /
    ``("error", exception)`` after every frame it produced."""
    def target() -> None:
        try:
            frames.put(("done", work()))
        except Exception as error:  # handed to the page as one line
            frames.put(("error", error))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


class SpaceApp:
    """The handlers behind the page (usable without a browser: each returns or yields what the page shows)."""

    def __init__(self, sources: AppSources) -> None:
        self.sources = sources
        self.store = ModelStore(sources)
        self.scorer = OracleScorer()
        self._image_root = Path(tempfile.mkdtemp(prefix="hf-dlm-app-"))
        self._runs = 0
        self._runs_lock = threading.Lock()

    def _image_folder(self, keep: int = 8) -> Path:
        """A new folder for one image run's PNGs; the oldest beyond ``keep`` runs are deleted. Frames go to the
        page as files written once (gradio copies a file into its cache once, where an image object would be
        re-encoded to the same cache path at every update, racing the browser's reads of it)."""
        with self._runs_lock:
            self._runs += 1
            folder = self._image_root / f"run-{self._runs:06d}"
            folder.mkdir()
            for old in sorted(self._image_root.iterdir())[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
        return folder

    # -------------------------------------------------------------------------------------------------- text tab
    def run_text(self, role: str, prompt: str, steps: Any, max_new_tokens: Any, block_length: Any, remasking: str,
                 threshold: Any, temperature: Any, seed: Any, frame_delay: Any, cache: Any = CACHE_DEFAULT
                 ) -> Iterator[tuple[str, str, str, str]]:
        """Yields (canvas HTML, status line, final text, history HTML) after every denoiser pass."""
        try:
            if role not in ("teacher", "student", "quantized"):
                raise AppError(f"model must be teacher, student or quantized, got {role!r}.")
            kwargs = text_generation_kwargs(steps, max_new_tokens, block_length, remasking, threshold, temperature,
                                            cache)
            seed = _int(seed, "seed", 0, 2**32 - 1)
            delay = _float(frame_delay, "frame delay", 0.0)
            model, tokenizer = self.store.text(role)
            ids = _prompt_ids(tokenizer, prompt)
            mask_id = model.generation_config.mask_token_id
            if mask_id is None:
                mask_id = model.config.mask_token_id
        except Exception as error:
            yield _error_line(error), _error_line(error), "", ""
            return
        frames: queue.Queue = queue.Queue()
        recorder = CanvasRecorder(kwargs["max_new_tokens"], mask_id, lambda c: frames.put(("frame", c)))
        timing: dict[str, float] = {}

        def work() -> Any:
            start = time.perf_counter()
            out = model.generate(ids, generator=torch.Generator().manual_seed(seed), streamer=recorder,
                                 return_dict_in_generate=True, **kwargs)
            timing["seconds"] = time.perf_counter() - start
            return out

        _in_thread(work, frames)
        prompt_length = ids.shape[1]
        previous: list[int] | None = None
        history: list[str] = []
        step = 0
        while True:
            kind, value = frames.get()
            if kind == "frame":
                canvas = canvas_html(value, prompt_length, previous, mask_id, tokenizer)
                history.append(f'<div class="frame"><b>{"start" if previous is None else f"pass {step}"}</b>'
                               f"{canvas}</div>")
                masked = sum(1 for t in value[prompt_length:] if t == mask_id)
                status = (f"pass {step} — {masked} of {kwargs['max_new_tokens']} positions still masked"
                          if previous is not None else "start: every answer position is masked")
                previous = value
                step += 1
                yield canvas, status, "", ""
                if delay:
                    time.sleep(delay)
            elif kind == "error":
                _log_failure("text generation", value)
                yield _error_line(value), _error_line(value), "", "".join(history)
                return
            else:
                sequence = value.sequences[0]
                final = sequence.tolist()
                canvas = canvas_html(final, prompt_length, previous, mask_id, tokenizer)
                text = tokenizer.decode(sequence[prompt_length:], skip_special_tokens=True).strip()
                score = self.scorer.score(tokenizer, sequence, prompt_length)
                oracle = "" if score is None else f" · oracle log p(answer | prompt) = {score[0]:.2f} nats " \
                                                  f"({score[1]:.2f} per word)"
                status = (f"done: {value.nfe} NFE (denoiser passes) in {timing['seconds']:.2f} s"
                          f"{oracle}")
                yield (f'<div id="text-done">{canvas}</div>', status, text,
                       f'<div id="text-history-frames" data-frames="{len(history)}">' + "".join(history) + "</div>")
                return

    # ------------------------------------------------------------------------------------------------ comparison
    def compare(self, prompt: str, teacher_steps: Any, max_new_tokens: Any, seed: Any) -> tuple[str, str]:
        """(table HTML, status line): the teacher at N steps, the one-step student and the 2-bit model."""
        try:
            steps = _int(teacher_steps, "teacher steps", 1)
            length = _int(max_new_tokens, "answer length", 1)
            seed = _int(seed, "seed", 0, 2**32 - 1)
        except AppError as error:
            return "", _error_line(error)
        rows = []
        for role, role_steps in (("teacher", steps), ("student", 1), ("quantized", steps)):
            try:
                model, tokenizer = self.store.text(role)
                ids = _prompt_ids(tokenizer, prompt)
                kwargs: dict[str, Any] = {"max_new_tokens": length, "steps": role_steps}
                if role_steps == 1:
                    kwargs["block_length"] = length
                start = time.perf_counter()
                out = model.generate(ids, generator=torch.Generator().manual_seed(seed), return_dict_in_generate=True,
                                     **kwargs)
                seconds = time.perf_counter() - start
                sequence = out.sequences[0]
                text = tokenizer.decode(sequence[ids.shape[1]:], skip_special_tokens=True).strip()
                score = self.scorer.score(tokenizer, sequence, ids.shape[1])
                oracle = "—" if score is None else f"{score[0]:.2f} ({score[1]:.2f}/word)"
                rows.append((ROLE_TITLES[role], str(role_steps), str(out.nfe), f"{seconds:.3f}", oracle, text, ""))
            except AppError as error:
                if "prompt" in str(error):
                    return "", _error_line(error)
                rows.append((ROLE_TITLES[role], "", "", "", "", "", str(error)))
            except Exception as error:
                _log_failure(f"side by side ({role})", error)
                rows.append((ROLE_TITLES[role], "", "", "", "", "", str(error).splitlines()[0]))
        head = ("model", "steps", "NFE", "seconds", "exact oracle log p(answer | prompt), nats", "answer")
        body = []
        for name, *cells, error in rows:
            if error:
                body.append(f'<tr><td>{html.escape(name)}</td><td colspan="5" class="error-line">'
                            f"{html.escape(error)}</td></tr>")
            else:
                body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in (name, *cells)) + "</tr>")
        table = ('<table id="compare-result"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head)
                 + "</tr></thead><tbody>" + "".join(body) + "</tbody></table>")
        return table, f"same prompt, seed {seed}; seconds are the generate() call alone"

    # ---------------------------------------------------------------------------------------------------- images
    def run_image(self, caption: str, class_label: Any, steps: Any, guidance: Any, seed: Any, scale: Any
                  ) -> Iterator[tuple[Any, Any, list, str]]:
        """Yields (current frame, final image, step gallery, status) as the MaskGIT steps unmask; images are PNG
        paths (the final one is the pipeline's output enlarged ``scale``× by nearest neighbour)."""
        try:
            pipe = self.store.get("image")
            steps = _int(steps, "steps", 1)
            guidance = _float(guidance, "guidance scale", 0.0)
            seed = _int(seed, "seed", 0, 2**32 - 1)
            scale = _int(scale, "scale", 1, 64)
            if isinstance(pipe, AutoregressiveImagePipeline):
                raise AppError("the image tab shows masked (MaskGIT-family) pipelines; this one is autoregressive.")
            if pipe.num_classes > 0:
                label = _int(class_label, "class label", 0, pipe.num_classes - 1)
                condition: dict[str, Any] = {"class_labels": [label]}
            else:
                if not isinstance(caption, str) or not caption.strip():
                    raise AppError("the caption is empty: type one first (e.g. 'a handwritten seven').")
                condition = {"prompt": [caption]}
            invert = shows_ink_inverted(pipe)
        except Exception as error:
            yield None, None, [], _error_line(error)
            return
        frames: queue.Queue = queue.Queue()
        pipe.set_progress_bar_config(disable=True)

        def on_step(pipeline: Any, i: int, timestep: Any, tensors: dict) -> dict:
            frames.put(("frame", (i, tensors["latents"].clone())))
            return tensors

        timing: dict[str, float] = {}

        def work() -> Any:
            start = time.perf_counter()
            images = pipe(**condition, num_inference_steps=steps, guidance_scale=guidance,
                          generator=torch.Generator().manual_seed(seed), callback_on_step_end=on_step).images
            timing["seconds"] = time.perf_counter() - start
            return images

        _in_thread(work, frames)
        folder = self._image_folder()
        gallery: list[tuple[str, str]] = []
        mask_id = pipe.scheduler.config.mask_token_id
        while True:
            kind, value = frames.get()
            if kind == "frame":
                i, latents = value
                preview = preview_token_grid(pipe, latents[:1], mask_id, masked_colour=MASKED_COLOUR, invert=invert)
                shown = str(save_png(to_viewable(preview, scale), folder / f"step-{i + 1:03d}.png"))
                masked = int((latents[0] == mask_id).sum())
                gallery.append((shown, f"{i + 1}: {masked} masked"))
                yield shown, None, list(gallery), f"step {i + 1} of {steps}: {masked} of {latents[0].numel()} " \
                                                  "tokens still masked (blue)"
            elif kind == "error":
                _log_failure("image generation", value)
                yield None, None, list(gallery), _error_line(value)
                return
            else:
                final = str(save_png(to_viewable(value[0], scale, invert=invert), folder / "final.png"))
                yield final, final, list(gallery), (f"done: {steps} steps in {timing['seconds']:.2f} s; the final "
                                                    f"image is the pipeline's output enlarged {scale}× (nearest "
                                                    "neighbour)" + (", dark ink on white" if invert else ""))
                return


def _settings_note(sources: AppSources) -> str:
    rows = "".join(f"<li><b>{ROLE_TITLES[role]}</b>: <code>{html.escape(sources.describe(role))}</code></li>"
                   for role in ROLES)
    return f"<details><summary>models (loaded on first use)</summary><ul>{rows}</ul></details>"


def build_demo(sources: AppSources | None = None) -> gr.Blocks:
    """The page. Nothing is loaded until a button is pressed."""
    sources = sources if sources is not None else AppSources.from_environment()
    app = SpaceApp(sources)
    with gr.Blocks(title="hf-dlm: masked diffusion at work", analytics_enabled=False) as demo:
        gr.Markdown("# hf-dlm — masked diffusion at work\nA masked diffusion model starts from an answer that is all "
                    "masks and fills it in over a few denoiser passes, several tokens per pass.")
        gr.HTML(_settings_note(sources))
        with gr.Tab("Text", id="tab-text"):
            with gr.Row():
                with gr.Column(scale=1):
                    role = gr.Dropdown(["teacher", "student", "quantized"], value="teacher", label="model",
                                       elem_id="text-model")
                    prompt = gr.Textbox(label="prompt", value="", placeholder="a few words of the model's language",
                                        elem_id="text-prompt")
                    with gr.Row():
                        steps = gr.Number(24, precision=0, label="steps", elem_id="text-steps")
                        length = gr.Number(24, precision=0, label="answer length", elem_id="text-length")
                        block = gr.Number(8, precision=0, label="block length", elem_id="text-block")
                    with gr.Row():
                        remasking = gr.Dropdown(list(REMASKING_STRATEGIES), value="low_confidence", label="remasking",
                                                elem_id="text-remasking")
                        threshold = gr.Number(0.0, label="threshold (0 = off)", elem_id="text-threshold")
                        temperature = gr.Number(0.0, label="temperature (0 = greedy)", elem_id="text-temperature")
                    with gr.Row():
                        seed = gr.Number(0, precision=0, label="seed", elem_id="text-seed")
                        delay = gr.Number(0.15, label="seconds per frame (display only)", elem_id="text-delay")
                        cache = gr.Dropdown(list(CACHE_CHOICES), value=CACHE_DEFAULT, label="key/value cache",
                                            visible=bool(CACHE_IMPLEMENTATIONS), elem_id="text-cache")
                    run = gr.Button("Generate", variant="primary", elem_id="text-run")
                with gr.Column(scale=2):
                    canvas = gr.HTML(label="canvas", elem_id="text-canvas")
                    status = gr.HTML(elem_id="text-status")
                    final = gr.Textbox(label="answer", interactive=False, elem_id="text-final")
                    with gr.Accordion("every pass", open=True):
                        history = gr.HTML(elem_id="text-history")
            gr.Markdown("Blue: prompt · grey: still masked · green: committed by this pass · white: committed "
                        "earlier.")
            run.click(app.run_text, [role, prompt, steps, length, block, remasking, threshold, temperature, seed,
                                     delay, cache], [canvas, status, final, history])
        with gr.Tab("Side by side", id="tab-compare"):
            with gr.Row():
                c_prompt = gr.Textbox(label="prompt", elem_id="compare-prompt")
                c_steps = gr.Number(24, precision=0, label="teacher / 2-bit steps", elem_id="compare-steps")
                c_length = gr.Number(24, precision=0, label="answer length", elem_id="compare-length")
                c_seed = gr.Number(0, precision=0, label="seed", elem_id="compare-seed")
            c_run = gr.Button("Compare", variant="primary", elem_id="compare-run")
            c_table = gr.HTML(elem_id="compare-table")
            c_status = gr.HTML(elem_id="compare-status")
            c_run.click(app.compare, [c_prompt, c_steps, c_length, c_seed], [c_table, c_status])
        with gr.Tab("Images", id="tab-image"):
            with gr.Row():
                with gr.Column(scale=1):
                    i_caption = gr.Textbox("a handwritten seven", label="caption (text-conditional pipelines)",
                                           elem_id="image-caption")
                    i_label = gr.Number(7, precision=0, label="class label (class-conditional pipelines)",
                                        elem_id="image-label")
                    with gr.Row():
                        i_steps = gr.Number(12, precision=0, label="steps", elem_id="image-steps-count")
                        i_guidance = gr.Number(1.0, label="guidance scale", elem_id="image-guidance")
                    with gr.Row():
                        i_seed = gr.Number(0, precision=0, label="seed", elem_id="image-seed")
                        i_scale = gr.Number(32, precision=0, label="enlargement (nearest neighbour)",
                                            elem_id="image-scale")
                    i_run = gr.Button("Generate image", variant="primary", elem_id="image-run")
                    i_status = gr.HTML(elem_id="image-status")
                with gr.Column(scale=1):
                    i_live = gr.Image(label="unmasking", format="png", type="pil", interactive=False,
                                      elem_id="image-live")
                with gr.Column(scale=1):
                    i_final = gr.Image(label="final image", format="png", type="pil", interactive=False,
                                       elem_id="image-final")
            i_gallery = gr.Gallery(label="every step", format="png", columns=8, height=270, elem_id="image-gallery")
            i_run.click(app.run_image, [i_caption, i_label, i_steps, i_guidance, i_seed, i_scale],
                        [i_live, i_final, i_gallery, i_status])
    demo.hf_dlm_app = app  # the handlers, for tests and notebooks
    return demo


THEME_FONTS = dict(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = None, block: bool = True,
           quiet: bool = False) -> tuple[Any, str]:
    """Serve ``demo`` on ``host``:``port`` (a free port when None) with system fonts (nothing fetched from a font
    service); returns (server app, local URL). ``block=False`` returns at once (tests)."""
    app, url, _ = demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block, quiet=quiet,
                              share=False, ssr_mode=False, theme=gr.themes.Default(**THEME_FONTS), css=CSS,
                              footer_links=[])
    return app, url


if __name__ == "__main__":  # a Space runs `python app.py`
    logging.basicConfig(level=logging.INFO)
    launch(build_demo(), host=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),
           port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
