"""The layers hold: core < engines (training, the audit) < application < shell, and no import cycle anywhere.

Every import of every module of ``retrain`` and ``datacheck`` is read from its source (those inside functions too,
since they run as soon as the function does; not those under ``if TYPE_CHECKING:``, which never run).
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Lowest first; a module belongs to the layer of its longest matching prefix.
LAYERS = {
    "core": ("retrain", "retrain.core"),
    "engine": ("retrain.training", "retrain.reports", "retrain.charts", "datacheck"),
    "application": ("retrain.app",),
    "shell": ("retrain.cli", "retrain.pytest_plugin", "retrain.__main__"),
}
ENGINES = ("retrain.training", "datacheck")


def _modules() -> dict[str, Path]:
    found = {}
    for package in ("retrain", "datacheck"):
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(module: str, path: Path) -> set[str]:
    """The project modules ``module`` imports when it runs."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {name for name in names if name in MODULES and name != module}


GRAPH = {module: _imported(module, path) for module, path in MODULES.items()}


def _layer(module: str) -> tuple[int, str]:
    matches = [
        (len(prefix), rank, name)
        for rank, (name, prefixes) in enumerate(LAYERS.items())
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    _, rank, name = max(matches)
    return rank, name


def test_the_graph_is_read() -> None:
    """A reader that found nothing would pass everything: the known imports must be there."""
    assert "retrain.core.settings" in GRAPH["retrain.core.settings_file"]
    assert "datacheck.audit" in GRAPH["retrain.app.audit"]  # imported inside a function
    assert "retrain.core.run_report" not in GRAPH["retrain.core.gate"]  # under TYPE_CHECKING only
    assert len(GRAPH) > 60


def test_no_import_cycle() -> None:
    try:
        tuple(graphlib.TopologicalSorter(GRAPH).static_order())
    except graphlib.CycleError as error:
        pytest.fail(f"import cycle: {' -> '.join(error.args[1])}")


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_the_layers(module: str) -> None:
    rank, layer = _layer(module)
    upward = [f"{target} ({_layer(target)[1]})" for target in sorted(GRAPH[module]) if _layer(target)[0] > rank]
    assert not upward, f"{module} ({layer}) imports a higher layer: {', '.join(upward)}"
    engine = next((prefix for prefix in ENGINES if module.startswith(prefix)), None)
    if engine:
        other = [
            target for target in GRAPH[module] for prefix in ENGINES if prefix != engine and target.startswith(prefix)
        ]
        assert not other, f"the {engine} engine imports the other engine: {', '.join(sorted(other))}"
