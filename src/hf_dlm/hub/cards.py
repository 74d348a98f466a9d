"""Model cards for every artifact hf-dlm saves: diffusion LMs, Di[M]O one-step generators, Quant-dLLM checkpoints,
Logit-FM models and image pipelines.

A card is a ``huggingface_hub.ModelCard``: YAML metadata (``ModelCardData`` with ``library_name: hf-dlm``, the
pipeline tag, tags, ``base_model`` and ``eval_results``) above a markdown body rendered from a Jinja template in
``hf_dlm/model_cards/``. Every template must use the fields its kind requires (:data:`KINDS`); a template that
leaves one out is refused with :class:`CardTemplateError` before anything is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.utils import HFValidationError, validate_repo_id
from transformers.utils import logging

from .._io import replace_file
from .citations import CITATIONS
from .snippets import image_usage, text_usage
from .templates import KINDS, render_card

logger = logging.get_logger(__name__)

LIBRARY_NAME = "hf-dlm"
INSTALL = "pip install hf-dlm"

# benchmark metric keys → (Hub metric type, display name)
METRIC_NAMES: dict[str, tuple[str, str]] = {
    "gen_ppl": ("perplexity", "oracle gen-PPL"),
    "entropy": ("entropy", "unigram entropy"),
    "heldout_nll": ("nll", "held-out NLL (ELBO)"),
    "nll": ("nll", "oracle NLL per token"),
    "fd_digits": ("fd", "FD-digits"),
    "class_consistency": ("accuracy", "class consistency"),
    "precision": ("precision", "precision"),
    "recall": ("recall", "recall"),
    "bits_per_weight": ("bits_per_weight", "bits per weight"),
}


# ---------------------------------------------------------------------------------------------------- what it is
def _is_pipeline(artifact: Any) -> bool:
    from diffusers import DiffusionPipeline  # start-up time: diffusers costs seconds; hf_dlm.hub imports no torch

    return isinstance(artifact, DiffusionPipeline)


def _config_dict(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    if hasattr(config, "to_dict"):
        return config.to_dict()
    return dict(config)


def card_kind(artifact: Any) -> str:
    """The card kind of a model or pipeline (a key of :data:`KINDS`); ``ValueError`` for anything hf-dlm does not
    write cards for."""
    if _is_pipeline(artifact):
        transformer = getattr(artifact, "transformer", None)
        if transformer is not None and getattr(transformer.config, "dimo_initial_state", None):
            return "distilled-generator"
        return "image-pipeline"
    config = getattr(artifact, "config", None)
    quantization = _config_dict(getattr(config, "quantization_config", None))
    if quantization.get("quant_method") == "quant_dllm":
        return "quant-dllm"
    if getattr(config, "dimo_initial_state", None):
        return "distilled-generator"
    model_type = getattr(config, "model_type", None)
    if model_type == "logit_fm":
        return "logit-fm"
    if model_type in ("llada", "Dream"):
        return "diffusion-lm"
    raise ValueError(f"hf-dlm writes model cards for its diffusion LMs, Di[M]O generators, Quant-dLLM checkpoints, "
                     f"Logit-FM models and image pipelines; got a {type(artifact).__name__} "
                     f"(model_type {model_type!r}).")


def looks_like_hub_id(name: Any) -> bool:
    if not isinstance(name, str) or "/" not in name or name.startswith((".", "/", "~")) or os.path.exists(name):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _source_name(artifact: Any) -> str | None:
    if _is_pipeline(artifact):
        return getattr(artifact, "name_or_path", None) or artifact.config.get("_name_or_path")
    return getattr(getattr(artifact, "config", None), "_name_or_path", None)


# ---------------------------------------------------------------------------------------------------- metadata
def set_card_metadata(artifact: Any, *, base_model: str | None = None,
                      eval_results: list[EvalResult] | None = None, tags: list[str] | None = None) -> Any:
    """Attach card metadata to a model or pipeline; its next ``save_pretrained`` / ``push_to_hub`` writes it.

    ``eval_results`` are added to (and replace same-metric entries of) those already attached; ``base_model`` is the
    teacher (Di[M]O) or full-precision model (Quant-dLLM) as a Hub id; ``tags`` are extra Hub tags."""
    if base_model is not None and not looks_like_hub_id(base_model):
        raise ValueError(f"`base_model` must be a Hub id such as 'org/name', got {base_model!r}.")
    info = dict(getattr(artifact, "_hf_dlm_card", None) or {})
    if base_model is not None:
        info["base_model"] = base_model
    if tags:
        if not all(isinstance(t, str) and t for t in tags):
            raise ValueError(f"`tags` must be non-empty strings, got {tags!r}.")
        info["tags"] = list(dict.fromkeys([*info.get("tags", []), *tags]))
    if eval_results:
        if not all(isinstance(r, EvalResult) for r in eval_results):
            raise ValueError("`eval_results` must be a list of huggingface_hub.EvalResult.")
        info["eval_results"] = merge_eval_results(info.get("eval_results", []), eval_results)
    object.__setattr__(artifact, "_hf_dlm_card", info)
    return artifact


def _result_key(result: EvalResult) -> tuple:
    return (result.metric_type, result.dataset_name, result.metric_config, result.metric_name)


def merge_eval_results(old: list[EvalResult], new: list[EvalResult]) -> list[EvalResult]:
    """``old`` followed by ``new``; an entry of ``new`` replaces the ``old`` one with the same metric and dataset."""
    merged = {_result_key(r): r for r in old}
    merged.update({_result_key(r): r for r in new})
    return list(merged.values())


# ---------------------------------------------------------------------------------------------------- content
def _json_block(values: dict[str, Any]) -> str:
    return json.dumps(values, indent=2, sort_keys=True, default=str)


def _generation_settings(model: Any) -> dict[str, Any]:
    config = getattr(model, "generation_config", None)
    if config is None:
        return {}
    values = config.to_diff_dict()
    values.pop("transformers_version", None)
    return values


def _parameters(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def _text_summary(model: Any) -> list[str]:
    config = model.config
    facts = [f"architecture: `{type(model).__name__}` (`model_type: {config.model_type}`)",
             f"parameters: {_parameters(model):,}"]
    for label, name in (("hidden size", "hidden_size"), ("layers", "num_hidden_layers"),
                        ("vocabulary", "vocab_size"), ("mask token id", "mask_token_id")):
        value = getattr(config, name, None)
        if value is not None:
            facts.append(f"{label}: {value}")
    return facts


def _image_summary(pipe: Any) -> list[str]:
    facts = [f"pipeline: `{type(pipe).__name__}`"]
    for name, component in pipe.components.items():
        if component is not None and hasattr(component, "parameters"):
            facts.append(f"`{name}`: `{type(component).__name__}`, {_parameters(component):,} parameters")
        elif component is not None:
            facts.append(f"`{name}`: `{type(component).__name__}`")
    transformer = getattr(pipe, "transformer", None)
    if transformer is not None:
        classes = int(getattr(transformer.config, "num_classes", 0) or 0)
        facts.append(f"conditioning: {'class labels (0–%d)' % (classes - 1) if classes else 'text prompts'}")
    return facts


def _image_settings(pipe: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    scheduler = getattr(pipe, "scheduler", None)
    if scheduler is not None:
        settings["scheduler"] = {"class": type(scheduler).__name__,
                                 **{k: v for k, v in dict(scheduler.config).items() if not k.startswith("_")}}
    transformer = getattr(pipe, "transformer", None)
    if transformer is not None:
        settings["transformer"] = {k: v for k, v in dict(transformer.config).items() if not k.startswith("_")}
    language_model = getattr(pipe, "language_model", None)
    if language_model is not None:
        settings["image_tokens"] = language_model.config.image_tokens
    return settings


def _metrics_table(results: list[EvalResult]) -> str:
    if not results:
        return ("No metrics recorded for this artifact. Add measured ones with `hf-dlm card FOLDER --benchmark "
                "RESULTS.json` or `hf_dlm.hub.set_card_metadata(model, eval_results=[...])`.")
    rows = ["| metric | value | dataset | setting |", "|---|---|---|---|"]
    for r in results:
        value = f"{r.metric_value:.4g}" if isinstance(r.metric_value, float) else str(r.metric_value)
        rows.append(f"| {r.metric_name or r.metric_type} | {value} | {r.dataset_name} | {r.metric_config or ''} |")
    return "\n".join(rows)


def _citations(artifact: Any, kind: str) -> str:
    keys: list[str] = []
    if _is_pipeline(artifact):
        keys.append("image_tokens_lm" if type(artifact).__name__ == "AutoregressiveImagePipeline" else "maskgit")
    else:
        model_type = getattr(artifact.config, "model_type", None)
        keys.append({"llada": "llada", "Dream": "dream", "logit_fm": "logit_fm"}.get(model_type, "llada"))
    if kind == "distilled-generator":
        keys.append("dimo")
    if kind == "quant-dllm":
        keys.append("quant_dllm")
    return "\n\n".join(CITATIONS[k] for k in dict.fromkeys(keys))


def card_context(artifact: Any, *, repo_id: str, kind: str | None = None, has_tokenizer: bool = False,
                 base_model: str | None = None, eval_results: list[EvalResult] | None = None,
                 example_prompt: str | None = None) -> tuple[ModelCardData, dict[str, Any]]:
    """The metadata and the template fields of ``artifact``'s card."""
    kind = kind or card_kind(artifact)
    spec = KINDS[kind]
    info = getattr(artifact, "_hf_dlm_card", None) or {}
    results = merge_eval_results(info.get("eval_results", []), eval_results or [])
    if base_model is None:
        base_model = info.get("base_model")
    if base_model is None and kind in ("distilled-generator", "quant-dllm"):
        source = _source_name(artifact)
        base_model = source if looks_like_hub_id(source) else None
    is_pipe = _is_pipeline(artifact)
    fields: dict[str, Any] = {"repo_id": repo_id, "model_name": repo_id.split("/")[-1], "install": INSTALL,
                              "base_model": base_model, "kind": kind, "modality": "image" if is_pipe else "text"}
    tags = [LIBRARY_NAME, *spec.tags]
    extra_tags = info.get("tags", [])
    if is_pipe:
        autoregressive = type(artifact).__name__ == "AutoregressiveImagePipeline"
        tags += ["autoregressive", "image-tokens"] if autoregressive else ["masked-diffusion", "maskgit"]
        classes = int(getattr(getattr(artifact, "transformer", None), "config", {}).get("num_classes", 0) or 0) \
            if not autoregressive else 0
        pipeline_tag = "unconditional-image-generation" if classes else "text-to-image"
        fields["summary"] = "\n".join(f"- {fact}" for fact in _image_summary(artifact))
        settings = _image_settings(artifact)
        fields["usage"] = image_usage(repo_id, kind, artifact, example_prompt or "a photo of a cat")
    else:
        pipeline_tag = "text-generation"
        tags.append(artifact.config.model_type)
        fields["summary"] = "\n".join(f"- {fact}" for fact in _text_summary(artifact))
        settings = {"generation_config": _generation_settings(artifact)}
        fields["usage"] = text_usage(repo_id, kind, has_tokenizer, example_prompt or "Once upon a time", artifact)
    if kind == "distilled-generator":
        owner = artifact.transformer if is_pipe else artifact
        initial_state = dict(owner.config.dimo_initial_state)
        fields["initial_state"] = _json_block(initial_state)
        settings["dimo_initial_state"] = initial_state
    if kind == "quant-dllm":
        from ..quantization import quantization_report  # start-up time: imports torch and transformers.quantizers

        report = quantization_report(artifact)
        fields["summary"] = "\n".join(line for line in fields["summary"].splitlines() if "parameters:" not in line)
        fields["summary"] += (f"\n- stored size: {report['model_bytes']:,} bytes, of which "
                              f"{report['quantized_bytes']:,} in the {len(report['modules'])} quantized linear layers")
        quantization = _config_dict(artifact.config.quantization_config)
        fields["quantization_config"] = _json_block(quantization)
        bits = float(report["bits_per_weight"])
        fields["bits_per_weight"] = f"{bits:.3f}"
        results = merge_eval_results(results, [EvalResult(
            task_type="text-generation", dataset_type="model-weights", dataset_name="quantized linear weights",
            metric_type="bits_per_weight", metric_name="bits per weight", metric_value=round(bits, 4),
            metric_config="sign planes + fp16 scales, measured on the saved layers")])
    fields["settings"] = _json_block(settings)
    fields["metrics"] = _metrics_table(results)
    fields["citation"] = _citations(artifact, kind)
    tags = list(dict.fromkeys([*tags, *extra_tags]))
    card_data = ModelCardData(library_name=LIBRARY_NAME, pipeline_tag=pipeline_tag, tags=tags,
                              base_model=base_model, model_name=fields["model_name"],
                              eval_results=results or None)
    return card_data, fields


# ---------------------------------------------------------------------------------------------------- templates
def model_card(artifact: Any, *, repo_id: str | None = None, template: str | os.PathLike | None = None,
               has_tokenizer: bool = False, base_model: str | None = None,
               eval_results: list[EvalResult] | None = None, example_prompt: str | None = None) -> ModelCard:
    """Build the model card of a model or pipeline.

    Args:
        artifact: an hf-dlm model (LLaDA, Dream, Logit-FM, a Di[M]O generator, a Quant-dLLM model) or pipeline.
        repo_id: the Hub id the usage snippet loads (default: ``your-org/<class name>``).
        template: a custom Jinja template; it must use every field of :data:`KINDS`'s entry for the kind.
        has_tokenizer: whether the repository ships a tokenizer (the snippet then encodes a prompt).
        base_model: the teacher / full-precision model's Hub id (default: recorded with
            :func:`set_card_metadata`, else the id the artifact was loaded from, for distilled and quantized kinds).
        eval_results: measured metrics (merged with those recorded on the artifact).
        example_prompt: the prompt the snippet uses.
    """
    if repo_id is None:
        repo_id = f"your-org/{type(artifact).__name__}"
    kind = card_kind(artifact)
    card_data, fields = card_context(artifact, repo_id=repo_id, kind=kind, has_tokenizer=has_tokenizer,
                                     base_model=base_model, eval_results=eval_results, example_prompt=example_prompt)
    return render_card(card_data, fields, kind, template)


def _has_tokenizer(folder: Path) -> bool:
    return (folder / "tokenizer_config.json").is_file() or (folder / "tokenizer" / "tokenizer_config.json").is_file()


def write_model_card(artifact: Any, folder: str | os.PathLike, *, repo_id: str | None = None,
                     **kwargs: Any) -> Path:
    """Write ``artifact``'s card to ``folder/README.md`` (atomically: a temporary file renamed into place).

    ``repo_id`` defaults to the folder's name; whether the snippet loads a tokenizer follows the folder's files."""
    folder = Path(folder)
    card = model_card(artifact, repo_id=repo_id or folder.resolve().name, has_tokenizer=_has_tokenizer(folder),
                      **kwargs)
    replace_file(folder / "README.md", lambda temporary: Path(temporary).write_text(str(card), encoding="utf-8"))
    logger.info("wrote the %s model card to %s", card.data.tags, folder / "README.md")
    return folder / "README.md"


def usage_snippet(card: ModelCard | str | os.PathLike) -> str:
    """The first ```python block of a card (what a user copies)."""
    text = card.content if isinstance(card, ModelCard) else Path(card).read_text(encoding="utf-8")
    start = text.find("```python\n")
    if start < 0:
        raise ValueError("the card has no ```python usage block.")
    end = text.find("```", start + 10)
    return text[start + 10:end]


__all__ = ["LIBRARY_NAME", "METRIC_NAMES", "card_context", "card_kind", "looks_like_hub_id", "merge_eval_results",
           "model_card", "set_card_metadata", "usage_snippet", "write_model_card"]
