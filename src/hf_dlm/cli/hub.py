"""``hf-dlm push``, ``hf-dlm card`` and ``hf-dlm add-to-cache``: sharing saved artifacts."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ._errors import CLIError
from ._parsing import add_verb, non_empty, positive_int


def add_parsers(commands: Any) -> None:
    push = add_verb(commands, 
        "push", help="upload a saved model or pipeline folder to the Hub in one commit, card included",
        description="Upload a folder written by save_pretrained (weights, configs, generation config, tokenizer, "
                    "card) to REPO_ID in one commit. The card's snippet is pointed at REPO_ID; a folder without an "
                    "hf-dlm card gets one. HF_ENDPOINT and HF_TOKEN choose the Hub and the account.\n\nexamples:\n"
                    "  hf-dlm push outputs/demo my-org/tiny-llada\n"
                    "  hf-dlm push outputs/demo-2bit my-org/tiny-llada-2bit --private --commit-message \"2-bit\"")
    push.add_argument("folder", help="folder written by save_pretrained")
    push.add_argument("repo_id", help="org/name on the Hub")
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


def check_push(args: argparse.Namespace) -> None:
    from ._loading import check_repo_id

    check_repo_id(args.repo_id, "`repo_id`")
    _check_artifact(args.folder)


def run_push(args: argparse.Namespace) -> int:
    from ..hub import push_to_hub

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
