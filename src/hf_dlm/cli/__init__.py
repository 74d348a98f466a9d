"""The ``hf-dlm`` command: thin verbs over the library.

Exit codes: 0 success; 2 bad input (arguments, config files, folders that are not what the verb needs); 3 a model,
pipeline or file that cannot be found; 4 the Hub refused a request; 1 anything unexpected (with a traceback).
"""

from __future__ import annotations

import argparse
import logging
import sys

from . import distill, generate, hub, images, quantize
from ._parsing import add_verb

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_NOT_FOUND, EXIT_HUB = 0, 1, 2, 3, 4

EPILOG = """examples:
  hf-dlm demo
  hf-dlm generate outputs/demo --prompt "the cat" --max-new-tokens 32 --steps 16
  hf-dlm generate-image outputs/demo-digits --prompt "a handwritten seven" --steps 4 --output seven.png
  hf-dlm distill examples/dimo_text.json
  hf-dlm quantize outputs/demo outputs/demo-2bit --calibration corpus.txt --block-size 32
  hf-dlm card outputs/demo-2bit --repo-id my-org/tiny-llada-2bit
  hf-dlm push outputs/demo-2bit my-org/tiny-llada-2bit
  hf-dlm add-to-cache outputs/demo my-org/tiny-llada

exit codes: 0 ok, 1 unexpected error, 2 bad input, 3 not found, 4 Hub error"""


def _demo_parser(commands) -> None:
    demo = add_verb(commands, "demo", help="train a tiny LLaDA on the oracle language and a digits text-to-image "
                               "model; save, reload, generate, score",
                               description="Train, save, reload, generate and score two tiny models end to end.\n\n"
                               "example:\n  hf-dlm demo --max-steps 300 --no-images")
    demo.add_argument("--output-dir", default="outputs/demo")
    demo.add_argument("--max-steps", type=int, default=600, help="training steps of the text model")
    demo.add_argument("--max-seconds", type=float, default=150.0, help="stop text training after this wall time")
    demo.add_argument("--batch-size", type=int, default=128, help="training batch of the text model")
    demo.add_argument("--image-steps", type=int, default=650, help="training steps of the digits image model")
    demo.add_argument("--no-images", action="store_true", help="skip the text-to-image part")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from .._demo import run_demo, run_image_demo

    if args.max_steps < 1 or args.batch_size < 1 or args.image_steps < 1:
        raise ValueError("`--max-steps`, `--batch-size` and `--image-steps` must be >= 1.")
    run_demo(output_dir=args.output_dir, max_steps=args.max_steps, max_seconds=args.max_seconds,
             batch_size=args.batch_size, seed=args.seed, report=print)
    if not args.no_images:
        run_image_demo(output_dir=args.output_dir + "-digits", max_steps=args.image_steps, seed=args.seed,
                       report=print)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-dlm", description="Masked diffusion models in the Hugging Face stack.",
                                     epilog=EPILOG)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _demo_parser(commands)
    generate.add_parser(commands)
    images.add_parser(commands)
    distill.add_parser(commands)
    quantize.add_parser(commands)
    hub.add_parsers(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``hf-dlm`` command; returns its exit code."""
    args = build_parser().parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.INFO)
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_info()
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return args.run(args)
    except OSError as error:
        missing = (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError)
        if isinstance(error, HfHubHTTPError) and not isinstance(error, missing):
            print(f"hf-dlm {args.command}: the Hub refused the request: {error}", file=sys.stderr)
            return EXIT_HUB
        print(f"hf-dlm {args.command}: {error}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except ValueError as error:
        print(f"hf-dlm {args.command}: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
