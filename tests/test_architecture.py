"""The shape of the house, checked: no import cycles, imports point only down the layers, no private names
imported across modules, and every module belongs to a layer (a new top-level module must be placed here).

The graph is read with ast (module-level AND function-level imports), as ../shared/tools/import_graph.py does.
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "tunesmith"

# lowest first; a module may import from its own layer or any layer below it
LAYERS = [
    ("foundation", {"tunesmith", "errors", "artifacts", "writers", "allocator"}),  # errors, atomic files, the run
    # directory, the process's memory allocator
    ("config", {"config"}),  # every recipe section, pure pydantic
    ("data", {"data"}),
    ("models", {"models"}),
    ("methods", {"methods"}),
    ("features", {"evaluation", "baselines", "imbalance", "inspection"}),  # what tasks score and diagnose with
    ("tasks", {"tasks"}),
    ("train", {"train", "preflight"}),  # the loop, checkpoints; preflight checks before the first step
    ("outputs", {"report", "trackers", "export"}),  # report.html, trackers, export formats
    ("recipes", {"recipes"}),
    ("serve", {"serve"}),  # tunesmith serve: the HTTP server over recipes/predict.py and recipes/generate.py
    ("cli", {"cli", "__main__"}),  # tunesmith/__main__.py: `python -m tunesmith` (what launchers run)
]
LAYER_OF = {top: index for index, (_, tops) in enumerate(LAYERS) for top in tops}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def resolve(name: str, known: dict) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports(name: str, path: Path, known: dict) -> list[tuple[str, list[str], int]]:
    """(imported module, imported names, line) for every tunesmith import of a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == PACKAGE]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE:
            assert node.level == 0, f"{name}: use absolute imports"
            for alias in node.names:  # `from tunesmith.x import y` may import the module tunesmith.x.y
                target = f"{node.module}.{alias.name}"
                found.append((target if target in known else node.module, [alias.name], node.lineno))
    return [(resolve(target, known), names, line) for target, names, line in found]


def top_level(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


@pytest.fixture(scope="module")
def graph():
    known = modules()
    return known, {name: imports(name, path, known) for name, path in known.items()}


def test_every_module_belongs_to_a_layer(graph):
    known, _ = graph
    unplaced = sorted({top_level(m) for m in known} - set(LAYER_OF))
    assert not unplaced, f"place these in LAYERS of tests/test_architecture.py: {unplaced}"


def test_no_import_cycles(graph):
    known, edges = graph
    sorter = TopologicalSorter()
    for name, targets in edges.items():
        for target, _, _ in targets:
            # a package's __init__ importing its own submodules is not a design cycle
            if target and target != name and not target.startswith(name + "."):
                sorter.add(name, target)
    try:
        sorter.prepare()
    except CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_imports_point_down_the_layers(graph):
    _, edges = graph
    upward = []
    for name, targets in edges.items():
        for target, _, line in targets:
            if target and LAYER_OF[top_level(target)] > LAYER_OF[top_level(name)]:
                upward.append(f"{name}:{line} imports {target} "
                              f"({LAYERS[LAYER_OF[top_level(name)]][0]} -> {LAYERS[LAYER_OF[top_level(target)]][0]})")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_config_imports_nothing_of_ours_but_errors(graph):
    _, edges = graph
    bad = [f"{name}:{line} imports {target}" for name, targets in edges.items() if top_level(name) == "config"
           for target, _, line in targets if target and top_level(target) not in ("config", "errors")]
    assert not bad, bad


def test_no_private_names_imported_across_modules(graph):
    _, edges = graph
    private = [f"{name}:{line} imports {n} from {target}" for name, targets in edges.items()
               for target, names, line in targets for n in names if n.startswith("_") and n != "__version__"]
    assert not private, private


def test_the_checker_sees_a_planted_cycle_and_an_upward_import(tmp_path):
    """The checks can fail: a config module importing a task is both an upward import and (with the task
    importing config) a cycle."""
    root = tmp_path / PACKAGE
    (root / "config").mkdir(parents=True)
    (root / "tasks").mkdir()
    for path in (root / "__init__.py", root / "config" / "__init__.py", root / "tasks" / "__init__.py"):
        path.write_text("")
    (root / "config" / "recipe.py").write_text("from tunesmith.tasks.base import Task\n")
    (root / "tasks" / "base.py").write_text("def f():\n    from tunesmith.config.recipe import Recipe\n")
    known = {".".join(p.relative_to(tmp_path).with_suffix("").parts).removesuffix(".__init__"): p
             for p in root.rglob("*.py")}
    edges = {name: imports(name, path, known) for name, path in known.items()}
    assert ("tunesmith.tasks.base", [], 1) in [(t, [], 1) for t, _, _ in edges["tunesmith.config.recipe"]]
    sorter = TopologicalSorter({name: {t for t, _, _ in targets if t and t != name and not t.startswith(name + ".")}
                                for name, targets in edges.items()})
    with pytest.raises(CycleError):
        sorter.prepare()
    assert LAYER_OF[top_level("tunesmith.tasks.base")] > LAYER_OF[top_level("tunesmith.config.recipe")]
