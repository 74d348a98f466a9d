"""lm-evaluation-harness scores on a saved artifact's model card: ``EvalResult`` entries of the ``model-index``.

:func:`record_eval_results` merges the scores of a harness run (``simple_evaluate``'s dict, or its results JSON
loaded) into ``FOLDER/README.md``'s metadata, atomically; the card's text is kept as it is. ``hf-dlm card FOLDER``
re-renders an hf-dlm card's metrics table from that metadata.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .._io import replace_file
from .cards import merge_eval_results, model_card

logger = logging.getLogger(__name__)

SOURCE_NAME = "lm-evaluation-harness (hf-dlm backend)"
SOURCE_URL = "https://github.com/EleutherAI/lm-evaluation-harness"


def eval_results_from_harness(results: dict[str, Any]) -> list[EvalResult]:
    """One ``EvalResult`` per (task, metric) of the harness's ``results["results"]`` with a finite numeric value.

    Keys are the harness's ``metric,filter``: ``*_stderr`` and non-numeric values (``"N/A"``) are skipped; the
    ``none`` filter is dropped from the name, another filter is kept in it (``exact_match (strict-match)``)."""
    table = results.get("results") if isinstance(results, dict) else None
    if not isinstance(table, dict):
        raise ValueError("`results` is not lm-evaluation-harness output: it has no `results` mapping of tasks.")
    found = []
    for task, metrics in table.items():
        for key, value in (metrics.items() if isinstance(metrics, dict) else ()):
            metric, comma, filter_name = str(key).partition(",")
            if not comma or metric.endswith("_stderr") or isinstance(value, bool) \
                    or not isinstance(value, numbers.Real) or not math.isfinite(value):
                continue
            found.append(EvalResult(
                task_type="text-generation", dataset_type=task, dataset_name=task, metric_type=metric,
                metric_name=metric if filter_name in ("", "none") else f"{metric} ({filter_name})",
                metric_value=int(value) if isinstance(value, numbers.Integral) else float(value),
                source_name=SOURCE_NAME, source_url=SOURCE_URL))
    return found


def _new_card(folder: Path, results: list[EvalResult], model_name: str, artifact: Any) -> str:
    """The text of a card for a folder without one: hf-dlm's card of ``artifact`` when it has one, else a
    minimal card holding the metadata."""
    if artifact is not None:
        try:
            return str(model_card(artifact, repo_id=model_name, has_tokenizer=(folder / "tokenizer_config.json")
                                  .is_file(), eval_results=results))
        except ValueError as error:  # not an artifact hf-dlm writes cards for
            logger.info("no hf-dlm card for %s (%s): writing a minimal card", folder, error)
    data = ModelCardData(model_name=model_name, eval_results=results)
    return (f"---\n{data.to_yaml()}\n---\n\n# {model_name}\n\nScores measured with {SOURCE_NAME} are in this card's "
            "metadata (`model-index`).\n")


def record_eval_results(folder: str | os.PathLike, results: dict[str, Any], model_name: str | None = None,
                        artifact: Any = None) -> Path:
    """Record the scores of a harness run in ``folder/README.md``; returns its path.

    Entries already on the card with the same task and metric are replaced, others kept; the rest of the card is
    left as it is. A folder without a card gets hf-dlm's card of ``artifact`` (the loaded model) or a minimal one.
    ``model_name`` names the ``model-index`` (default: the card's, else the folder's name). The file is replaced
    atomically: a failed write leaves the previous card whole."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"`folder` {str(folder)!r} is not a folder: scores are recorded on a saved model.")
    new = eval_results_from_harness(results)
    if not new:
        raise ValueError("the harness results hold no numeric score to record on the card.")
    path = folder / "README.md"
    if path.is_file():
        card = ModelCard.load(path)
        card.data.eval_results = merge_eval_results(card.data.eval_results or [], new)
        card.data.model_name = model_name or card.data.model_name or folder.resolve().name
        text = str(card)
    else:
        text = _new_card(folder, new, model_name or folder.resolve().name, artifact)
    replace_file(path, lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))
    logger.info("recorded %d scores on %s", len(new), path)
    return path


__all__ = ["SOURCE_NAME", "SOURCE_URL", "eval_results_from_harness", "record_eval_results"]
