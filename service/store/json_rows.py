"""Runs as JSON written by SQLite: the exact text :class:`service.wire.JobLog` serializes to,
without a model per row (a model and its serializer cost ~60 µs a run; a page of 25 was most of
a list request's time).

A row whose times are not in Rails' two forms, or whose status is not one the enum knows,
gets NULL: the caller serializes that one through the model instead.
"""

from __future__ import annotations

import sqlite3

from service.wire import Status, sql_iso_z

from .rows import job_log_from_row


def _micros(column: str) -> str:
    """Microseconds since the epoch of a stored time in one of Rails' forms."""
    return f"(unixepoch(substr({column}, 1, 19)) * 1000000 + CAST(substr({column}, 21) AS INTEGER))"


def log_json(alias: str = "") -> str:
    """SQLite's expression for a job_logs row's JSON (``alias`` like ``"l."``), or NULL.

    ``duration_seconds`` is the difference in whole microseconds divided by 10⁶, as
    ``timedelta.total_seconds()`` divides it: the same double, and SQLite prints it with 15
    significant digits, enough for any duration in microseconds under 30 years."""
    created, updated, status = f"{alias}created_at", f"{alias}updated_at", f"{alias}status"
    names = " ".join(f"WHEN {int(s)} THEN '{s.name}'" for s in Status)
    finished = ", ".join(str(int(s)) for s in Status if s.finished)
    return (
        f"CASE WHEN typeof({status}) = 'integer' AND {status} IN "
        f"({', '.join(str(int(s)) for s in Status)}) "
        f"AND ({sql_iso_z(created)}) IS NOT NULL AND ({sql_iso_z(updated)}) IS NOT NULL "
        f"THEN json_object('id', {alias}id, 'name', {alias}name, "
        f"'status', CASE {status} {names} END, "
        f"'created_at', {sql_iso_z(created)}, 'updated_at', {sql_iso_z(updated)}, "
        f"'duration_seconds', CASE WHEN {status} IN ({finished}) "
        f"THEN ({_micros(updated)} - {_micros(created)}) / 1000000.0 END) END"
    )


def row_json(row: sqlite3.Row, column: str = "j") -> str:
    """A run's JSON from a row that has its columns and ``column`` (:func:`log_json`)."""
    text = row[column]
    return str(text) if text is not None else job_log_from_row(row).model_dump_json()
