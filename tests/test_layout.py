"""Dependencies point one way: the core never imports the HTTP edge, and the store is imported
one way only (``from service.store import …``), never through its modules."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The wiring: the only modules outside service/http/ that may know the HTTP edge.
WIRING = {"service/app.py", "service/__main__.py"}


def imports(path: Path) -> Iterator[str]:
    """Every module a file imports (``from a.b import c`` gives ``a.b`` and ``a.b.c``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def python_files(*folders: str) -> Iterator[tuple[str, Path]]:
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path


def test_only_the_edge_and_the_wiring_import_the_http_package() -> None:
    wrong = [
        f"{name} imports {module}"
        for name, path in python_files("service")
        if not name.startswith("service/http/") and name not in WIRING
        for module in imports(path)
        if module == "service.http" or module.startswith("service.http.")
    ]
    assert wrong == []


def test_the_store_is_imported_from_its_package_only() -> None:
    wrong = [
        f"{name} imports {module}"
        for name, path in python_files("service", "tests", "bench")
        if not name.startswith("service/store/")
        for module in imports(path)
        if module.startswith("service.store.") and _is_a_store_module(module)
    ]
    assert wrong == []


def _is_a_store_module(module: str) -> bool:
    """``service.store.reads`` is a module; ``service.store.job_log`` (an imported name) is not.
    A dialect's package (``service.store.postgres``) is imported as the store is: from the
    package, never through its modules."""
    parts = module.removeprefix("service.store.").split(".")
    store = ROOT / "service" / "store"
    if (store / f"{parts[0]}.py").exists():
        return True
    return len(parts) > 1 and (store / parts[0] / f"{parts[1]}.py").exists()
