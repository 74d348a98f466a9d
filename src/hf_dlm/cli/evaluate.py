"""``hf-dlm eval``: lm-evaluation-harness tasks on a saved text model, scored by the ``hf-dlm`` harness backend."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib.util
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._errors import EXIT_FAILURE, CLIError
from ._parsing import SAVED, SEED_MAX, add_verb, non_empty, non_negative_int, positive_int

EXAMPLES = """examples:
  hf-dlm eval outputs/demo --tasks oracle_mc,oracle_ppl --include-path integrations/lm_eval/tasks --limit 20
  hf-dlm eval GSAI-ML/LLaDA-8B-Base --tasks hellaswag,arc_easy --model-args mc_num=32,batch_size=8 --device cuda
  hf-dlm eval outputs/demo --tasks gsm8k --gen-kwargs temperature=0 --model-args steps=64,block_length=32
  hf-dlm eval outputs/demo --tasks oracle_mc --output-path results/ --log-samples --card   # scores on the card"""

INSTALL = 'pip install "hf-dlm[eval]"'
# DiffusionLM's constructor arguments but `pretrained` (the positional) and `max_batch_size` (refused), written out
# so that --help and the checks import nothing (a test keeps them equal)
MODEL_ARGS = ("tokenizer", "mc_num", "batch_size", "cfg", "is_check_greedy", "steps", "block_length", "threshold",
              "remasking", "factor", "cache", "compile", "max_length", "max_gen_toks", "dtype", "device", "seed",
              "show_progress")
HARNESS_SEEDS = (0, 1234, 1234, 1234)  # the harness's python, numpy, torch and few-shot seeds


def limit(text: str) -> int | float:
    """``--limit``: a count (an integer >= 1) or a fraction of each task (a number strictly between 0 and 1)."""
    message = f"must be an integer >= 1 (documents per task) or a number between 0 and 1 (a fraction), got {text!r}"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(message) from None
    if 0 < value < 1:
        return value
    if value >= 1 and value.is_integer():
        return int(value)
    raise argparse.ArgumentTypeError(message)


def seeds(text: str) -> tuple[int | None, ...]:
    """``--seed``: one integer for the harness's four seeds (python, numpy, torch, few-shot), or four comma-separated
    values where ``None`` leaves that one unset."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) not in (1, 4):
        raise argparse.ArgumentTypeError(f"must be one integer or four comma-separated values, got {text!r}")
    values: list[int | None] = []
    for part in parts:
        if part.lower() == "none" and len(parts) == 4:
            values.append(None)
            continue
        if not part.isdigit() or int(part) > SEED_MAX:
            raise argparse.ArgumentTypeError(f"must hold integers between 0 and {SEED_MAX} (or None of four), "
                                             f"got {text!r}")
        values.append(int(part))
    return tuple(values * 4 if len(values) == 1 else values)


def add_parser(commands: Any) -> None:
    parser = add_verb(commands, "eval", help="score a saved text model on lm-evaluation-harness tasks",
                      description="Evaluate an hf-dlm text model with lm-evaluation-harness (its `hf-dlm` model: "
                      "ELBO likelihoods, the model's own sampler for generation), print the harness's table, write "
                      "its results JSON (--output-path) and record the scores on the model card (--card). Needs "
                      f"`{INSTALL}`.\n\n" + EXAMPLES)
    parser.add_argument("model", help=SAVED)
    add = parser.add_argument
    add("--tasks", required=True, type=non_empty, help="comma-separated task names (globs allowed) or task YAMLs")
    add("--num-fewshot", "--num_fewshot", type=non_negative_int, default=None, metavar="N")
    add("--limit", type=limit, default=None, help="documents per task (or a fraction); for testing only")
    add("--output-path", "--output_path", default=None, metavar="PATH",
        help="folder (or .json file) for the results JSON, as the harness writes it")
    add("--model-args", "--model_args", default=None, metavar="K=V,...",
        help=f"settings of the hf-dlm harness model: {', '.join(MODEL_ARGS)}")
    add("--batch-size", "--batch_size", type=positive_int, default=None, metavar="N",
        help="Monte-Carlo samples per forward pass (must divide mc_num)")
    add("--device", type=non_empty, default=None, help="cuda, cuda:0, cpu ... (default: cuda when available)")
    add("--seed", type=seeds, default=None, metavar="N|P,N,T,F",
        help="the harness's seeds (python, numpy, torch, few-shot); the torch one also seeds the model's masks")
    add("--include-path", "--include_path", action="append", default=None, metavar="FOLDER",
        help="a folder of task YAMLs (repeatable)")
    add("--apply-chat-template", "--apply_chat_template", nargs="?", const=True, default=False, metavar="TEMPLATE",
        help="render prompts with the tokenizer's chat template")
    add("--gen-kwargs", "--gen_kwargs", default=None, metavar="K=V,...",
        help="generation settings for generation tasks, e.g. temperature=0,max_gen_toks=64")
    add("--log-samples", "--log_samples", action="store_true", help="also write every sample (needs --output-path)")
    add("--card", action="store_true", help="record the scores in the model folder's README.md (model-index)")
    parser.set_defaults(run=run, check=check)


def parse_pairs(text: str, what: str) -> list[str]:
    """The keys of a harness ``key=value,key=value`` string; refuses an item without ``=`` (exit 2)."""
    keys = []
    for item in (item for item in text.split(",") if item.strip()):
        key, equals, _ = item.partition("=")
        if not equals or not key.strip():
            raise CLIError(f"`{what}` must be key=value pairs separated by commas, got {item.strip()!r}.")
        keys.append(key.strip())
    return keys


def _check_model_args(args: argparse.Namespace) -> None:
    keys = parse_pairs(args.model_args, "--model-args") if args.model_args else []
    if "pretrained" in keys:
        raise CLIError("`--model-args` must not give `pretrained`: the positional `model` is the model to evaluate.")
    unknown = [key for key in keys if key not in MODEL_ARGS]
    if unknown:
        raise CLIError(f"`--model-args`: unknown key {unknown[0]!r}; allowed: {', '.join(MODEL_ARGS)}.")
    for name in ("batch_size", "device"):
        if name in keys and getattr(args, name) is not None:
            raise CLIError(f"give `{name}` with `--{name.replace('_', '-')}` or in `--model-args`, not both.")


def check(args: argparse.Namespace) -> None:
    """Everything that can be checked before the harness and the model are imported."""
    from ._loading import (MODEL_FILES, _looks_like_path, check_file, check_folder, check_output_file,
                           check_output_folder, check_saved, is_repo_id)

    if importlib.util.find_spec("lm_eval") is None:
        raise CLIError(f"`hf-dlm eval` needs lm-evaluation-harness, which is not installed: {INSTALL}")
    args.task_list = list(dict.fromkeys(name.strip() for name in args.tasks.split(",") if name.strip()))
    if not args.task_list:
        raise CLIError(f"`--tasks` names no task: {args.tasks!r}.")
    for name in args.task_list:
        if name.endswith(".yaml"):
            check_file(name, "`--tasks`")
    _check_model_args(args)
    if args.gen_kwargs is not None:
        parse_pairs(args.gen_kwargs, "--gen-kwargs")
    if args.log_samples and args.output_path is None:
        raise CLIError("`--log-samples` writes the samples beside the results: give `--output-path` too.")
    if args.output_path is not None:
        if Path(args.output_path).suffix == ".json":  # as EvaluationTracker tells a file from a folder
            check_output_file(args.output_path, "`--output-path`", ".json")
        else:
            check_output_folder(args.output_path, "`--output-path`")
    for folder in args.include_path or []:
        check_folder(folder, "`--include-path`")
    if args.card and not os.path.isdir(args.model) and is_repo_id(args.model) and not _looks_like_path(args.model):
        raise CLIError(f"`--card` records the scores in a local folder's README.md, and {args.model!r} is a hub id: "
                       "evaluate a local copy of it (save_pretrained or `hf download`) and push that folder.")
    check_saved(args.model, "`model`", files=MODEL_FILES)
    if args.card:  # refused now, not after the evaluation
        check_output_file(os.path.join(args.model, "README.md"), "`--card`")


# ------------------------------------------------------------------------------------------------------- tasks
def _self_contained(index: dict, name: Any, seen: set[str]) -> bool:
    """Whether ``name`` is a task or group of ``index`` whose members are all in ``index`` too."""
    entry = index.get(name) if isinstance(name, str) else None
    if entry is None or entry.kind.name not in ("TASK", "PY_TASK", "GROUP"):
        return False  # a tag may also gather built-in tasks
    if entry.kind.name != "GROUP" or name in seen:
        return True
    seen.add(name)
    members = (entry.cfg or {}).get("task", [])
    members = members if isinstance(members, list) else [members]
    return all(_self_contained(index, m.get("group") or m.get("task") if isinstance(m, dict) else m, seen)
               for m in members)


def resolve_tasks(names: list[str], include_path: list[str] | None) -> tuple[Any, list[str]]:
    """The harness's ``TaskManager`` and the task names (globs expanded); unknown names are refused (exit 2) with
    close matches. When every name is a task or group of ``include_path`` alone, only those folders are indexed
    (the harness's ~15,000 built-in YAMLs take seconds to index; ``include_path`` overrides them anyway)."""
    from lm_eval.tasks import TaskManager

    if include_path:
        local = TaskManager(include_path=include_path, include_defaults=False)
        if all(_self_contained(local.task_index, name, set()) for name in names):
            return local, list(names)
    manager = TaskManager(include_path=include_path or None)
    resolved: list[str] = []
    for name in names:
        matches = [str(Path(name).absolute())] if name.endswith(".yaml") else manager.match_tasks([name])
        if not matches:
            close = difflib.get_close_matches(name, manager.all_tasks, n=5, cutoff=0.6)
            hint = f"; close matches: {', '.join(close)}" if close else ""
            raise CLIError(f"`--tasks`: unknown task {name!r}{hint} (`lm-eval ls tasks` lists the harness's tasks; "
                           "`--include-path` adds folders of task YAMLs).")
        resolved += [match for match in matches if match not in resolved]
    return manager, resolved


# ------------------------------------------------------------------------------------------------------- running
def model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """DiffusionLM's arguments: ``--model-args`` (parsed as the harness parses it) and the flags."""
    from lm_eval.utils import simple_parse_args_string

    kwargs = simple_parse_args_string(args.model_args)
    flags = {"batch_size": args.batch_size, "device": args.device,
             "seed": args.seed[2] if args.seed is not None else None}
    for name, value in flags.items():
        if value is not None:
            kwargs.setdefault(name, value)
    kwargs.setdefault("show_progress", sys.stderr.isatty())
    return kwargs


def _build_model(args: argparse.Namespace, kwargs: dict[str, Any]) -> Any:
    from ..integrations.lm_eval_harness import DiffusionLM
    from ._loading import loading

    try:
        return DiffusionLM(pretrained=args.model, **kwargs)
    except (ValueError, TypeError):
        raise  # DiffusionLM's checks name the setting: exit 2 as they are
    except Exception:
        with loading(args.model, "`model`"):  # a model that does not load: the exit code of why
            raise


@contextlib.contextmanager
def _harness_environment(verbose: bool) -> Iterator[None]:
    """Tokenizers single-threaded (as the harness's command sets them) and, unless ``verbose``, the harness's
    request-building progress bar off (it has no switch; hf-dlm's own bars follow ``show_progress``), so that an
    error stays one line on stderr. Both restored afterwards."""
    from unittest import mock

    from lm_eval.api import task
    from tqdm import tqdm

    class Silent(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, "disable": True})

    saved = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        with contextlib.nullcontext() if verbose else mock.patch.object(task, "tqdm", Silent):
            yield
    finally:
        if saved is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = saved


def _results_file(tracker: Any, output_path: str) -> Path:
    """Where ``EvaluationTracker.save_results_aggregated`` wrote (it logs a failure instead of raising)."""
    date_id = getattr(tracker, "date_id", None)
    path = Path(output_path)
    if path.suffix == ".json":
        written = path.with_name(f"{path.stem}_{date_id}.json")
    else:
        written = path / str(tracker.general_config_tracker.model_name_sanitized) / f"results_{date_id}.json"
    if date_id is None or not written.is_file():
        raise CLIError(f"`--output-path` {output_path!r}: the harness could not write its results there (run again "
                       "with --verbose for its log).", EXIT_FAILURE)
    return written


def run(args: argparse.Namespace) -> int:
    """Resolve the tasks, load the model, evaluate as ``lm-eval run`` does, print and record the scores."""
    import lm_eval
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.utils import make_table

    from ..integrations.lm_eval_harness import LikelihoodUnavailableError

    task_manager, tasks = resolve_tasks(args.task_list, args.include_path)
    kwargs = model_kwargs(args)
    lm = _build_model(args, kwargs)
    tracker = EvaluationTracker(output_path=args.output_path)
    seed = args.seed or HARNESS_SEEDS
    model_args = {"pretrained": args.model, **kwargs}
    with _harness_environment(args.verbose or args.debug):
        try:
            results = lm_eval.simple_evaluate(
                model=lm, model_args=model_args, tasks=tasks, num_fewshot=args.num_fewshot,
                batch_size=lm.batch_size, device=str(lm.device), limit=args.limit, log_samples=args.log_samples,
                evaluation_tracker=tracker, apply_chat_template=args.apply_chat_template,
                fewshot_as_multiturn=bool(args.apply_chat_template), gen_kwargs=args.gen_kwargs,
                task_manager=task_manager, random_seed=seed[0], numpy_random_seed=seed[1],
                torch_random_seed=seed[2], fewshot_random_seed=seed[3])
        except LikelihoodUnavailableError as error:
            raise CLIError(f"`--tasks` {','.join(args.task_list)}: {error}") from error
        if results is None:  # not the main process
            return 0
        results["config"]["model"] = "hf-dlm"  # what `simple_evaluate(model="hf-dlm", ...)` records
        samples = results.pop("samples") if args.log_samples else None
        if args.output_path is not None:
            tracker.save_results_aggregated(results=results, samples=samples)
            for task_name in results["configs"] if args.log_samples else ():
                tracker.save_results_samples(task_name=task_name, samples=samples[task_name])
            written = _results_file(tracker, args.output_path)
    print(f"hf-dlm ({model_args}), gen_kwargs: ({args.gen_kwargs}), limit: {args.limit}, num_fewshot: "
          f"{args.num_fewshot}, batch_size: {lm.batch_size}")
    print(make_table(results))
    if "groups" in results:
        print(make_table(results, "groups"))
    if args.output_path is not None:
        print(f"results: {written}")
    if args.card:
        from ..hub.eval_results import record_eval_results

        if args.limit is not None:
            warnings.warn(f"--limit {args.limit}: the scores recorded on the card are from a subset of each task.",
                          stacklevel=1)
        print(f"card: {record_eval_results(args.model, results, artifact=lm.model)}")
    return 0
