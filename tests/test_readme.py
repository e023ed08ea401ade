"""The README starts with the two commands and documents every setting with its default."""

from __future__ import annotations

import re
from pathlib import Path

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_two_commands_come_first_and_ci_runs_the_test_one() -> None:
    commands = re.findall(r"^make (\w+)", README.split("## ", 1)[0], flags=re.MULTILINE)
    assert commands == ["run", "test"]
    ci = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line and not line.startswith("#") and line not in ("set -eu", 'cd "$(dirname "$0")/.."')
    ]
    assert ci == ["exec make test"]


def test_every_setting_is_documented_with_its_default() -> None:
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| `([^`]*)` \|", README, flags=re.MULTILINE))
    defaults = Settings()
    assert set(rows) == {name.upper() for name in Settings.model_fields}
    for name in Settings.model_fields:
        value = getattr(defaults, name)
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        if isinstance(value, tuple | frozenset) and not value:
            shown = "None"  # an empty list reads as unset
        assert rows[name.upper()] == shown, name
