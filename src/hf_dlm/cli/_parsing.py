"""What every verb's parser shares."""

from __future__ import annotations

import argparse

SAVED = "folder written by save_pretrained, or a hub id"


def add_verb(commands, name: str, **kwargs) -> argparse.ArgumentParser:
    """A sub-command whose description (with its examples) keeps its line breaks in ``--help``."""
    return commands.add_parser(name, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)
