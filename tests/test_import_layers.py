"""The package's floors: the import-linter contracts of ``pyproject.toml`` hold, no module of ``hf_dlm`` takes part in
an import cycle (function-local imports included), and the class table through which ``hf_dlm.hub`` loads saved
pipelines names every pipeline of ``hf_dlm.pipelines``."""

import importlib
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_hold():
    """``lint-imports`` over the contracts in ``pyproject.toml`` (layers cli → recipes → … → denoiser, and the
    forbidden imports); on failure the assertion message is import-linter's report, naming each illegal import."""
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                               "sys.exit(lint_imports_command())", "--no-cache"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[report.find("Contracts"):] if "Contracts" in report else report
    assert "0 broken" in report, report


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components with more than one module (or a module importing itself), Tarjan's
    algorithm written iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = counter
                    counter += 1
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph.find_modules_directly_imported_by(successor)))))
                    advanced = True
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or graph.direct_import_exists(importer=node, imported=node):
                    components.append(sorted(component))
    return components


def test_cycle_finder_finds_a_cycle():
    graph = grimp.ImportGraph()
    for module in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(module)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.a")
    graph.add_import(importer="pkg.c", imported="pkg.a")
    assert _cycles(graph) == [["pkg.a", "pkg.b"]]


def test_no_module_of_hf_dlm_takes_part_in_an_import_cycle():
    """Every import counts, at module level or inside a function: a function-local import does not make a circle
    go away, it only hides it."""
    graph = grimp.build_graph("hf_dlm", cache_dir=None)
    cycles = _cycles(graph)
    details = []
    for component in cycles:
        first, second = component[0], component[1] if len(component) > 1 else component[0]
        there = graph.find_shortest_chain(importer=first, imported=second) or ()
        back = graph.find_shortest_chain(importer=second, imported=first) or ()
        details.append(f"{component}: {' -> '.join(there)} | {' -> '.join(back)}")
    assert not cycles, "import cycles:\n" + "\n".join(details)


def test_hub_pipeline_table_names_every_pipeline():
    """``hf_dlm.hub.load_artifact`` finds a saved pipeline's class through ``_registration.PIPELINE_CLASSES``."""
    from diffusers import DiffusionPipeline

    from hf_dlm import _registration, pipelines

    ours = {name for name in pipelines.__all__
            if isinstance(getattr(pipelines, name), type) and issubclass(getattr(pipelines, name), DiffusionPipeline)}
    assert set(_registration.PIPELINE_CLASSES) == ours
    for name, module in _registration.PIPELINE_CLASSES.items():
        assert getattr(importlib.import_module(module), name) is getattr(pipelines, name)
