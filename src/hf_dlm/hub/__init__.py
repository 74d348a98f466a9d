"""Sharing through the Hugging Face Hub: model cards, one-commit pushes, offline hub ids.

- :func:`model_card` / :func:`write_model_card`: the card of a diffusion LM, Di[M]O generator, Quant-dLLM
  checkpoint, Logit-FM model or image pipeline (templates in ``hf_dlm/model_cards/``); ``save_pretrained`` of our
  models and pipelines writes it.
- :func:`push_to_hub`: weights, configs, generation config, tokenizer and card in one commit.
- :func:`add_to_cache`: a saved folder into the local Hub cache, so ``from_pretrained("org/name")`` works offline.
- :func:`eval_results_from_benchmark`: card metrics from the JSON files of ``benchmarks/``.
"""

from .cache import add_to_cache, artifact_kind, check_repo_id, folder_commit_hash
from .cards import card_kind, model_card, set_card_metadata, usage_snippet, write_model_card
from .metrics import eval_results_from_benchmark
from .push import load_artifact, push_to_hub
from .templates import KINDS, CardTemplateError, check_template

__all__ = ["KINDS", "CardTemplateError", "add_to_cache", "artifact_kind", "card_kind", "check_repo_id",
           "check_template", "eval_results_from_benchmark", "folder_commit_hash", "load_artifact", "model_card",
           "push_to_hub", "set_card_metadata", "usage_snippet", "write_model_card"]
