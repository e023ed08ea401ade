"""Files shipped beside the code: the schema and the static page.

In a built wheel they sit inside the package; in a source checkout (editable install, tests)
they sit at the top of the repository.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _locate(name: str) -> Path:
    for base in (_PACKAGE, _PACKAGE.parent):
        candidate = base / name
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{name} is missing from the installation (looked in {_PACKAGE})")


def schema_sql() -> str:
    """The text of schema.sql."""
    return _locate("schema.sql").read_text(encoding="utf-8")


def static_dir() -> Path:
    """The folder holding the static page."""
    return _locate("static")
