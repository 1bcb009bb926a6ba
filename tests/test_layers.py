"""Imports go one way: scripts -> entry points -> building blocks -> foundations, with no cycle.

Read with `ast` from the source (lazy imports inside functions count too), so a module cannot hide an upward
import behind a function body.
"""
import ast
from pathlib import Path

from conftest import REPO_ROOT

# Every module of common/ has a layer; an import may stay in its layer or go down, never up.
LAYERS = {
    "bench": 4, "bench_gpu": 4, "bench_real": 4,  # benchmarks of the run, so above it
    "run": 3, "predict": 3,
    "trainer": 2, "inference": 2, "model": 2, "saved_run": 2, "export": 2, "checkpoint": 2, "faults": 2,
    "preflight": 2, "tracking": 2, "model_card": 2, "results": 2, "compile": 2, "patches": 2, "output_dir": 2,
    "config": 1, "data": 1, "preprocess": 1, "postprocess": 1, "squad_metric": 1, "feature_cache": 1,
    "distributed": 1, "cpu_dropout": 1, "attention": 1, "batches": 1, "quiet": 1, "sampler": 1, "durable": 1,
    "optim": 1, "step_graph": 1, "fused_qkv": 2, "frozen_weights": 1,
}


def common_modules() -> dict[str, Path]:
    return {p.stem: p for p in (REPO_ROOT / "common").glob("*.py") if p.stem != "__init__"}


def imports_of(path: Path, *, package: str = "common") -> set[str]:
    """Modules of `package` that `path` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 or node.module == package:  # from . import x / from .x import y / from common import x
                base = node.module if node.level == 1 else None
                found.update([base] if base else [alias.name for alias in node.names])
            elif node.module and node.module.startswith(package + "."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith(package + "."))
    return found


def find_cycle(graph: dict[str, set[str]]):
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_every_module_has_a_layer():
    assert sorted(set(common_modules()) - set(LAYERS)) == []


def test_no_import_goes_up_and_there_is_no_cycle():
    modules = common_modules()
    graph = {name: imports_of(path) & set(modules) for name, path in modules.items()}
    upward = [f"{a} (layer {LAYERS[a]}) imports {b} (layer {LAYERS[b]})"
              for a, targets in graph.items() for b in targets if LAYERS[b] > LAYERS[a]]
    assert upward == []
    assert find_cycle(graph) is None


def test_cycle_finder_finds_a_cycle():  # the check above must be able to fail
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_scripts_import_only_entry_points_and_paper_imports_no_training_code():
    for script in [*REPO_ROOT.glob("bertimbau_*/main*.py")]:
        assert imports_of(script) <= {"run", "predict"}, script
    for path in (REPO_ROOT / "paper").glob("*.py"):
        assert imports_of(path) == set(), path
