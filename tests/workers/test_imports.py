"""The worker modules import each other without a cycle; only ``workers.celery_app`` composes."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("workers", "tasks")


def _modules() -> dict[str, Path]:
    return {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
        for package in PACKAGES
        for path in sorted((ROOT / package).glob("*.py"))
    }


def _imports(path: Path, known: set[str]) -> list[tuple[str, bool]]:
    """Each module of ``known`` that ``path`` imports, and whether it does so at module level."""
    tree = ast.parse(path.read_text())
    in_functions = {
        id(node)
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(function)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            # ``from workers import signals`` imports the module workers.signals.
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found += [(name, id(node) not in in_functions) for name in names if name in known]
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycles.append([*path[path.index(module) :], module])
            return
        if module in done:
            return
        for target in sorted(graph[module]):
            visit(target, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    return cycles


def test_workers_and_tasks_import_each_other_without_a_cycle() -> None:
    modules = _modules()
    graph = {
        module: {target for target, _ in _imports(path, set(modules)) if target != module}
        for module, path in modules.items()
    }

    assert _cycles(graph) == []
    assert graph["workers.runtime"] & {"workers.celery_app", "workers.signals"} == set()
    assert "workers.celery_app" not in graph["workers.sender"] | graph["workers.signals"]


def test_no_worker_module_imports_another_inside_a_function() -> None:
    """An import inside a function is how a cycle hides; there is no reason for another."""
    modules = _modules()
    hidden = [
        f"{module} -> {target}"
        for module, path in modules.items()
        for target, top_level in _imports(path, set(modules))
        if not top_level
    ]

    assert hidden == []


def test_the_worker_parts_import_without_the_application() -> None:
    """Each part takes what it needs as arguments: importing one builds no app or settings."""
    parts = [
        "workers.beat",
        "workers.metrics",
        "workers.runtime",
        "workers.sender",
        "workers.tracing",
    ]
    code = (
        f"import sys, {', '.join([*parts, 'workers.signals'])}\n"
        "print(sorted(m for m in sys.modules if m.startswith(('workers.', 'tasks.'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )

    assert result.stdout.strip() == str(sorted([*parts, "workers.signals"]))
