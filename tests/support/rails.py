"""The seed's database as the Rails app made it (tests/fixtures/seed_schema.sql, the seed's
sample rows), opened as another program opens the file."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from .system import require_ruby_library

SEED_SCHEMA = (Path(__file__).parents[1] / "fixtures" / "seed_schema.sql").read_text()
RAILS_APP = Path(__file__).parents[1] / "integration" / "rails_app.rb"


def rails(database: Path | str, *args: str) -> str:
    """Run the seed's Rails side (tests/integration/rails_app.rb, Debian's ActiveRecord)
    against a SQLite file or a ``postgresql://`` URL; its standard output."""
    ruby = require_ruby_library("active_record", "ruby-activerecord")
    if str(database).startswith("postgresql://"):
        require_ruby_library("pg", "ruby-pg")
    else:
        require_ruby_library("sqlite3", "ruby-sqlite3")
    result = subprocess.run(
        [ruby, str(RAILS_APP), args[0], str(database), *args[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection, as another program would open the file."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        yield conn


def seed_database(path: Path) -> None:
    """A database made from the seed's SQL, holding the seed's sample rows as Rails wrote them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with raw(path) as conn:
        conn.executescript(SEED_SCHEMA)
        conn.executescript(
            """
            INSERT INTO job_logs (name, status, created_at, updated_at) VALUES
              ('20251215143022', 3, '2025-12-15 14:30:22', '2025-12-15 14:30:45'),
              ('20251215144022', 2, '2025-12-15 14:40:22', '2025-12-15 14:40:35'),
              ('20251215145022', 1, '2025-12-15 14:50:22', '2025-12-15 14:50:25.120000'),
              ('20251215143022_1', 3, '2025-12-15 14:30:22', '2025-12-15 14:30:50');
            INSERT INTO job_log_details (job_log_id, message, created_at, updated_at) VALUES
              (1, 'Job started - SyncOpenOrdersJob', '2025-12-15 14:30:22', '2025-12-15 14:30:22'),
              (1, 'Connected successfully', '2025-12-15 14:30:24.5', '2025-12-15 14:30:24.5'),
              (1, 'Connecting to SQL Server CASQL2.inxintl.com...',
                  '2025-12-15 14:30:23', '2025-12-15 14:30:23');
            """
        )
