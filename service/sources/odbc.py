"""The ODBC source: any ODBC driver through aioodbc (SQL Server in production).

Only the driver's own timeouts bound a hung server: the login timeout at connect, the query
timeout on every statement. Every call runs on this session's own daemon thread, so a call
stuck in C never starves other work nor holds the process open at exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

from . import connection_string as cs
from . import diagnostics
from .base import Column, Row, SourceDescription, SourceError, sqlite_type_for
from .executor import DaemonThreadExecutor

if TYPE_CHECKING:
    import aioodbc

logger = logging.getLogger(__name__)

# How long closing a connection may take before it is abandoned (a stuck thread keeps it).
_CLOSE_SECONDS = 1.0


def import_driver_manager() -> None:
    """Import aioodbc (and pyodbc, which needs unixODBC's libodbc.so.2), or say what is missing."""
    try:
        import aioodbc  # noqa: F401
    except ImportError as exc:
        raise SourceError(
            f"ODBC is unavailable ({exc}); install unixODBC (Debian: apt-get install unixodbc)"
        ) from None


class OdbcSource:
    """Rows from ``SELECT * FROM <view>`` or a custom query over an ODBC connection string."""

    def __init__(
        self,
        connection_string: str,
        *,
        view: str | None,
        query: str | None,
        login_timeout: int,
        query_timeout: int,
    ) -> None:
        self._text = connection_string
        self._pairs = cs.parse(connection_string)
        self._hidden = cs.secrets(connection_string, self._pairs)
        self._view = view
        self._query = query if query is not None else f"SELECT * FROM {view}"
        self._count = (
            f"SELECT COUNT(*) FROM {view}"
            if query is None
            else f"SELECT COUNT(*) FROM ({query}) AS source_rows"
        )
        self._login_timeout = login_timeout
        self._query_timeout = query_timeout

    @property
    def description(self) -> SourceDescription:
        """``odbc`` and the server named in the connection string."""
        return SourceDescription(kind="odbc", server=cs.server_label(self._pairs))

    @property
    def connecting_message(self) -> str:
        """``Connecting to SQL Server X...`` for SQL Server drivers, else ``Connecting to X...``."""
        label = cs.server_label(self._pairs)
        if cs.is_sql_server(self._pairs):
            return f"Connecting to SQL Server {label}..."
        return f"Connecting to {label}..."

    @property
    def fetching_from(self) -> str:
        """The view's name, or ``custom query``."""
        return self._view if self._view is not None else "custom query"

    def describe(self, exc: BaseException) -> str:
        """A driver error as one safe line."""
        return cs.describe_driver_error(exc, self._hidden)

    def warnings_in(self, messages: Iterable[tuple[object, object]]) -> list[str]:
        """A statement's diagnostics (pyodbc's ``cursor.messages``) as safe warnings."""
        return diagnostics.warnings_from(messages, self._hidden)

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[OdbcSession]:
        """A session on its own connection and thread; closed (never waited on long) at exit."""
        import aioodbc
        import pyodbc

        executor = DaemonThreadExecutor("odbc-source")
        # The driver's warnings while connecting, for the run's lines.
        warnings: list[str] = []
        try:
            conn = await aioodbc.connect(
                dsn=self._text,
                timeout=self._login_timeout,
                autocommit=True,
                executor=executor,
                after_created=partial(self._set_query_timeout, warnings),
            )
        except (pyodbc.Error, UnicodeError) as exc:
            executor.shutdown()
            raise SourceError(self.describe(exc)) from None
        except BaseException:
            executor.shutdown()
            raise
        session = OdbcSession(self, conn, executor, warnings)
        try:
            yield session
        except asyncio.CancelledError:
            if executor.busy:
                # A call is blocked in the driver: SQLCancel it, and let the cancel finish
                # before closing, so the statement is never freed under it.
                cancelled = session.interrupt()
                if cancelled is not None:
                    await asyncio.wait({cancelled}, timeout=_CLOSE_SECONDS)
            raise
        finally:
            try:
                async with asyncio.timeout(_CLOSE_SECONDS):
                    # The query's statement first: left open after a run that stopped
                    # mid-fetch, it keeps the source busy (the SQLite3 driver keeps the file
                    # locked against writers) for as long as the connection lingers.
                    await session.close()
                    await conn.close()
            except TimeoutError:
                logger.warning(
                    "closing the ODBC connection timed out; it closes once the driver returns"
                )
                _close_in_background(conn, executor)
            except pyodbc.Error as exc:
                logger.warning("closing the ODBC connection failed: %s", self.describe(exc))
            executor.shutdown()

    async def _set_query_timeout(self, warnings: list[str], raw: Any) -> None:
        """Give every statement the driver's query timeout; a refusal is a warning (logged and
        in the run's lines)."""
        import pyodbc

        try:
            raw.timeout = self._query_timeout
        except pyodbc.Error as exc:
            warning = (
                f"the ODBC driver refused a query timeout of {self._query_timeout} s "
                f"({self.describe(exc)}); the run's own timeout still bounds it"
            )
            logger.warning("%s", warning)
            warnings.append(warning)


def _close_in_background(conn: aioodbc.Connection, executor: DaemonThreadExecutor) -> None:
    """Leave the connection to the session's own thread, queued behind the call that blocks it.

    aioodbc closes a connection it still holds when it is garbage-collected, on whatever
    thread that happens — the event loop's — and the close would wait for the blocked call,
    freezing the whole service. So it is taken from aioodbc and closed on the session's thread.
    """
    raw = conn._conn
    if raw is None:
        return
    conn._conn = None
    executor.submit(_close_quietly, raw)


def _close_quietly(raw: Any) -> None:
    try:
        raw.close()
    except Exception as exc:  # the server is gone; nothing more to do
        logger.debug("closing an abandoned ODBC connection: %s", exc)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class OdbcSession:
    """One connection's count, execute and fetch."""

    def __init__(
        self,
        source: OdbcSource,
        conn: aioodbc.Connection,
        executor: DaemonThreadExecutor,
        warnings: list[str],
    ) -> None:
        self._source = source
        self._conn = conn
        self._executor = executor
        self._warnings = warnings
        self._cursor: aioodbc.Cursor | None = None
        self._active: Any = None

    async def count(self) -> int | None:
        """``SELECT COUNT(*)`` over the same query; None when the driver cannot answer it."""
        import pyodbc

        cursor = None
        try:
            cursor = await self._new_cursor()
            await cursor.execute(self._source._count)
            row = await cursor.fetchone()
            count = int(row[0]) if row is not None else None
        except (pyodbc.Error, ValueError, TypeError) as exc:
            logger.info("counting the source rows failed: %s", self._source.describe(exc))
            count = None
        # Not in a finally: after a cancel the close would queue behind the blocked call.
        if cursor is not None:
            with contextlib.suppress(pyodbc.Error):
                await cursor.close()
        return count

    async def execute(self) -> list[Column]:
        """Run the query; the result's columns with their SQLite types."""
        import pyodbc

        try:
            self._cursor = await self._new_cursor()
            await self._cursor.execute(self._source._query)
        except (pyodbc.Error, UnicodeError) as exc:
            raise SourceError(self._source.describe(exc)) from None
        # What the driver said besides the rows (SQL_SUCCESS_WITH_INFO): SQL Server's
        # "Null value is eliminated by an aggregate", PostgreSQL's notices, ...
        said = getattr(self._cursor._impl, "messages", None) or []
        self._warnings += self._source.warnings_in(said)
        description = self._cursor.description or ()
        return [Column(str(item[0]), sqlite_type_for(item[1])) for item in description]

    async def fetch_each(self, size: int, each: Callable[[list[Row]], bool]) -> None:
        """``fetchmany(size)`` — always with an explicit size — and ``each`` of its rows, batch
        after batch in one call on the session's thread."""
        import pyodbc

        assert self._cursor is not None, "execute() first"
        raw = self._cursor._impl
        describe = self._source.describe

        def fetch_all() -> None:
            while True:
                try:
                    rows: list[Row] = raw.fetchmany(size)
                except (pyodbc.Error, UnicodeError) as exc:
                    # pyodbc decodes text strictly (no way to ask for replacement characters
                    # without guessing each driver's byte encoding): text it cannot decode
                    # ends the run.
                    raise SourceError(describe(exc)) from None
                if not each(rows) or not rows:
                    return

        await asyncio.get_running_loop().run_in_executor(self._executor, fetch_all)

    def warnings(self) -> list[str]:
        """The driver's warnings since the last call (connecting, executing)."""
        said, self._warnings[:] = list(self._warnings), []
        return said

    async def close(self) -> None:
        """Close the query's cursor, if it is still open; a failure is only logged (the
        connection is closed next either way)."""
        import pyodbc

        cursor, self._cursor = self._cursor, None
        if cursor is None or cursor.closed:
            return
        try:
            await cursor.close()
        except pyodbc.Error as exc:
            logger.info("closing the ODBC cursor failed: %s", self._source.describe(exc))

    def interrupt(self) -> asyncio.Future[None] | None:
        """SQLCancel on the statement under way, from a separate daemon thread.

        Returns a future that resolves once the cancel call has returned.
        """
        raw = self._active
        if raw is None:
            return None
        loop = asyncio.get_running_loop()
        returned: asyncio.Future[None] = loop.create_future()

        def cancel() -> None:
            try:
                raw.cancel()
            except Exception as exc:  # the statement may be gone already
                logger.debug("cancelling the ODBC statement: %s", exc)
            finally:
                loop.call_soon_threadsafe(_resolve, returned)

        threading.Thread(target=cancel, name="odbc-cancel", daemon=True).start()
        return returned

    async def _new_cursor(self) -> aioodbc.Cursor:
        import pyodbc

        try:
            cursor = await self._conn.cursor()
        except pyodbc.Error as exc:
            if not self._conn.timeout:
                raise
            # Some drivers refuse SQL_ATTR_QUERY_TIMEOUT on the statement: warn, go on without.
            warning = (
                f"the ODBC driver refused the query timeout ({self._source.describe(exc)}); "
                "the run's own timeout still bounds it"
            )
            logger.warning("%s", warning)
            self._warnings.append(warning)
            self._conn._conn.timeout = 0
            cursor = await self._conn.cursor()
        # aioodbc keeps the pyodbc cursor private; SQLCancel needs it from another thread.
        self._active = cursor._impl
        return cursor
