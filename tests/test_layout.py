"""The plan of the code holds: imports go one way, and no module grows past what one can read.

``ingest`` and ``maps`` may import ``ioc`` and ``alerting``; ``alerting`` imports ``ioc``; the
domain modules of ``ioc`` import none of them and never the web framework. Only the wiring
(the app factory and routers in ``ioc.api``, the resources in ``ioc.platform``, the command
line in ``ioc.cli`` and the benchmarks in ``ioc.bench``) puts the layers together.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ioc", "ingest", "maps", "alerting")
WIRING = ("ioc.api", "ioc.cli", "ioc.bench", "ioc.platform")
WEB = ("fastapi", "starlette", "uvicorn")
# Which top-level packages each layer may import (besides itself and third-party ones).
ALLOWED = {
    "ioc": {"ioc"},
    "alerting": {"alerting", "ioc"},
    "ingest": {"ingest", "ioc", "alerting"},
    "maps": {"maps", "ioc", "alerting"},
}
MAX_LINES = 420


def _modules() -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).with_suffix("")
            parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
            yield ".".join(parts), path


def _imports(path: Path) -> Iterator[str]:
    """Every module an import statement names, at any depth (lazy imports included)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def _is_wiring(module: str) -> bool:
    return any(module == w or module.startswith(w + ".") for w in WIRING)


MODULES = list(_modules())


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_imports_go_one_way(module: str, path: Path) -> None:
    layer = module.split(".")[0]
    wrong = []
    for name in _imports(path):
        top = name.split(".")[0]
        if top in PACKAGES and top not in ALLOWED[layer] and not _is_wiring(module):
            wrong.append(name)
        if layer in ("ioc", "alerting") and not _is_wiring(module):
            if top in WEB:
                wrong.append(name)
            if _is_wiring(name):  # a domain module reaching up into the API or the CLI
                wrong.append(name)
    assert not wrong, f"{module} imports {', '.join(sorted(set(wrong)))}"


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_each_module_says_what_it_is_and_stays_readable(module: str, path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    lines = text.count("\n")
    assert lines <= MAX_LINES, f"{module} has {lines} lines; split it by responsibility"
    if lines:
        doc = ast.get_docstring(ast.parse(text))
        assert doc, f"{module} has no docstring saying what it is"


def test_benchmarks_live_under_ioc_bench() -> None:
    outside = [
        module
        for module, path in MODULES
        if "bench" in path.stem and not module.startswith(("ioc.bench", "ioc.cli.bench"))
    ]
    assert not outside, f"benchmarks outside ioc/bench: {outside}"
