"""The claims docs/design/architecture.md makes about imports, checked on the source's syntax trees: every
`import` and `from ... import`, at module level or inside a function, counts."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "minbert"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """minbert module -> the minbert modules it imports (a name imported from a package counts as its module; the
    module's own parent packages do not count)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([node.module] if node.module else []))
                targets = [base, *(f"{base}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            ancestors = {".".join(name.split(".")[:k]) for k in range(1, name.count(".") + 1)}
            edges |= {t for t in targets if t in modules and t != name and t not in ancestors}  # a parent package
            # is imported before any module in it: `from . import hub` depends on hub, not on minbert/__init__
        graph[name] = edges
    return graph


GRAPH = import_graph()


def short(names) -> list[str]:
    return sorted(n.removeprefix("minbert.") for n in names)


def test_there_are_no_import_cycles():
    done: set[str] = set()
    path: list[str] = []

    def visit(m: str) -> None:
        if m in path:
            pytest.fail("import cycle: " + " -> ".join(short(path[path.index(m):]) + short([m])))
        if m in done:
            return
        path.append(m)
        for n in sorted(GRAPH[m]):
            visit(n)
        path.pop()
        done.add(m)

    for m in sorted(GRAPH):
        visit(m)


def test_errors_is_a_leaf_and_holds_every_error_class():
    assert GRAPH["minbert.errors"] == set()
    elsewhere = [f"{module_name(p)}.{node.name}" for p in PACKAGE.rglob("*.py") if p.name != "errors.py"
                 for node in ast.walk(ast.parse(p.read_text())) if isinstance(node, ast.ClassDef)
                 and any(isinstance(b, ast.Name) and b.id.endswith("Error") for b in node.bases)
                 and not node.name.startswith("Duplicate")]  # config's YAML duplicate-key marker is PyYAML's
    assert elsewhere == []


def test_only_the_command_line_imports_the_tools():
    users = {m for m, edges in GRAPH.items() if any(e.startswith("minbert.tools") for e in edges)}
    assert short(users - {m for m in users if m.startswith("minbert.tools")}) == ["cli"]


def test_no_component_imports_the_trainer():
    loop = {"minbert.training.trainer", "minbert.training.run"}
    users = {m for m, edges in GRAPH.items() if edges & loop}
    assert short(u for u in users if not u.startswith("minbert.tools")) == ["api", "cli", "training.run"]


def test_the_config_imports_no_component():
    assert short(GRAPH["minbert.config"]) == ["data.readers", "errors", "settings", "writes"]
    assert short(GRAPH["minbert.writes"]) == ["errors"]  # the leaf every file is written through
    assert short(GRAPH["minbert.settings"]) == ["errors"]  # the leaf every technique declares its settings with
    assert short(GRAPH["minbert.schema"]) == ["config", "errors", "heads.settings", "settings", "tasks"]
    assert short(GRAPH["minbert.heads.settings"]) == ["losses", "settings", "tasks"]


def test_the_training_loop_stays_short():
    """trainer.py is the loop alone: a step, a checkpoint, a dev evaluation are their own modules' (step.py, state.py,
    dev_eval.py)."""
    assert len((PACKAGE / "training" / "trainer.py").read_text().splitlines()) <= 250
