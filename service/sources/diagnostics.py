"""A driver's warnings (its SQL_SUCCESS_WITH_INFO diagnostics) as safe one-line messages."""

from __future__ import annotations

import re
from collections.abc import Iterable

from .connection_string import describe_diagnostic

# pyodbc names a diagnostic "[SQLSTATE] (native error)".
_STATE_OF = re.compile(r"^\[([0-9A-Z]{5})\]")
# SQLSTATE 00000 (psqlODBC's, for PostgreSQL's notices) says nothing: it is left out.
_NO_STATE = "00000"
# A diagnostic longer than the driver's buffer comes as several records of the buffer's full
# length (psqlODBC: 1,022 characters) and a shorter last one: those are put back together. Two
# real records of the same state, the first of exactly that length, are joined too — rare,
# and then still shown whole.
_MIN_PIECE = 256
# psqlODBC hands over all of a statement's notices as one diagnostic joined by ";": they are
# split where the next begins with its PostgreSQL severity.
_NOTICE_BOUNDARY = re.compile(r";(?=(?:DEBUG|LOG|INFO|NOTICE|WARNING): )")


def warnings_from(messages: Iterable[tuple[object, object]], hidden: list[str]) -> list[str]:
    """pyodbc's ``cursor.messages`` after an execute as warnings, each one line, secrets
    scrubbed, vendor tags removed, ``[SQLSTATE]`` first where it says something."""
    found: list[str] = []
    for state, text in _records(messages):
        for notice in _NOTICE_BOUNDARY.split(text):
            line = describe_diagnostic(
                state, notice.removeprefix("WARNING: "), hidden, joined=False
            )
            if line:
                found.append(line)
    return found


def _records(messages: Iterable[tuple[object, object]]) -> list[tuple[str, str]]:
    """The diagnostics as (SQLSTATE or "", text), a long one's pieces joined."""
    records: list[tuple[str, str]] = []
    first = last = 0
    for raw_state, raw_text in messages:
        match = _STATE_OF.match(str(raw_state))
        state = match.group(1) if match and match.group(1) != _NO_STATE else ""
        text = str(raw_text)
        if records and records[-1][0] == state and last == first >= _MIN_PIECE:
            records[-1] = (state, records[-1][1] + text)
        else:
            records.append((state, text))
            first = len(text)
        last = len(text)
    return records
