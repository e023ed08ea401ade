"""``python -m service purge`` in its own process: what it prints, its exit codes, its lock."""

from __future__ import annotations

import gzip
import json
import sqlite3
import subprocess
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from service.resources import schema_sql
from service.retention.policy import purge_lock
from tests.support.server import run_service

pytestmark = pytest.mark.integration

RAILS = "%Y-%m-%d %H:%M:%S.%f"
PENDING, PROCESSING, SUCCESS = 0, 1, 3


@pytest.fixture
def database(tmp_path: Path) -> Path:
    """120 daily runs (3 details each) up to now, and a pending and a processing one from
    150 days ago: 30 runs (90 details) are more than 90 days old."""
    path = tmp_path / "data" / "joblog.sqlite3"
    path.parent.mkdir()
    now = datetime.now(UTC)
    runs = [(now - timedelta(days=day, hours=1), SUCCESS) for day in range(120)]
    runs += [(now - timedelta(days=150, minutes=m), s) for m, s in ((1, PENDING), (2, PROCESSING))]
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(schema_sql())
        with conn:
            for created, status in runs:
                stamp = created.strftime(RAILS)
                (log_id,) = conn.execute(
                    "INSERT INTO job_logs (name, status, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?) RETURNING id",
                    (created.strftime("%Y%m%d%H%M%S"), status, stamp, stamp),
                ).fetchone()
                conn.executemany(
                    "INSERT INTO job_log_details (job_log_id, message, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?)",
                    [(log_id, f"line {i}", stamp, stamp) for i in range(3)],
                )
    return path


def counts(path: Path) -> tuple[int, int]:
    with closing(sqlite3.connect(path)) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM job_logs), (SELECT count(*) FROM job_log_details)"
        ).fetchone()
    return row[0], row[1]


def run_purge(
    tmp_path: Path, database: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return run_service(tmp_path, "purge", *args, DATABASE_PATH=str(database), **env)


def test_purge_archives_and_deletes_and_says_so_in_one_sentence(
    tmp_path: Path, database: Path
) -> None:
    result = run_purge(tmp_path, database, "--older-than", "90", "--archive-dir", "archive")

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    (line,) = result.stdout.splitlines()
    assert line.startswith("purged 30 logs (90 details) created before ")
    files = sorted((tmp_path / "archive").iterdir())
    for path in files:
        assert f"archive/{path.name} (" in line
    with_lines = {}
    for path in files:
        with gzip.open(path, "rt") as archive:
            with_lines[path.name] = [json.loads(text) for text in archive]
    assert sum(len(lines) for lines in with_lines.values()) == 30
    assert all(len(log["details"]) == 3 for lines in with_lines.values() for log in lines)
    assert counts(database) == (92, 276)


def test_the_defaults_come_from_retention_days_and_archive_dir(
    tmp_path: Path, database: Path
) -> None:
    result = run_purge(tmp_path, database, RETENTION_DAYS="100", ARCHIVE_DIR="kept")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("purged 20 logs (60 details) created before ")
    assert "kept/job_logs-" in result.stdout
    assert counts(database) == (102, 306)


def test_a_dry_run_says_what_would_go_and_changes_nothing(tmp_path: Path, database: Path) -> None:
    result = run_purge(
        tmp_path, database, "--older-than", "90", "--archive-dir", "archive", "--dry-run"
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("would purge 30 logs (90 details) created before ")
    assert "would archive to archive/job_logs-" in result.stdout
    assert not (tmp_path / "archive").exists()
    assert counts(database) == (122, 366)


def test_retention_off_purges_nothing(tmp_path: Path, database: Path) -> None:
    result = run_purge(tmp_path, database, RETENTION_DAYS="0")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("retention is off")
    assert counts(database) == (122, 366)


def test_another_purge_holding_the_lock_exits_3(tmp_path: Path, database: Path) -> None:
    lock = purge_lock(database)
    assert lock.acquire()
    try:
        result = run_purge(tmp_path, database, "--older-than", "90")
    finally:
        lock.release()

    assert result.returncode == 3
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert "another purge holds the lock" in line
    assert counts(database) == (122, 366)


@pytest.mark.parametrize("days", ["0", "-3", "1.5", "ninety", "٣"])
def test_a_bad_older_than_is_one_line_and_exit_2(tmp_path: Path, database: Path, days: str) -> None:
    result = run_purge(tmp_path, database, f"--older-than={days}")

    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert "--older-than" in line
    assert "whole number of days" in line
    assert counts(database) == (122, 366)


def test_an_archive_it_cannot_write_fails_with_one_line_and_deletes_nothing(
    tmp_path: Path, database: Path
) -> None:
    (tmp_path / "archive").write_text("a file, not a folder")

    result = run_purge(tmp_path, database, "--older-than", "90", "--archive-dir", "archive")

    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("purge stopped: cannot write the archive archive: ")
    assert "Traceback" not in result.stderr
    assert counts(database) == (122, 366)
