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

import torch

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


def add_parser(commands) -> None:
    parser = add_verb(commands, "distill", help="distill a teacher into a one-step generator with Di[M]O",
                                 description="Run Di[M]O (DiMOTrainer) on a saved teacher as a JSON config file "
                                 "describes, then save the one-step generator.\n\n" + EXAMPLES)
    parser.add_argument("config", help="JSON file with `teacher`, `conditions` and `dimo` (DiMOConfig fields)")
    parser.add_argument("--output", default=None, help="where the generator goes (default: <output_dir>/generator)")
    parser.set_defaults(run=run)


def _conditions(spec: dict, tokenizer, image: bool, pipe=None):
    from ..training.dimo import ConditionDataset

    if not isinstance(spec, dict) or len(spec) != 1:
        raise ValueError(f"`conditions` must be an object with one key, got {spec!r}.")
    (kind, value), = spec.items()
    allowed = ("class_labels", "captions") if image else ("prompts", "unconditional")
    if kind not in allowed:
        raise ValueError(f"`conditions` for a {'pipeline' if image else 'text'} teacher must be one of {allowed}, "
                         f"got {kind!r}.")
    if kind == "unconditional":
        if tokenizer is None or tokenizer.bos_token_id is None:
            raise ValueError("`conditions.unconditional` needs a teacher tokenizer with a BOS token.")
        return ConditionDataset.unconditional(tokenizer.bos_token_id, int(value))
    if not isinstance(value, list) or not value:
        raise ValueError(f"`conditions.{kind}` must be a non-empty list, got {value!r}.")
    if kind == "class_labels":
        return ConditionDataset.from_labels(value)
    if kind == "captions":
        return ConditionDataset.from_captions(_tokenize_captions(pipe, value))
    if tokenizer is None:
        raise ValueError("`conditions.prompts` needs the teacher's tokenizer, and the teacher has none.")
    return ConditionDataset.from_prompts([tokenizer(p).input_ids for p in value])


def _tokenize_captions(pipe, captions: list[str]) -> torch.Tensor:
    if pipe.tokenizer is None:
        raise ValueError("`conditions.captions` needs a text-conditional pipeline (with a tokenizer).")
    return pipe.tokenizer(captions, padding="max_length", truncation=True, return_tensors="pt",
                          max_length=pipe.tokenizer.model_max_length).input_ids


def run(args: argparse.Namespace) -> int:
    from transformers import HfArgumentParser

    from .._io import save_atomically
    from ..hub.cards import looks_like_hub_id, set_card_metadata
    from ..pipelines import MaskedImagePipeline
    from ..training.dimo import DiMOConfig, DiMOTrainer
    from ._loading import load_pipeline, load_text_model, read_json

    spec = read_json(args.config, "`config`")
    unknown = sorted(set(spec) - set(KEYS))
    missing = [key for key in ("teacher", "conditions", "dimo") if key not in spec]
    if unknown or missing:
        raise ValueError(f"`config` {args.config!r}: unknown keys {unknown}, missing keys {missing}; "
                         f"allowed: {list(KEYS)}.")
    if not isinstance(spec["dimo"], dict) or "output_dir" not in spec["dimo"]:
        raise ValueError("`dimo` must be an object of DiMOConfig fields including `output_dir`.")
    (dimo_args,) = HfArgumentParser(DiMOConfig).parse_dict(spec["dimo"])
    teacher_name = spec["teacher"]
    image = os.path.isfile(os.path.join(teacher_name, "model_index.json")) if os.path.isdir(teacher_name) else False
    extra: dict = {}
    if image:
        pipe = load_pipeline(teacher_name)
        if not isinstance(pipe, MaskedImagePipeline):
            raise ValueError(f"`teacher` {teacher_name!r} is a {type(pipe).__name__}; Di[M]O distills masked "
                             "models (a MaskedImagePipeline).")
        teacher, tokenizer = pipe.transformer, None
        train = _conditions(spec["conditions"], None, True, pipe)
        if pipe.text_encoder is not None:
            extra = {"text_encoder": pipe.text_encoder, "null_text_input_ids": _tokenize_captions(pipe, [""])}
    else:
        teacher, tokenizer = load_text_model(teacher_name)
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
