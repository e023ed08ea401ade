"""What every source offers the sync job: a session that counts, executes and fetches."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict

Row = Sequence[object]


class SourceError(Exception):
    """A source failed; the message is safe to show (no password, no connection string)."""


class SourceDescription(BaseModel):
    """What the page and the health output say about the source."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["odbc", "demo"]
    server: str | None


@dataclass(frozen=True)
class Column:
    """A source column as the target table mirrors it."""

    name: str
    sqlite_type: str


class SourceSession(Protocol):
    """One connection to the source for one run."""

    async def count(self) -> int | None:
        """How many rows the query will return, or None when that cannot be asked."""

    async def execute(self) -> list[Column]:
        """Run the query; the columns of its result."""

    def warnings(self) -> list[str]:
        """What the source warned of since the last call (connecting, executing), each one
        safe line; the run writes them as ``WARNING:`` lines."""

    async def fetch_each(self, size: int, each: Callable[[list[Row]], bool]) -> None:
        """Fetch the rows in batches of up to ``size``, calling ``each(batch)`` on the thread
        that fetched it, before fetching the next: what is done with a batch is done there,
        as the plain fetch-and-insert loop does it, with no hand-over to another thread.
        Stops after the last batch (``each`` then gets an empty list) or when ``each`` returns
        False."""


class Source(Protocol):
    """A place rows come from."""

    @property
    def description(self) -> SourceDescription:
        """Kind and server, for display."""

    @property
    def connecting_message(self) -> str:
        """The detail written before connecting, e.g. ``Connecting to SQL Server X...``."""

    @property
    def fetching_from(self) -> str:
        """What the fetch reads, for ``Fetching records from …``: a view name or custom query."""

    def connect(self) -> AbstractAsyncContextManager[SourceSession]:
        """Open a session; closing it releases the connection."""


# Python types drivers report in cursor.description → the SQLite declared type of the mirror.
# Subclasses come before their bases (bool before int, datetime before date).
_DECLARED_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "BOOLEAN"),
    (int, "INTEGER"),
    (float, "REAL"),
    (decimal.Decimal, "NUMERIC"),
    (str, "TEXT"),
    (bytes, "BLOB"),
    (bytearray, "BLOB"),
    (dt.datetime, "DATETIME"),
    (dt.date, "DATE"),
    (dt.time, "TIME"),
    (uuid.UUID, "TEXT"),
)


def sqlite_type_for(type_code: object) -> str:
    """The SQLite declared type for a driver's type code (a Python type); TEXT when unknown."""
    if isinstance(type_code, type):
        for known, declared in _DECLARED_TYPES:
            if issubclass(type_code, known):
                return declared
    return "TEXT"
