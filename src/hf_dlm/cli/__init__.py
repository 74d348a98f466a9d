"""The ``hf-dlm`` command: thin verbs over the library, one module per verb.

Exit codes: 0 success; 2 bad input (arguments, config files, folders that are not what the verb needs); 3 a folder,
file, model or hub id that cannot be found; 4 the Hub refused the request or could not be reached; 1 anything else.
An error is one line on stderr (``hf-dlm <verb>: <what is wrong>``) and nothing else: third-party logs, warnings and
progress bars are silenced unless ``--verbose``; the traceback is printed only with ``--debug``.

Each verb checks its arguments (types, ranges, paths) before it loads anything. Neither this module nor the verb
modules import torch, transformers or diffusers at import time (the verbs import the library inside their
functions), so ``hf-dlm --help`` and every verb's ``--help`` answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Iterator
from typing import Any

from . import app, demo, distill, evaluate, generate, hub, images, quantize
from ._errors import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_HUB, EXIT_NOT_FOUND, EXIT_OK, classify, one_line, report
from ._parsing import ArgumentParser, UsageError, add_common_flags

EPILOG = """examples:
  hf-dlm demo
  hf-dlm generate outputs/demo --prompt "the cat" --max-new-tokens 32 --steps 16
  hf-dlm generate-image outputs/demo-digits --prompt "a handwritten seven" --steps 4 --output seven.png
  hf-dlm distill examples/dimo_text.json
  hf-dlm quantize outputs/demo outputs/demo-2bit --calibration corpus.txt --block-size 32
  hf-dlm eval outputs/demo --tasks oracle_mc --include-path integrations/lm_eval/tasks --limit 20 --card
  hf-dlm card outputs/demo-2bit --repo-id my-org/tiny-llada-2bit
  hf-dlm push outputs/demo-2bit my-org/tiny-llada-2bit
  hf-dlm add-to-cache outputs/demo my-org/tiny-llada
  hf-dlm app                                   # the Gradio demo on http://127.0.0.1:7860
  hf-dlm push --space integrations/space my-org/hf-dlm-demo --teacher my-org/tiny-llada

exit codes: 0 ok, 1 unexpected error, 2 bad input, 3 not found, 4 Hub error (refused or unreachable)
errors are one line on stderr; --verbose shows third-party logs, --debug also the traceback"""

# third-party loggers silenced (ERROR) unless --verbose, and the environment variables that set the level of the
# libraries that configure their own loggers when first imported
QUIET_LOGGERS = ("transformers", "diffusers", "huggingface_hub", "accelerate", "peft", "torch", "datasets", "httpx",
                 "httpx2", "httpcore", "urllib3", "filelock", "PIL", "matplotlib", "lm_eval", "evaluate")
VERBOSITY_VARIABLES = {"transformers": "TRANSFORMERS_VERBOSITY", "diffusers": "DIFFUSERS_VERBOSITY",
                       "huggingface_hub": "HF_HUB_VERBOSITY"}
QUIET_ENVIRONMENT = {"TRANSFORMERS_VERBOSITY": "error", "DIFFUSERS_VERBOSITY": "error", "HF_HUB_VERBOSITY": "error",
                     "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="hf-dlm", description="Masked diffusion models in the Hugging Face stack.",
                            epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser, False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo.add_parser(commands)
    generate.add_parser(commands)
    images.add_parser(commands)
    distill.add_parser(commands)
    quantize.add_parser(commands)
    evaluate.add_parser(commands)
    hub.add_parsers(commands)
    app.add_parser(commands)
    return parser


def _level(variable: str | None) -> int:
    """The level a library picks from its verbosity variable when first imported (WARNING when unset)."""
    value = os.environ.get(variable, "") if variable else ""
    return getattr(logging, value.upper(), logging.WARNING) if value else logging.WARNING


@contextlib.contextmanager
def _third_party_quiet(prog: str) -> Iterator[None]:
    """Third-party loggers at ERROR, their warnings and download/loading progress bars off; hf-dlm's own warnings
    stay, one line each. Everything is restored on exit (``main`` may run inside a larger program or a test)."""
    saved_environment = {name: os.environ.get(name) for name in QUIET_ENVIRONMENT}
    imported = {name: name in sys.modules for name in QUIET_LOGGERS}
    levels = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    os.environ.update(QUIET_ENVIRONMENT)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    transformers_logging = sys.modules.get("transformers.utils.logging")
    bars_were_on = transformers_logging is not None and transformers_logging.is_progress_bar_enabled()
    if bars_were_on:
        transformers_logging.disable_progress_bar()
    show = warnings.showwarning

    def one_line_warning(message: Any, category: type, filename: str, lineno: int, file: Any = None,
                         line: Any = None) -> None:
        print(f"{prog}: warning: {one_line(str(message))}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.filterwarnings("default", module=r"hf_dlm(\.|$)")
            warnings.showwarning = one_line_warning
            yield
    finally:
        warnings.showwarning = show
        for name, value in saved_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for name in QUIET_LOGGERS:
            if name in VERBOSITY_VARIABLES and not imported[name] and name in sys.modules:
                level = _level(VERBOSITY_VARIABLES[name])  # configured during the call: what it would have had
            else:
                level = levels[name]
            logging.getLogger(name).setLevel(level)
        if bars_were_on:
            transformers_logging.enable_progress_bar()


@contextlib.contextmanager
def _verbose(debug: bool) -> Iterator[None]:
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO)
    saved = os.environ.get("TRANSFORMERS_VERBOSITY")
    os.environ["TRANSFORMERS_VERBOSITY"] = "info"
    if "transformers.utils.logging" in sys.modules:
        sys.modules["transformers.utils.logging"].set_verbosity_info()
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TRANSFORMERS_VERBOSITY", None)
        else:
            os.environ["TRANSFORMERS_VERBOSITY"] = saved


def main(argv: list[str] | None = None) -> int:
    """Run the ``hf-dlm`` command; returns its exit code (``--help`` exits through ``SystemExit(0)``)."""
    try:
        args = build_parser().parse_args(argv)
    except UsageError as error:
        report(error.prog, one_line(f"{error} (see `{error.prog} --help`)"))
        return EXIT_BAD_INPUT
    prog = f"hf-dlm {args.command}"
    context = _verbose(args.debug) if args.verbose or args.debug else _third_party_quiet(prog)
    with context:
        try:
            if getattr(args, "check", None) is not None:
                args.check(args)
            return args.run(args)
        except KeyboardInterrupt:
            report(prog, "interrupted")
            return EXIT_FAILURE
        except Exception as error:  # every error ends as one line with its exit code
            code, message = classify(error)
            if args.debug:
                traceback.print_exc()
            report(prog, message)
            return code


__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILURE", "EXIT_HUB", "EXIT_NOT_FOUND", "EXIT_OK", "build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
