"""Card metrics from the JSON files ``benchmarks/*.py`` write: each measured row becomes ``EvalResult`` entries.

A benchmark JSON holds ``rows`` (a list, at the top level or under ``text`` / ``image``) or ``results`` (a dict of
named rows). Each row names what was measured (``model`` or ``variant``) and the setting (``steps`` / ``nfe`` /
``guidance_scale``), then the metric values; :data:`~hf_dlm.hub.cards.METRIC_NAMES` says which keys are metrics.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult

from .cards import METRIC_NAMES

DATASETS = {  # section → (task type, dataset type, dataset name)
    "text": ("text-generation", "oracle-language", "hf-dlm oracle language"),
    "image": ("text-to-image", "digits", "hf-dlm digits"),
}
_SETTING_KEYS = ("steps", "nfe", "guidance_scale")


def _sections(data: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    sections = []
    if isinstance(data.get("rows"), list):
        image = any("fd_digits" in row for row in data["rows"])
        sections.append(("image" if image else "text", data["rows"]))
    for name in ("text", "image"):
        if isinstance(data.get(name), dict) and isinstance(data[name].get("rows"), list):
            sections.append((name, data[name]["rows"]))
    if isinstance(data.get("results"), dict):
        rows = [{"model": key, **value} for key, value in data["results"].items() if isinstance(value, dict)]
        sections.append(("image" if any("fd_digits" in r for r in rows) else "text", rows))
    return sections


def _label(row: dict[str, Any]) -> str:
    return str(row.get("model", row.get("variant", "")))


def benchmark_rows(path: str | os.PathLike) -> list[tuple[str, dict[str, Any]]]:
    """Every measured row of a benchmark JSON as (section, row)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"`benchmark` {str(path)!r} is not a file.")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"`benchmark` {str(path)!r} is not JSON: {error}") from None
    rows = [(section, row) for section, items in _sections(data) for row in items if isinstance(row, dict)]
    if not rows:
        raise ValueError(f"`benchmark` {str(path)!r} has no `rows` or `results` of measured values.")
    return rows


def eval_results_from_benchmark(path: str | os.PathLike, row: str, *, steps: int | None = None,
                                metrics: list[str] | None = None) -> list[EvalResult]:
    """``EvalResult`` entries for the rows of benchmark ``path`` whose label (``model`` / ``variant``) equals
    ``row`` (and whose ``steps`` or ``nfe`` equals ``steps`` when given).

    ``metrics`` restricts the keys (default: every key of ``METRIC_NAMES`` the row has, except ``bits_per_weight``:
    a Quant-dLLM card measures that on the saved layers itself). Quote rows measured on the artifact the card
    describes. ``ValueError`` names the labels on offer when nothing matches."""
    rows = benchmark_rows(path)
    chosen = [(section, r) for section, r in rows if _label(r) == row
              and (steps is None or r.get("steps", r.get("nfe")) == steps)]
    if not chosen:
        labels = sorted({f"{_label(r)!r}" + (f" (steps {r.get('steps', r.get('nfe'))})"
                                            if r.get("steps", r.get("nfe")) is not None else "") for _, r in rows})
        raise ValueError(f"`row` {row!r}" + (f" with steps {steps}" if steps is not None else "")
                         + f" is not in {str(path)!r}; rows: {', '.join(labels)}.")
    wanted = metrics or [key for key in METRIC_NAMES if key != "bits_per_weight"]
    unknown = [m for m in wanted if m not in METRIC_NAMES]
    if unknown:
        raise ValueError(f"`metrics` {unknown} are not card metrics; allowed: {sorted(METRIC_NAMES)}.")
    results = []
    for section, r in chosen:
        task_type, dataset_type, dataset_name = DATASETS[section]
        setting = ", ".join(f"{k}={r[k]}" for k in _SETTING_KEYS if r.get(k) is not None) or None
        for key in wanted:
            value = r.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                metric_type, metric_name = METRIC_NAMES[key]
                results.append(EvalResult(task_type=task_type, dataset_type=dataset_type, dataset_name=dataset_name,
                                          metric_type=metric_type, metric_name=metric_name,
                                          metric_value=round(float(value), 4), metric_config=setting))
    return results


__all__ = ["benchmark_rows", "eval_results_from_benchmark"]
