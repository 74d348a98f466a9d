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
    cache = commands.add_parser(
        "add-to-cache", help="put a saved model or pipeline folder into the local Hub cache under a hub id",
        description="Copy a folder written by save_pretrained into the Hub cache so that from_pretrained(REPO_ID) "
                    "loads it with HF_HUB_OFFLINE=1.\n\nexample:\n  hf-dlm add-to-cache outputs/demo my-org/tiny-llada"
                    "\n  HF_HUB_OFFLINE=1 python -c \"import hf_dlm; from transformers import AutoModelForCausalLM; "
                    "AutoModelForCausalLM.from_pretrained('my-org/tiny-llada')\"",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    cache.add_argument("folder", help="a folder written by save_pretrained")
    cache.add_argument("repo_id", help="the hub id to load it by, e.g. my-org/tiny-llada")
    cache.add_argument("--revision", default="main", help="branch name the id resolves to (default: main)")
    cache.add_argument("--cache-dir", default=None, help="Hub cache folder (default: HF_HUB_CACHE)")
    args = parser.parse_args(argv)
    if args.command == "add-to-cache":
        from .hub import add_to_cache

        try:
            snapshot = add_to_cache(args.folder, args.repo_id, revision=args.revision, cache_dir=args.cache_dir)
        except ValueError as error:
            print(f"hf-dlm add-to-cache: {error}", file=sys.stderr)
            return 2
        print(snapshot)
        return 0
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
