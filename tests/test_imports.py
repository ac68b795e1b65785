"""The import rules of the layout (docs/architecture.md), checked on every import statement.

- `launch` modules import no other `launch` module, except `launch/train.py` importing the task
  entry points (`launch.train_<task>`); helpers that several commands share live in the library;
- `configs` imports nothing from `anchored_jax`: a config holds literal values;
- `anchored_jax` imports nothing from `data_pipelines`, except through one seam,
  `anchored_jax.evaluation.keypoint_metrics`, the landmark extractors (MediaPipe FaceMesh and
  the synthetic faces' regressor) that AKD runs on generated frames;
- the subpackages of `anchored_jax` import each other without cycles.

Imports are read with `ast`, so function-level (deferred) imports count too.
"""

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEAM = "anchored_jax.evaluation.keypoint_metrics"
TRAIN_TASKS = {"launch.train_sdit", "launch.train_animator", "launch.train_lmdm"}


def python_files(package: str) -> list[str]:
    paths = []
    for folder, _, names in os.walk(os.path.join(REPO, package)):
        paths += [os.path.join(folder, n) for n in names if n.endswith(".py")]
    return sorted(os.path.relpath(p, REPO) for p in paths)


def module_name(path: str) -> str:
    name = path[: -len(".py")].replace(os.sep, ".")
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def imported_modules(path: str) -> set[str]:
    """Every absolute module an import statement in `path` names (`from a import b` gives
    both `a` and `a.b`, since b may be a module); relative imports resolved."""
    with open(os.path.join(REPO, path)) as f:
        tree = ast.parse(f.read(), path)
    package = module_name(path).rsplit(".", 0 if path.endswith("__init__.py") else 1)[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _in(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


@pytest.mark.parametrize("path", python_files("launch"))
def test_launch_modules_import_no_other_launch_module(path):
    allowed = TRAIN_TASKS if path == os.path.join("launch", "train.py") else set()
    bad = [n for n in imported_modules(path) if _in(n, "launch") and n != "launch"]
    # `from launch import train_sdit` names both `launch` and `launch.train_sdit`.
    assert not [n for n in bad if n not in allowed], f"{path} imports {sorted(set(bad) - allowed)}"


@pytest.mark.parametrize("path", python_files("configs"))
def test_configs_import_nothing_from_the_library(path):
    bad = [n for n in imported_modules(path) if _in(n, "anchored_jax")]
    assert not bad, f"{path} imports {sorted(bad)}"


@pytest.mark.parametrize("path", python_files("anchored_jax"))
def test_the_library_reaches_data_pipelines_only_through_its_seam(path):
    if module_name(path) == SEAM:
        assert any(_in(n, "data_pipelines") for n in imported_modules(path)), (
            f"{SEAM} no longer imports data_pipelines: name the new seam here"
        )
        return
    bad = sorted(n for n in imported_modules(path) if _in(n, "data_pipelines"))
    assert not bad, f"{path} imports {bad}: anchored_jax reaches data_pipelines only via {SEAM}"


def subpackage_graph() -> dict[str, set[str]]:
    """anchored_jax subpackage -> the subpackages its modules import."""
    graph = {}
    for path in python_files("anchored_jax"):
        parts = module_name(path).split(".")
        if len(parts) < 3:
            continue  # anchored_jax/__init__.py and top-level modules
        own = parts[1]
        targets = {
            n.split(".")[1]
            for n in imported_modules(path)
            if _in(n, "anchored_jax") and len(n.split(".")) > 2
        }
        targets = {t for t in targets if os.path.isdir(os.path.join(REPO, "anchored_jax", t))}
        graph.setdefault(own, set()).update(targets - {own})
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path `[a, b, ..., a]`, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_find_cycle_finds_a_cycle_and_only_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_library_subpackages_have_no_cycles():
    cycle = find_cycle(subpackage_graph())
    assert cycle is None, f"anchored_jax import cycle: {' -> '.join(cycle)}"
