"""Start-up time: ``import hf_dlm`` and ``hf-dlm --help`` against ``import transformers`` (issue "Nothing silent").

    python benchmarks/startup.py                  # 9 rounds (about 2 min on 2 shared CPU cores)
    python benchmarks/startup.py --runs 15 --before HEAD~3

Every measurement is a fresh process (``python -c STATEMENT``, or the ``hf-dlm`` console script), timed from spawn to
exit by the parent, so it includes the interpreter's own start (the ``python -c pass`` row). One warm-up round
(page cache, ``.pyc`` files) is discarded; then ``--runs`` rounds each run every row once, in an order rotated from
round to round (interleaved, so a burst of load from another process hits every row alike). A row's figure is the
median over rounds of its time divided by ``import transformers``'s time **in the same round**; the median seconds
and the quartiles of the ratio are in the JSON too.

Rows:

* ``import transformers`` — the reference (transformers 5 imports lazily: torch is not imported);
* ``import hf_dlm`` — with its registrations (they are written when transformers' registries are imported:
  ``hf_dlm._registration``), target ≤ 1.5x;
* ``hf-dlm --help`` and ``hf-dlm generate --help`` — the console script, target ≤ 1.5x;
* ``Auto classes`` (``from transformers import AutoConfig, AutoModel``) — what registering with the Auto classes
  eagerly would cost (it imports torch): the floor of an eager ``import hf_dlm``;
* ``hf_dlm + Auto classes`` — ``import hf_dlm`` then the Auto classes: the registrations run; compare with the row
  above for what they add;
* ``import hf_dlm @ REF`` (``--before``, default ``HEAD``) — the package as committed at a git ref, extracted to a
  temporary folder and put first on ``PYTHONPATH``: the start-up before this change.

Writes benchmarks/results/NAME.json (default ``startup``) and NAME.png, and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
TARGET = 1.5
REFERENCE = "import transformers"


def rows(before: str | None, before_path: Path | None) -> dict[str, dict]:
    """Row label → {"argv": command, "env": extra environment}."""
    python = sys.executable
    script = str(Path(python).with_name("hf-dlm"))
    table = {
        "python -c pass": {"argv": [python, "-c", "pass"]},
        REFERENCE: {"argv": [python, "-c", "import transformers"]},
        "import hf_dlm": {"argv": [python, "-c", "import hf_dlm"]},
        "hf-dlm --help": {"argv": [script, "--help"]},
        "hf-dlm generate --help": {"argv": [script, "generate", "--help"]},
        "Auto classes": {"argv": [python, "-c", "from transformers import AutoConfig, AutoModel"]},
        "hf_dlm + Auto classes": {"argv": [python, "-c",
                                           "import hf_dlm; from transformers import AutoConfig, AutoModel"]},
    }
    if before_path is not None:
        table[f"import hf_dlm @ {before}"] = {"argv": [python, "-c", "import hf_dlm"],
                                              "env": {"PYTHONPATH": str(before_path)}}
    return table


def extract(ref: str, into: Path) -> Path | None:
    """``src/hf_dlm`` as committed at ``ref``, extracted under ``into``; ``None`` without git or the ref."""
    archive = into / "src.tar"
    with open(archive, "wb") as out:
        done = subprocess.run(["git", "archive", ref, "src/hf_dlm"], cwd=ROOT, stdout=out, stderr=subprocess.PIPE)
    if done.returncode != 0:
        print(f"--before {ref}: {done.stderr.decode().strip()}; row skipped", file=sys.stderr)
        return None
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def time_once(argv: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.decode()[-2000:]}")
    return seconds


def quartiles(values: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return q[0], q[2]


def measure(table: dict[str, dict], runs: int) -> dict[str, dict]:
    base = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    base.update({"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    labels = list(table)
    times: dict[str, list[float]] = {label: [] for label in labels}
    for round_index in range(runs + 1):  # round 0 warms up and is discarded
        order = labels[round_index % len(labels):] + labels[:round_index % len(labels)]
        for label in order:
            seconds = time_once(table[label]["argv"], {**base, **table[label].get("env", {})})
            if round_index > 0:
                times[label].append(seconds)
        if round_index > 0:
            print(f"round {round_index}/{runs}: " + ", ".join(f"{label} {times[label][-1]:.2f}s" for label in labels),
                  flush=True)
    result = {}
    for label in labels:
        ratios = [t / r for t, r in zip(times[label], times[REFERENCE])]
        low, high = quartiles(ratios)
        result[label] = {"command": " ".join(Path(a).name if i == 0 else a for i, a in enumerate(table[label]["argv"])),
                         "median_seconds": statistics.median(times[label]), "seconds": times[label],
                         "ratio_to_transformers": statistics.median(ratios), "ratio_q1": low, "ratio_q3": high}
    return result


def plot(result: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(result)
    ratios = [result[label]["ratio_to_transformers"] for label in labels]
    errors = [[r - result[label]["ratio_q1"] for label, r in zip(labels, ratios)],
              [result[label]["ratio_q3"] - r for label, r in zip(labels, ratios)]]
    targeted = {"import hf_dlm", "hf-dlm --help", "hf-dlm generate --help"}
    colors = ["tab:green" if label in targeted else "tab:gray" if label != REFERENCE else "tab:blue"
              for label in labels]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(labels) + 1.6))
    y = range(len(labels))
    ax.barh(list(y), ratios, xerr=errors, color=colors, capsize=3)
    for i, label in enumerate(labels):
        ax.text(max(ratios[i], result[label]["ratio_q3"]) + 0.08, i,
                f"{ratios[i]:.2f}x  ({result[label]['median_seconds']:.2f} s)", va="center", fontsize=8)
    ax.axvline(1.0, color="k", ls="-", lw=0.6)
    ax.axvline(TARGET, color="tab:red", ls="--", lw=0.8, label=f"target {TARGET}x (green rows)")
    ax.set_yticks(list(y))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(max(ratios), max(result[label]["ratio_q3"] for label in labels)) * 1.3 + 0.3)
    ax.set_xlabel("wall time / `import transformers` in the same round (median, IQR bars)")
    ax.set_title("start-up time, fresh processes", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9, help="measured rounds (at least 7)")
    parser.add_argument("--before", default="HEAD", help="git ref of the 'before' row ('' to skip it)")
    parser.add_argument("--output", default="startup")
    args = parser.parse_args()
    if args.runs < 7:
        parser.error("--runs must be at least 7")
    with tempfile.TemporaryDirectory() as temporary:
        before_path = extract(args.before, Path(temporary)) if args.before else None
        result = measure(rows(args.before, before_path), args.runs)
    import transformers

    targets = {label: result[label]["ratio_to_transformers"] <= TARGET
               for label in ("import hf_dlm", "hf-dlm --help", "hf-dlm generate --help")}
    payload = {"machine": {"python": platform.python_version(), "transformers": transformers.__version__,
                           "cpus": os.cpu_count(), "load_average": os.getloadavg()},
               "runs": args.runs, "reference": REFERENCE, "target_ratio": TARGET, "meets_target": targets,
               "rows": result}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{args.output}.json"
    path.write_text(json.dumps(payload, indent=2))
    plot(result, RESULTS / f"{args.output}.png")
    print("| row | median s | × import transformers (median) | IQR |")
    print("|---|---|---|---|")
    for label, row in result.items():
        print(f"| {label} | {row['median_seconds']:.2f} | {row['ratio_to_transformers']:.2f} | "
              f"{row['ratio_q1']:.2f}–{row['ratio_q3']:.2f} |")
    print(f"targets (≤ {TARGET}x): {targets}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
