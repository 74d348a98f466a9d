"""``hf-dlm demo``: train, save, reload, generate and score two tiny models end to end."""

from __future__ import annotations

import argparse
from typing import Any

from ._parsing import add_verb, positive_float, positive_int, seed


def add_parser(commands: Any) -> None:
    demo = add_verb(commands, "demo", help="train a tiny LLaDA on the oracle language and a digits text-to-image "
                    "model; save, reload, generate, score",
                    description="Train, save, reload, generate and score two tiny models end to end.\n\n"
                    "example:\n  hf-dlm demo --max-steps 300 --no-images")
    demo.add_argument("--output-dir", default="outputs/demo",
                      help="folder of the text model (the image model goes to <output-dir>-digits)")
    demo.add_argument("--max-steps", type=positive_int, default=600, help="training steps of the text model")
    demo.add_argument("--max-seconds", type=positive_float, default=150.0,
                      help="stop text training after this wall time")
    demo.add_argument("--batch-size", type=positive_int, default=128, help="training batch of the text model")
    demo.add_argument("--image-steps", type=positive_int, default=650, help="training steps of the digits image model")
    demo.add_argument("--no-images", action="store_true", help="skip the text-to-image part")
    demo.add_argument("--seed", type=seed, default=0)
    demo.set_defaults(run=run, check=check)


def check(args: argparse.Namespace) -> None:
    from ._loading import check_output_folder

    check_output_folder(args.output_dir, "`--output-dir`")
    if not args.no_images:
        check_output_folder(args.output_dir + "-digits", "`--output-dir`-digits")


def run(args: argparse.Namespace) -> int:
    from ..recipes.demo import run_demo, run_image_demo

    run_demo(output_dir=args.output_dir, max_steps=args.max_steps, max_seconds=args.max_seconds,
             batch_size=args.batch_size, seed=args.seed, report=print)
    if not args.no_images:
        run_image_demo(output_dir=args.output_dir + "-digits", max_steps=args.image_steps, seed=args.seed,
                       report=print)
    return 0
