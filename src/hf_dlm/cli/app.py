"""``hf-dlm app``: the Gradio demo (``integrations/space/app.py``) served on this machine."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from ._errors import EXIT_NOT_FOUND, CLIError
from ._parsing import SAVED, add_verb, non_empty, positive_int

# the checkout this package was installed from in editable mode: <root>/src/hf_dlm/cli/app.py
CHECKOUT_SPACE = Path(__file__).resolve().parents[3] / "integrations" / "space"
ROLES = ("teacher", "student", "quantized", "image")
DEFAULTS = {"teacher": "outputs/demo", "student": "outputs/dimo-text/generator", "quantized": "outputs/demo-2bit",
            "image": "outputs/demo-digits"}
EXAMPLES = """examples:
  hf-dlm app                                    # the models `make demo` wrote, on http://127.0.0.1:7860
  hf-dlm app --port 8000 --image outputs/dimo-digits
  hf-dlm app --teacher my-org/tiny-llada --quantized my-org/tiny-llada-2bit --student none

Models are loaded when a tab first needs them (a hub id is downloaded then, never at start); a missing one is
reported in the page. `none` leaves a role out. The app needs the `app` extra: pip install -e ".[app]"."""


def add_parser(commands: Any) -> None:
    parser = add_verb(commands, "app", help="serve the Gradio demo (text canvas, side by side, images) locally",
                      description="Serve the hf-dlm Gradio app of integrations/space on HOST:PORT: the text canvas "
                      "denoising step by step, the teacher / one-step student / 2-bit model side by side, and "
                      "MaskGIT images unmasking.\n\n" + EXAMPLES)
    for role in ROLES:
        parser.add_argument(f"--{role}", default=None, type=non_empty,
                            help=f"{SAVED} for the {role} (default {DEFAULTS[role]}; `none` to leave it out)")
    parser.add_argument("--host", default="127.0.0.1", type=non_empty, help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=positive_int, default=7860, help="port (default 7860; 0 is not allowed)")
    parser.add_argument("--app-dir", default=None,
                        help=f"the Space folder holding app.py (default: the checkout's {CHECKOUT_SPACE})")
    parser.set_defaults(run=run, check=check)


def space_folder(value: str | None) -> Path:
    """The folder holding the Space's ``app.py``: ``value``, or the checkout's ``integrations/space``."""
    folder = Path(value) if value is not None else CHECKOUT_SPACE
    if not (folder / "app.py").is_file():
        where = "`--app-dir`" if value is not None else "this installation's checkout"
        raise CLIError(f"{where}: no app.py in {str(folder)!r}; `hf-dlm app` runs the Space app of an hf-dlm "
                       "checkout (integrations/space) — pass `--app-dir` pointing at one.", EXIT_NOT_FOUND)
    return folder


def load_space_module(folder: str | os.PathLike) -> ModuleType:
    """Import ``folder/app.py`` as the module ``hf_dlm_space_app`` (registered in ``sys.modules`` so that its
    dataclasses resolve)."""
    path = Path(folder) / "app.py"
    spec = importlib.util.spec_from_file_location("hf_dlm_space_app", path)
    if spec is None or spec.loader is None:
        raise CLIError(f"cannot import {str(path)!r} as a module.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(spec.name, None)
        raise
    return module


def check(args: argparse.Namespace) -> None:
    """The port range, the app folder and the ``app`` extra, before anything is loaded."""
    if not 1 <= args.port <= 65535:
        raise CLIError(f"`--port` must be between 1 and 65535, got {args.port}.")
    args.app_folder = space_folder(args.app_dir)
    if importlib.util.find_spec("gradio") is None:
        raise CLIError("`hf-dlm app` needs gradio, which is not installed: pip install -e \".[app]\" (or "
                       "pip install gradio).")


def run(args: argparse.Namespace) -> int:
    module = load_space_module(args.app_folder)
    overrides = {role: (None if str(getattr(args, role)).lower() == "none" else getattr(args, role))
                 for role in ROLES if getattr(args, role) is not None}
    sources = module.AppSources.from_environment(args.app_folder)
    for role, value in overrides.items():
        setattr(sources, role, value)
    demo = module.build_demo(sources)
    print(f"hf-dlm app on http://{args.host}:{args.port} (Ctrl+C stops it)", flush=True)
    module.launch(demo, host=args.host, port=args.port, block=True, quiet=True)
    return 0
