"""``hf-dlm push``, ``hf-dlm card`` and ``hf-dlm add-to-cache``: sharing saved artifacts."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ._errors import CLIError
from ._parsing import add_verb, non_empty, positive_int

SPACE_ROLES = ("teacher", "student", "quantized", "image")
SPACE_FILES = ("app.py", "requirements.txt", "README.md")


def add_parsers(commands: Any) -> None:
    push = add_verb(commands, 
        "push", help="upload a saved model or pipeline folder to the Hub in one commit, card included",
        description="Upload a folder written by save_pretrained (weights, configs, generation config, tokenizer, "
                    "card) to REPO_ID in one commit. The card's snippet is pointed at REPO_ID; a folder without an "
                    "hf-dlm card gets one. HF_ENDPOINT and HF_TOKEN choose the Hub and the account.\n\nexamples:\n"
                    "  hf-dlm push outputs/demo my-org/tiny-llada\n"
                    "  hf-dlm push outputs/demo-2bit my-org/tiny-llada-2bit --private --commit-message \"2-bit\"\n"
                    "  hf-dlm push --space integrations/space my-org/hf-dlm-demo --teacher my-org/tiny-llada \\\n"
                    "      --quantized my-org/tiny-llada-2bit --image my-org/digits\n\n"
                    "With --space, FOLDER is a Gradio Space folder (app.py, requirements.txt, README.md with the "
                    "Space front matter; integrations/space is hf-dlm's demo) and REPO_ID a Space: the folder, the "
                    "hf_dlm package it imports and a space_config.json naming the models the app loads (hub ids; "
                    "roles not given are left out) are uploaded in one commit.")
    push.add_argument("folder", help="folder written by save_pretrained (with --space: the Space folder)")
    push.add_argument("repo_id", help="org/name on the Hub (with --space: the Space's id)")
    push.add_argument("--space", action="store_true", help="upload FOLDER as a Gradio Space (see above)")
    for role in SPACE_ROLES:
        push.add_argument(f"--{role}", default=None, help=f"with --space: hub id of the app's {role} model")
    push.add_argument("--commit-message", default=None, type=non_empty)
    push.add_argument("--private", action="store_true", help="create the repository as private")
    push.add_argument("--revision", default=None, type=non_empty, help="branch to push to (created if missing)")
    push.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    push.set_defaults(run=run_push, check=check_push)

    card = add_verb(commands, 
        "card", help="write (or refresh) the model card of a saved folder, with measured metrics",
        description="Write FOLDER/README.md: the hf-dlm card of the model or pipeline saved there. Metrics already "
                    "in the folder's card are kept; --benchmark adds a row a benchmarks/ JSON measured on this "
                    "artifact.\n\n"
                    "examples:\n"
                    "  hf-dlm card outputs/demo --repo-id my-org/tiny-llada\n"
                    "  hf-dlm card my-student --benchmark my_results/dimo.json "
                    "--row \"Di[M]O student (lora, fkl)\" --steps 1\n"
                    "  hf-dlm card outputs/demo-2bit --base-model my-org/tiny-llada --template my_card.md")
    card.add_argument("folder", help="folder written by save_pretrained")
    card.add_argument("--repo-id", default=None, help="the hub id the usage snippet loads (default: folder name)")
    card.add_argument("--benchmark", default=None, help="a benchmarks/results JSON file to quote metrics from")
    card.add_argument("--row", default=None, help="the benchmark row (its `model` / `variant` label)")
    card.add_argument("--steps", type=positive_int, default=None, help="the row's steps / nfe, when several rows match")
    card.add_argument("--base-model", default=None, help="hub id of the teacher or full-precision model")
    card.add_argument("--template", default=None, help="a custom Jinja card template")
    card.add_argument("--print", action="store_true", dest="print_card", help="also print the card")
    card.set_defaults(run=run_card, check=check_card)

    cache = add_verb(commands, 
        "add-to-cache", help="put a saved model or pipeline folder into the local Hub cache under a hub id",
        description="Copy a folder written by save_pretrained into the Hub cache so that from_pretrained(REPO_ID) "
                    "loads it with HF_HUB_OFFLINE=1.\n\nexample:\n  hf-dlm add-to-cache outputs/demo my-org/tiny-llada"
                    "\n  HF_HUB_OFFLINE=1 python -c \"import hf_dlm; from transformers import AutoModelForCausalLM; "
                    "AutoModelForCausalLM.from_pretrained('my-org/tiny-llada')\"")
    cache.add_argument("folder", help="folder written by save_pretrained")
    cache.add_argument("repo_id", help="the hub id to load it by, e.g. my-org/tiny-llada")
    cache.add_argument("--revision", default="main", type=non_empty,
                       help="branch name the id resolves to (default: main)")
    cache.add_argument("--cache-dir", default=None, help="Hub cache folder (default: HF_HUB_CACHE)")
    cache.set_defaults(run=run_add_to_cache, check=check_add_to_cache)


def _check_artifact(folder: str) -> None:
    """An existing folder holding a saved model or pipeline (3 when missing, 2 when not an artifact)."""
    from ._loading import check_folder

    check_folder(folder, "`folder`")
    from ..hub import artifact_kind  # after the cheap check: hf_dlm.hub imports huggingface_hub

    artifact_kind(folder)  # ValueError (exit 2) naming what a saved artifact holds


def _check_space_folder(folder: str) -> None:
    """A Gradio Space folder: app.py, requirements.txt and a README.md whose front matter says ``sdk: gradio``."""
    from ._loading import check_folder

    check_folder(folder, "`folder`")
    missing = [name for name in SPACE_FILES if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise CLIError(f"`folder` {folder!r} is not a Space folder: it has no {', '.join(missing)} (a Gradio Space "
                       f"needs {', '.join(SPACE_FILES)}).")
    with open(os.path.join(folder, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    front = readme.split("---", 2)[1] if readme.startswith("---") and readme.count("---") >= 2 else ""
    if "sdk: gradio" not in front:
        raise CLIError(f"`folder` {folder!r}: README.md must start with the Space front matter (---, `sdk: gradio`, "
                       "---).")


def check_push(args: argparse.Namespace) -> None:
    from ._loading import check_repo_id

    check_repo_id(args.repo_id, "`repo_id`")
    given = [role for role in SPACE_ROLES if getattr(args, role) is not None]
    if not args.space:
        if given:
            raise CLIError(f"`--{given[0]}` names a model of the Space app; it needs `--space`.")
        _check_artifact(args.folder)
        return
    if args.revision is not None or args.create_pr:
        raise CLIError("`--space` pushes to the Space's main branch; `--revision` and `--create-pr` are for model "
                       "repositories.")
    for role in given:
        check_repo_id(getattr(args, role), f"`--{role}`")
    _check_space_folder(args.folder)


def space_operations(folder: str, sources: dict[str, str | None]) -> list:
    """The files of one Space commit: ``folder`` (no caches), the ``hf_dlm`` package the app imports (as
    ``hf_dlm/``, beside app.py) and ``space_config.json`` with ``sources`` (role -> hub id or null)."""
    import json
    from pathlib import Path

    from huggingface_hub import CommitOperationAdd

    import hf_dlm

    def files(root: Path) -> list[Path]:
        return sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                      and p.suffix not in (".pyc", ".pyo") and not p.name.startswith("."))

    root, package = Path(folder), Path(hf_dlm.__file__).parent
    operations = [CommitOperationAdd(path_in_repo=p.relative_to(root).as_posix(), path_or_fileobj=str(p))
                  for p in files(root) if p.name != "space_config.json"]
    operations += [CommitOperationAdd(path_in_repo="hf_dlm/" + p.relative_to(package).as_posix(),
                                      path_or_fileobj=str(p)) for p in files(package)]
    config = json.dumps({role: sources.get(role) for role in SPACE_ROLES}, indent=2).encode()
    operations.append(CommitOperationAdd(path_in_repo="space_config.json", path_or_fileobj=config))
    return operations


def push_space(folder: str, repo_id: str, sources: dict[str, str | None], private: bool | None = None,
               commit_message: str | None = None) -> Any:
    """Create (or reuse) the Gradio Space ``repo_id`` and upload the app in one commit; returns the commit info."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    return api.create_commit(repo_id, space_operations(folder, sources), repo_type="space",
                             commit_message=commit_message or "hf-dlm demo app")


def run_push(args: argparse.Namespace) -> int:
    from ..hub import push_to_hub

    if args.space:
        sources = {role: getattr(args, role) for role in SPACE_ROLES}
        info = push_space(args.folder, args.repo_id, sources, private=args.private or None,
                          commit_message=args.commit_message)
        print(info.commit_url)
        return 0

    info = push_to_hub(args.folder, args.repo_id, commit_message=args.commit_message, private=args.private or None,
                       revision=args.revision, create_pr=args.create_pr)
    print(info.commit_url)
    return 0


def check_card(args: argparse.Namespace) -> None:
    from ._loading import check_file, check_repo_id

    if (args.benchmark is None) != (args.row is None):
        raise CLIError("`--benchmark` and `--row` go together.")
    if args.steps is not None and args.benchmark is None:
        raise CLIError("`--steps` picks a row of `--benchmark`; give `--benchmark` and `--row` with it.")
    for value, what in ((args.repo_id, "`--repo-id`"), (args.base_model, "`--base-model`")):
        if value is not None:
            check_repo_id(value, what)
    for value, what in ((args.benchmark, "`--benchmark`"), (args.template, "`--template`")):
        if value is not None:
            check_file(value, what)
    _check_artifact(args.folder)


def run_card(args: argparse.Namespace) -> int:
    from huggingface_hub import ModelCard

    from ..hub import eval_results_from_benchmark, load_artifact, set_card_metadata, write_model_card
    from ..hub.cards import LIBRARY_NAME

    results = []
    if args.benchmark is not None:  # checked before the (possibly large) artifact is loaded
        results = eval_results_from_benchmark(args.benchmark, args.row, steps=args.steps)
    existing = os.path.join(args.folder, "README.md")
    kept = []
    if os.path.isfile(existing):
        card = ModelCard.load(existing)
        if card.data.library_name == LIBRARY_NAME:
            kept = card.data.eval_results or []
    artifact = load_artifact(args.folder)
    set_card_metadata(artifact, base_model=args.base_model, eval_results=[*kept, *results])
    path = write_model_card(artifact, args.folder, repo_id=args.repo_id, template=args.template)
    if args.print_card:
        print(open(path).read())
    print(path)
    return 0


def check_add_to_cache(args: argparse.Namespace) -> None:
    from ._loading import check_output_folder, check_repo_id

    check_repo_id(args.repo_id, "`repo_id`")
    if args.cache_dir is not None:
        check_output_folder(args.cache_dir, "`--cache-dir`")
    _check_artifact(args.folder)


def run_add_to_cache(args: argparse.Namespace) -> int:
    from ..hub import add_to_cache

    print(add_to_cache(args.folder, args.repo_id, revision=args.revision, cache_dir=args.cache_dir))
    return 0
