"""Every ```python block of README.md and docs/*.md runs as written.

Each page runs in a fresh namespace, its blocks in order sharing it, with the working directory a temporary folder
that holds tiny stand-ins for what `make demo` leaves in `outputs/` (tests/utils/docs_fixtures.py). A block whose fence
reads ```python no-run (a download of an 8B checkpoint, a push to the Hub) is not run: it is reported as a skipped
test of its own, so the count of such blocks shows in the summary. The pages also keep the project's rules: the
README stays short with its two set-up commands at the top, and no page points outside the repository."""

from __future__ import annotations

import os
import re
import shutil
import textwrap
from pathlib import Path

import pytest
import torch

from tests.utils.docs_fixtures import prepare_outputs

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`\n]*)$")


def code_blocks(path: Path) -> list[tuple[int, str, str]]:
    """(first line number, info string, code) of every fenced block of a markdown file."""
    blocks, lines, i = [], path.read_text(encoding="utf-8").splitlines(), 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, info, start = opening["fence"], opening["info"].strip(), i + 1
        i += 1
        while i < len(lines) and not (lines[i].strip().startswith(fence) and not lines[i].strip().strip(fence[0])):
            i += 1
        blocks.append((start + 1, info, textwrap.dedent("\n".join(lines[start:i]))))
        i += 1
    return blocks


def python_blocks(path: Path) -> list[tuple[int, str, str]]:
    return [b for b in code_blocks(path) if b[1].split()[:1] == ["python"]]


def _runs(info: str) -> bool:
    return "no-run" not in info.split()[1:]


def _page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


RUN_PAGES = [p for p in PAGES if any(_runs(info) for _, info, _ in python_blocks(p))]
NO_RUN = [(p, line) for p in PAGES for line, info, _ in python_blocks(p) if not _runs(info)]


@pytest.fixture(scope="module")
def built_outputs(tmp_path_factory) -> Path:
    return prepare_outputs(tmp_path_factory.mktemp("docs-artifacts"))


@pytest.mark.parametrize("page", RUN_PAGES, ids=_page_id)
def test_python_blocks_run(page, built_outputs, tmp_path, monkeypatch):
    shutil.copytree(built_outputs / "outputs", tmp_path / "outputs")
    (tmp_path / "integrations").symlink_to(ROOT / "integrations")  # what a checkout has (the lm-eval tasks)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    namespace: dict = {"__name__": "__docs__"}
    for line, info, code in python_blocks(page):
        if not _runs(info):
            continue
        try:
            exec(compile(code, f"{_page_id(page)}:{line}", "exec"), namespace)  # noqa: S102
        except Exception as error:
            raise AssertionError(f"the ```python block at {_page_id(page)}:{line} fails: "
                                 f"{type(error).__name__}: {error}") from error


@pytest.mark.parametrize("page, line", NO_RUN, ids=[f"{_page_id(p)}:{n}" for p, n in NO_RUN])
def test_no_run_blocks_are_reported(page, line):
    pytest.skip(f"```python no-run block at {_page_id(page)}:{line} (needs a download or the Hub)")


def test_no_run_blocks_are_few():
    assert len(NO_RUN) <= 6, [f"{_page_id(p)}:{n}" for p, n in NO_RUN]


def test_readme_is_short_and_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    first = next(code for _, info, code in code_blocks(ROOT / "README.md"))
    commands = [line.split("#")[0].strip() for line in first.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()  # CI runs the README's test command


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_no_reference_outside_the_repository(page):
    text = page.read_text(encoding="utf-8")
    for pattern in (r"\.\./shared", r"\bseeds?/", r"\bseed \d{3}\b", r"the seed's", r"design\.md", r"prototype notes"):
        assert not re.search(pattern, text), f"{_page_id(page)} refers to a file outside the repository: {pattern}"


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_relative_links_resolve(page):
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{_page_id(page)} links to {target}, which does not exist"
        assert os.path.commonpath([path, ROOT]) == str(ROOT), f"{_page_id(page)} links outside the repository"
