"""``hf-dlm distill``: Di[M]O one-step distillation of a saved teacher, from a JSON config file.

The file holds three keys::

    {
      "teacher": "outputs/demo",                 # a text model, or a MaskedImagePipeline (folder or hub id)
      "conditions": {"prompts": ["the", "a"]},   # or {"unconditional": 1024}, {"class_labels": [0, 1]},
                                                 #    {"captions": ["a handwritten seven"]}
      "dimo": {"output_dir": "outputs/dimo", "max_steps": 500, "generation_length": 64, "memory_mode": "lora"}
    }

``dimo`` holds ``DiMOConfig`` fields (any ``TrainingArguments`` field too). The one-step generator is saved to
``output`` (default: ``<output_dir>/generator``): a text model with the teacher's tokenizer, or a pipeline whose
transformer is the generator. Both carry their Di[M]O initial state and a card.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from ._errors import CLIError
from ._parsing import add_verb

EXAMPLES = """examples:
  hf-dlm distill examples/dimo_text.json
  hf-dlm distill dimo_digits.json --output outputs/dimo-digits

config file (JSON):
  {"teacher": "outputs/demo",
   "conditions": {"prompts": ["the", "a"]},
   "dimo": {"output_dir": "outputs/dimo", "max_steps": 500, "generation_length": 64, "memory_mode": "lora",
            "divergence": "fkl", "r_init": 0.6, "learning_rate": 1e-4}}
  conditions: {"prompts": [...]} | {"unconditional": N} (text teachers);
              {"class_labels": [...]} | {"captions": [...]} (image pipelines)"""

KEYS = ("teacher", "conditions", "dimo", "output")


def add_parser(commands: Any) -> None:
    parser = add_verb(commands, "distill", help="distill a teacher into a one-step generator with Di[M]O",
                      description="Run Di[M]O (DiMOTrainer) on a saved teacher as a JSON config file describes, then "
                      "save the one-step generator.\n\n" + EXAMPLES)
    parser.add_argument("config", help="JSON file with `teacher`, `conditions` and `dimo` (DiMOConfig fields)")
    parser.add_argument("--output", default=None, help="where the generator goes (default: <output_dir>/generator)")
    parser.set_defaults(run=run, check=check)


def _check_conditions(spec: Any, image: bool) -> None:
    """The shape of `conditions`, before the teacher is loaded (its tokenizer is checked once it is)."""
    if not isinstance(spec, dict) or len(spec) != 1:
        raise CLIError(f"`conditions` must be an object with one key, got {spec!r}.")
    (kind, value), = spec.items()
    allowed = ("class_labels", "captions") if image else ("prompts", "unconditional")
    if kind not in allowed:
        raise CLIError(f"`conditions` for a {'pipeline' if image else 'text'} teacher must be one of {allowed}, "
                       f"got {kind!r}.")
    if kind == "unconditional":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CLIError(f"`conditions.unconditional` must be a number of samples >= 1, got {value!r}.")
        return
    if not isinstance(value, list) or not value:
        raise CLIError(f"`conditions.{kind}` must be a non-empty list, got {value!r}.")
    if kind == "class_labels":
        bad = [v for v in value if isinstance(v, bool) or not isinstance(v, int) or v < 0]
        if bad:
            raise CLIError(f"`conditions.class_labels` must be integers >= 0, got {bad[0]!r}.")
    else:
        bad = [v for v in value if not isinstance(v, str) or not v.strip()]
        if bad:
            raise CLIError(f"`conditions.{kind}` must be non-empty strings, got {bad[0]!r}.")


def _conditions(spec: dict, tokenizer: Any, image: bool, pipe: Any = None) -> Any:
    from ..training.dimo import ConditionDataset

    (kind, value), = spec.items()
    if kind == "unconditional":
        if tokenizer is None or tokenizer.bos_token_id is None:
            raise CLIError("`conditions.unconditional` needs a teacher tokenizer with a BOS token.")
        return ConditionDataset.unconditional(tokenizer.bos_token_id, int(value))
    if kind == "class_labels":
        num_classes = getattr(pipe, "num_classes", None) or 0
        if num_classes <= 0:
            raise CLIError("`conditions.class_labels` needs a class-conditional teacher; this one is text-conditional "
                           "(use `captions`).")
        outside = [label for label in value if label >= num_classes]
        if outside:
            raise CLIError(f"`conditions.class_labels`: {outside[0]} is outside the teacher's classes (0 to "
                           f"{num_classes - 1}).")
        return ConditionDataset.from_labels(value)
    if kind == "captions":
        return ConditionDataset.from_captions(_tokenize_captions(pipe, value))
    if tokenizer is None:
        raise CLIError("`conditions.prompts` needs the teacher's tokenizer, and the teacher has none.")
    return ConditionDataset.from_prompts([tokenizer(p).input_ids for p in value])


def _tokenize_captions(pipe: Any, captions: list[str]) -> Any:
    if pipe.tokenizer is None:
        raise CLIError("`conditions.captions` needs a text-conditional pipeline (with a tokenizer).")
    return pipe.tokenizer(captions, padding="max_length", truncation=True, return_tensors="pt",
                          max_length=pipe.tokenizer.model_max_length).input_ids


def check(args: argparse.Namespace) -> None:
    """The config file, its keys and types, the teacher's path and the output, before anything is loaded."""
    from ._loading import check_output_folder, check_saved, read_json

    spec = read_json(args.config, "`config`")
    unknown = sorted(set(spec) - set(KEYS))
    missing = [key for key in ("teacher", "conditions", "dimo") if key not in spec]
    if unknown or missing:
        raise CLIError(f"`config` {args.config!r}: unknown keys {unknown}, missing keys {missing}; "
                       f"allowed: {list(KEYS)}.")
    if not isinstance(spec["teacher"], str) or not spec["teacher"].strip():
        raise CLIError(f"`teacher` must be a folder or hub id (a string), got {spec['teacher']!r}.")
    if not isinstance(spec["dimo"], dict) or "output_dir" not in spec["dimo"]:
        raise CLIError("`dimo` must be an object of DiMOConfig fields including `output_dir`.")
    if not isinstance(spec["dimo"]["output_dir"], str) or not spec["dimo"]["output_dir"].strip():
        raise CLIError(f"`dimo.output_dir` must be a folder path, got {spec['dimo']['output_dir']!r}.")
    output = spec.get("output")
    if output is not None and (not isinstance(output, str) or not output.strip()):
        raise CLIError(f"`output` must be a folder path, got {output!r}.")
    teacher = check_saved(spec["teacher"], "`teacher`")
    image = os.path.isdir(teacher) and os.path.isfile(os.path.join(teacher, "model_index.json"))
    _check_conditions(spec["conditions"], image)
    check_output_folder(spec["dimo"]["output_dir"], "`dimo.output_dir`")
    output = output or args.output
    if output is not None:
        check_output_folder(output, "`output`" if spec.get("output") else "`--output`")
    args.spec, args.image = spec, image


def _dimo_arguments(values: dict) -> Any:
    """DiMOConfig from the `dimo` object: field names and JSON types checked first, then the class's own checks."""
    from transformers import HfArgumentParser

    from ..training.dimo import DiMOConfig
    from ._loading import check_dataclass_values

    check_dataclass_values(values, DiMOConfig, "dimo")
    try:
        (dimo_args,) = HfArgumentParser(DiMOConfig).parse_dict(values)
    except (TypeError, ValueError) as error:
        raise CLIError(f"`dimo`: {error}") from error
    return dimo_args


def run(args: argparse.Namespace) -> int:
    from .._io import save_atomically
    from ..hub.cards import looks_like_hub_id, set_card_metadata
    from ..pipelines import MaskedImagePipeline
    from ..training.dimo import DiMOTrainer
    from ._loading import load_pipeline, load_text_model

    spec, image = args.spec, args.image
    dimo_args = _dimo_arguments(spec["dimo"])
    teacher_name = spec["teacher"]
    extra: dict = {}
    if image:
        pipe = load_pipeline(teacher_name, "`teacher`")
        if not isinstance(pipe, MaskedImagePipeline):
            raise CLIError(f"`teacher` {teacher_name!r} is a {type(pipe).__name__}; Di[M]O distills masked "
                           "models (a MaskedImagePipeline).")
        teacher, tokenizer = pipe.transformer, None
        train = _conditions(spec["conditions"], None, True, pipe)
        if pipe.text_encoder is not None:
            extra = {"text_encoder": pipe.text_encoder, "null_text_input_ids": _tokenize_captions(pipe, [""])}
    else:
        teacher, tokenizer = load_text_model(teacher_name, "`teacher`")
        train = _conditions(spec["conditions"], tokenizer, False)
    trainer = DiMOTrainer(teacher, dimo_args, train_dataset=train, processing_class=tokenizer, **extra)
    trainer.train()
    output = spec.get("output") or args.output or os.path.join(dimo_args.output_dir, "generator")
    generator = trainer.get_generator()
    base = teacher_name if looks_like_hub_id(teacher_name) else None
    if image:
        student = MaskedImagePipeline(vqvae=pipe.vqvae, transformer=generator, scheduler=pipe.scheduler,
                                      tokenizer=pipe.tokenizer, text_encoder=pipe.text_encoder)
        set_card_metadata(student, base_model=base)
        save_atomically(output, student)
    else:
        set_card_metadata(generator, base_model=base)
        save_atomically(output, generator, *([tokenizer] if tokenizer is not None else []))
    print(f"{output}: one-step generator after {trainer.state.global_step} Di[M]O steps")
    return 0
