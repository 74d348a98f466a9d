"""Model-card templates: the kinds of artifact, the fields each kind's template must use, and the checks that
refuse an incomplete template before anything is written. The packaged templates live in ``hf_dlm/model_cards/``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from huggingface_hub import ModelCard, ModelCardData
from jinja2 import meta

COMMON_FIELDS = ("card_data", "model_name", "repo_id", "summary", "usage", "settings", "metrics", "citation", "install")


class CardTemplateError(ValueError):
    """A model-card template that cannot produce a complete card (a required field is not used, or it does not
    parse)."""


@dataclass(frozen=True)
class CardKind:
    """One artifact kind: its template file, the Hub tags it always carries and the template fields it requires."""

    name: str
    template: str
    tags: tuple[str, ...]
    required_fields: tuple[str, ...] = COMMON_FIELDS


KINDS: dict[str, CardKind] = {
    "diffusion-lm": CardKind("diffusion-lm", "diffusion_lm.md", ("diffusion-lm", "masked-diffusion")),
    "distilled-generator": CardKind("distilled-generator", "distilled_generator.md",
                                    ("dimo", "one-step", "masked-diffusion"), COMMON_FIELDS + ("initial_state",)),
    "quant-dllm": CardKind("quant-dllm", "quant_dllm.md", ("quant-dllm", "diffusion-lm", "masked-diffusion"),
                           COMMON_FIELDS + ("quantization_config", "bits_per_weight")),
    "logit-fm": CardKind("logit-fm", "logit_fm.md", ("logit-fm", "flow-matching", "diffusion-lm")),
    "image-pipeline": CardKind("image-pipeline", "image_pipeline.md", ("image-generation",)),
}


def template_text(kind: str, template: str | os.PathLike | None = None) -> tuple[str, str]:
    """(text, source name) of the template for ``kind``: ``template`` (a path) or the packaged one."""
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {sorted(KINDS)}, got {kind!r}.")
    if template is not None:
        path = Path(template)
        if not path.is_file():
            raise CardTemplateError(f"card template {str(path)!r} does not exist.")
        return path.read_text(encoding="utf-8"), str(path)
    name = KINDS[kind].template
    return resources.files("hf_dlm").joinpath("model_cards", name).read_text(encoding="utf-8"), f"model_cards/{name}"


def check_template(text: str, kind: str, source: str = "<template>") -> None:
    """Raise :class:`CardTemplateError` unless ``text`` parses and uses every field ``kind`` requires."""
    try:
        used = meta.find_undeclared_variables(jinja2.Environment().parse(text))
    except jinja2.TemplateSyntaxError as error:
        raise CardTemplateError(f"card template {source!r} does not parse: {error}") from None
    missing = [name for name in KINDS[kind].required_fields if name not in used]
    if missing:
        raise CardTemplateError(f"card template {source!r} for kind {kind!r} is missing required field(s) "
                                f"{missing}; a {kind} template must use all of {list(KINDS[kind].required_fields)}.")


def render_card(card_data: ModelCardData, fields: dict[str, Any], kind: str,
                template: str | os.PathLike | None = None) -> ModelCard:
    text, source = template_text(kind, template)
    check_template(text, kind, source)
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    content = environment.from_string(text).render(card_data=card_data.to_yaml(), **fields)
    return ModelCard(content)


__all__ = ["COMMON_FIELDS", "KINDS", "CardKind", "CardTemplateError", "check_template", "render_card", "template_text"]
