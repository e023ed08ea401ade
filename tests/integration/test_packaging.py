"""A built wheel carries schema.sql and the page, and runs on its own."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.support.server import ServerProcess
from tests.support.wheel import build_wheel

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(ROOT, tmp_path_factory.mktemp("wheel"), timeout=120)


def test_the_wheel_holds_the_schema_and_the_page(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "service/__main__.py",
        "service/schema.sql",
        "service/static/index.html",
        "service/static/style.css",
    } <= names
    assert not any(name.startswith("tests/") for name in names)


def test_the_installed_wheel_serves(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    run = tmp_path / "run"
    run.mkdir()
    located = subprocess.run(
        [sys.executable, "-c", "import service.resources as r; print(r.static_dir())"],
        cwd=run,
        env={"PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(located.stdout.strip()) == target / "service" / "static"

    with ServerProcess(run, PYTHONPATH=str(target)) as server:
        server.wait_ready()
        with urllib.request.urlopen(f"{server.url}/", timeout=5) as page:
            assert b"<title>Job log</title>" in page.read()
        with urllib.request.urlopen(f"{server.url}/healthz", timeout=5) as health:
            assert json.load(health) == {"status": "ok"}
        code, _ = server.stop()
    assert code == 0
    assert (run / "data" / "joblog.sqlite3").exists()
