"""Runs and lines as JSON written by PostgreSQL: the exact text SQLite mode answers with
(store/json_rows.py), byte for byte, without a model per row.

PostgreSQL's own ``json_build_object`` and ``json_agg`` put spaces between keys, values and
elements, so the texts are concatenated here, each string escaped by ``to_json`` (the same
escapes as SQLite's and pydantic's: ``\\"``, ``\\\\``, ``\\n`` and the like, other control
characters as lowercase ``\\u00xx``, everything else as it is).
"""

from __future__ import annotations

from typing import Any

from service.wire import Status

from .writes import job_log_from


def iso_z(column: str) -> str:
    """PostgreSQL's expression for :func:`service.wire.iso_z` of a timestamp(6) ``column``."""
    return f"""to_char({column}, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


def _duration(alias: str) -> str:
    """The text SQLite's ``json_object`` gives ``duration_seconds`` (a double it prints as
    ``%!.15g``): the duration in whole microseconds divided by 10⁶, ``1.0e-06`` to ``9.9e-05``
    below 0.0001, else its decimals to 15 significant digits, with at least ``.0``."""
    micros = f"(extract(epoch FROM {alias}updated_at) - extract(epoch FROM {alias}created_at))"
    d = f"({micros} * 1000000)::bigint"
    seconds = f"trim_scale(round({d}::numeric / 1000000, 15 - length((abs({d}) / 1000000)::text)))"
    return (
        f"CASE WHEN {d} = 0 THEN '0.0' "
        f"WHEN abs({d}) < 10 THEN {d} || '.0e-06' "
        f"WHEN abs({d}) < 100 THEN CASE WHEN {d} < 0 THEN '-' ELSE '' END "
        f"|| abs({d}) / 10 || '.' || mod(abs({d}), 10) || 'e-05' "
        f"ELSE {seconds} || CASE WHEN {seconds} = trunc({seconds}) THEN '.0' ELSE '' END END"
    )


def log_json_head(alias: str = "") -> str:
    """A job_logs row's JSON up to ``updated_at`` (``alias`` like ``"l."``): what
    :func:`log_json_tail` closes, with a run's lines in between if wanted. NULL for a status
    the enum does not know (the model then refuses it, as in SQLite mode)."""
    names = " ".join(f"WHEN {int(s)} THEN '{s.name}'" for s in Status)
    return (
        f"""'{{"id":' || {alias}id || ',"name":' || to_json({alias}name)::text """
        f"""|| ',"status":"' || CASE {alias}status {names} END """
        f"""|| '","created_at":"' || {iso_z(alias + "created_at")} """
        f"""|| '","updated_at":"' || {iso_z(alias + "updated_at")} || '"'"""
    )


def log_json_tail(alias: str = "") -> str:
    """The rest of a job_logs row's JSON after :func:`log_json_head`: ``duration_seconds``,
    a computed field, which the model's JSON puts last."""
    finished = ", ".join(str(int(s)) for s in Status if s.finished)
    return (
        f"""',"duration_seconds":' || CASE WHEN {alias}status IN ({finished}) """
        f"""THEN {_duration(alias)} ELSE 'null' END || '}}'"""
    )


def log_json(alias: str = "") -> str:
    """PostgreSQL's expression for a job_logs row's JSON, as :class:`service.wire.JobLog`
    serializes it in SQLite mode; NULL for a status the enum does not know."""
    return f"{log_json_head(alias)} || {log_json_tail(alias)}"


def detail_json(alias: str = "") -> str:
    """PostgreSQL's expression for a job_log_details row's JSON, as
    :class:`service.wire.JobLogDetail` serializes it (no ``updated_at``)."""
    return (
        f"""'{{"id":' || {alias}id || ',"job_log_id":' || {alias}job_log_id """
        f"""|| ',"message":' || to_json({alias}message)::text """
        f"""|| ',"created_at":"' || {iso_z(alias + "created_at")} || '"}}'"""
    )


def row_json(row: dict[str, Any], column: str = "j") -> str:
    """A run's JSON from a row that has its columns and ``column`` (:func:`log_json`); a row
    the expression gave NULL goes through the model (which refuses a status it does not
    know)."""
    text = row[column]
    return str(text) if text is not None else job_log_from(row).model_dump_json()
