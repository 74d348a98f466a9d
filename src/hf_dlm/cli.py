"""The ``hf-dlm`` command."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hf-dlm", description="Masked diffusion models in the Hugging Face stack.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="train a tiny LLaDA on the oracle language and a digits text-to-image model; save, reload, "
                                 "generate, score")
    demo.add_argument("--output-dir", default="outputs/demo")
    demo.add_argument("--max-steps", type=int, default=600, help="training steps of the text model")
    demo.add_argument("--max-seconds", type=float, default=150.0, help="stop text training after this wall time")
    demo.add_argument("--image-steps", type=int, default=650, help="training steps of the digits image model")
    demo.add_argument("--no-images", action="store_true", help="skip the text-to-image part")
    demo.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "demo":
        from ._demo import run_demo, run_image_demo

        run_demo(output_dir=args.output_dir, max_steps=args.max_steps, max_seconds=args.max_seconds, seed=args.seed,
                 report=print)
        if not args.no_images:
            run_image_demo(output_dir=args.output_dir + "-digits", max_steps=args.image_steps, seed=args.seed,
                           report=print)
    return 0


if __name__ == "__main__":
    sys.exit(main())
