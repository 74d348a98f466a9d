"""The embedded digits text-to-image default: train it, then measure class consistency, FD-digits and k-NN
precision/recall at 1, 4 and 16 steps, without and with classifier-free guidance, and save a sample grid.

    python benchmarks/digits_text_to_image.py        # ~4 minutes on 2 cores

Writes benchmarks/results/digits_text_to_image.json, digits_grid.png and prints a markdown table. The "data" row
scores the held-out split's one half against the other.
"""

from __future__ import annotations

import argparse
import os
import sys


sys.path.insert(0, os.path.dirname(__file__))
import hf_dlm  # noqa: E402,F401
from _common import RESULTS, machine, markdown_table, write_json  # noqa: E402
from hf_dlm.evaluation.digits import DigitsSplit, image_metrics, load_digits_task  # noqa: E402
from hf_dlm.recipes.digits import (build_digits_pipeline, evaluate_digits_pipeline, save_digit_grid,  # noqa: E402
                                     train_digits_pipeline)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-steps", type=int, default=900)
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--save-pipeline", default=None, help="also save the trained pipeline here")
    args = parser.parse_args()
    pipe = build_digits_pipeline()
    info = train_digits_pipeline(pipe, max_steps=args.max_steps)
    _, held = load_digits_task()
    half = DigitsSplit(held.images[1::2], held.labels[1::2], ())
    data = image_metrics(held.images[::2], held.labels[::2], reference=half).__dict__
    results = {"data": data}
    for guidance in (1.0, 3.0):
        for steps, metrics in evaluate_digits_pipeline(pipe, (1, 4, 16), args.per_class, guidance).items():
            results[f"steps{steps}_cfg{guidance:g}"] = {"steps": steps, "guidance_scale": guidance, **metrics}
    grid = save_digit_grid(pipe, RESULTS / "digits_grid.png", num_inference_steps=16, guidance_scale=1.0)
    params = {name: sum(p.numel() for p in getattr(pipe, name).parameters()) for name in ("transformer", "text_encoder")}
    write_json("digits_text_to_image", {"benchmark": "digits_text_to_image", "train": info, "parameters": params,
                                        "per_class": args.per_class, "machine": machine(), "results": results})
    if args.save_pipeline:
        pipe.save_pretrained(args.save_pipeline)
    rows = [["held-out data (half vs half)", "—", "—", data["class_consistency"], data["fd_digits"],
             data["precision"], data["recall"]]]
    rows += [["MaskGIT digits", r["steps"], r["guidance_scale"], r["class_consistency"], r["fd_digits"],
              r["precision"], r["recall"]] for k, r in results.items() if k != "data"]
    print(f"trained {info['steps']} steps in {info['seconds']:.0f} s; grid: {grid}")
    print(markdown_table(["model", "steps", "guidance", "class consistency", "FD-digits", "precision", "recall"], rows))


if __name__ == "__main__":
    main()
