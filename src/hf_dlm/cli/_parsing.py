"""What every verb's parser shares: one-line usage errors, argument types that check range, the common flags.

Nothing here imports torch, transformers or diffusers: ``hf-dlm --help`` answers at once.
"""

from __future__ import annotations

import argparse
import math
import textwrap
from collections.abc import Callable
from typing import Any, NoReturn

SAVED = "folder written by save_pretrained, or a hub id"
SEED_MAX = 2**32 - 1  # numpy's seed range; torch takes it too


class UsageError(Exception):
    """A command line argparse refused; ``main`` prints it as one line and exits 2."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog = prog


class ArgumentParser(argparse.ArgumentParser):
    """An ``argparse`` parser whose errors are one line (raised as :class:`UsageError`) instead of usage + message."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(self.prog, message)


def add_common_flags(parser: argparse.ArgumentParser, default: Any) -> None:
    """``-v/--verbose`` and ``--debug``, accepted before or after the verb (``default=SUPPRESS`` on the verbs, so a
    verb's parser does not reset what the top-level parser read)."""
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="show third-party logs and warnings (INFO level)")
    parser.add_argument("--debug", action="store_true", default=default,
                        help="like --verbose, and print the traceback of an error")


def readable(text: str, width: int = 100) -> str:
    """Help text as paragraphs: prose paragraphs (separated by a blank line) are wrapped at ``width`` columns; lines
    that start with a space (examples, lists) and ``examples:`` headings keep their line breaks."""
    paragraphs = []
    for paragraph in text.split("\n\n"):
        lines = paragraph.split("\n")
        if any(line.startswith(" ") or line.rstrip().endswith(":") for line in lines):
            paragraphs.append(paragraph)
        else:
            paragraphs.append(textwrap.fill(" ".join(line.strip() for line in lines), width=width,
                                            break_on_hyphens=False))
    return "\n\n".join(paragraphs)


def add_verb(commands: Any, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A sub-command whose description (with its examples) keeps its line breaks in ``--help``; prose paragraphs
    are wrapped (:func:`readable`)."""
    if "description" in kwargs:
        kwargs["description"] = readable(kwargs["description"])
    parser = commands.add_parser(name, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)
    add_common_flags(parser, argparse.SUPPRESS)
    return parser


def _number(kind: type, low: float | None = None, high: float | None = None,
            low_open: bool = False) -> Callable[[str], Any]:
    """An argparse ``type`` converting to ``kind`` and checking ``low <= value <= high`` (``low < value`` when
    ``low_open``); its error message says what is allowed."""
    noun = "an integer" if kind is int else "a number"
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        bounds.append(f"<= {high:g}")
    allowed = noun + (" " + " and ".join(bounds) if bounds else "")

    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}")
        if low is not None and (value <= low if low_open else value < low) or high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}")
        return value

    convert.__name__ = allowed  # argparse names the type in some messages
    return convert


positive_int = _number(int, 1)
non_negative_int = _number(int, 0)
seed = _number(int, 0, SEED_MAX)
non_negative_float = _number(float, 0.0)
positive_float = _number(float, 0.0, low_open=True)
fraction = _number(float, 0.0, 1.0)


def non_empty(text: str) -> str:
    """An argparse ``type`` refusing an empty or blank string."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


__all__ = ["ArgumentParser", "SAVED", "UsageError", "add_common_flags", "add_verb", "fraction", "non_empty",
           "non_negative_float", "non_negative_int", "positive_float", "positive_int", "readable", "seed"]
