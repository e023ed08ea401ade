"""A real PostgreSQL server for tests: a throwaway cluster in /tmp, reached over 127.0.0.1.

The Debian packages ``postgresql`` (initdb, pg_ctl, postgres, psql) and ``odbc-postgresql``
(psqlODBC, the ``PostgreSQL Unicode`` driver) provide it; missing ones skip locally and fail
under CI=true. PostgreSQL refuses to run as root, so as root every server command runs as the
``postgres`` system user (``runuser``), in a folder of its own under /tmp: pytest's tmp_path sits
below mode-700 folders that user cannot enter.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg

from .system import free_port, missing, require_command

SUPERUSER = "postgres"
"""The cluster's superuser; it logs in without a password (local socket and 127.0.0.1)."""

PACKAGES = "the Debian packages postgresql odbc-postgresql unixodbc"
ODBC_DRIVER_NAME = "PostgreSQL Unicode"
ODBC_DRIVER_FILE = Path("/usr/lib/x86_64-linux-gnu/odbc/psqlodbcw.so")
ODBCINST_INI = Path("/etc/odbcinst.ini")

COMMAND_TIMEOUT = 60.0
START_ATTEMPTS = 3
"""Tries with a fresh free port, should another process take the port between pick and bind."""


def _postgres_bin() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb, pg_ctl and psql."""
    candidates = []
    for bindir in Path("/usr/lib/postgresql").glob("*/bin"):
        version = bindir.parent.name
        tools = ("initdb", "pg_ctl", "postgres", "psql")
        if version.isdigit() and all((bindir / tool).is_file() for tool in tools):
            candidates.append((int(version), bindir))
    if not candidates:
        missing(f"PostgreSQL (/usr/lib/postgresql/*/bin, {PACKAGES})")
    return max(candidates)[1]


def _odbc_driver() -> str:
    """The DRIVER value for psqlODBC: its registered name, else the library's path."""
    try:
        registered = f"[{ODBC_DRIVER_NAME}]" in ODBCINST_INI.read_text(errors="replace")
    except OSError:
        registered = False
    if registered:
        return ODBC_DRIVER_NAME
    if ODBC_DRIVER_FILE.is_file():
        return str(ODBC_DRIVER_FILE)
    missing(f"the psqlODBC driver ({ODBC_DRIVER_NAME}, {PACKAGES})")
    raise AssertionError("unreachable")  # missing() always raises


def _odbc_value(value: str) -> str:
    """``value`` as an ODBC connection-string value, braced when it holds special characters."""
    if value != value.strip() or any(char in value for char in ";{}="):
        return "{" + value.replace("}", "}}") + "}"
    return value


def _sql_literal(value: str) -> str:
    """``value`` as an SQL string literal (standard_conforming_strings is on)."""
    return "'" + value.replace("'", "''") + "'"


def _sql_identifier(value: str) -> str:
    """``value`` as a quoted SQL identifier."""
    return '"' + value.replace('"', '""') + '"'


@dataclass(frozen=True)
class PostgresServer:
    """A running test cluster; ``user`` may only connect and read, over 127.0.0.1 by password."""

    host: str
    port: int
    database: str
    user: str
    password: str
    directory: Path = field(repr=False)
    """The throwaway folder: the socket, ``data/`` (the cluster) and ``server.log``."""
    bindir: Path = field(repr=False)
    driver: str = field(default=ODBC_DRIVER_NAME, repr=False)

    @property
    def data(self) -> Path:
        """The cluster's data directory."""
        return self.directory / "data"

    @property
    def log(self) -> Path:
        """The server's log file."""
        return self.directory / "server.log"

    def odbc(self, *, password: str | None = None, **extra: str) -> str:
        """An ODBC connection string for psqlODBC as ``user``.

        ``password`` replaces the real one (for wrong-password tests); ``extra`` key=values are
        appended (and override the defaults of the same name).
        """
        parts: dict[str, str] = {
            "DRIVER": self.driver,
            "SERVER": self.host,
            "PORT": str(self.port),
            "DATABASE": self.database,
            "UID": self.user,
            "PWD": self.password if password is None else password,
            "UseDeclareFetch": "1",
            "Fetch": "500",
        }
        for key, value in extra.items():
            same = next((name for name in parts if name.lower() == key.lower()), key)
            parts[same] = value
        return ";".join(
            f"{key}={{{value}}}" if key == "DRIVER" else f"{key}={_odbc_value(value)}"
            for key, value in parts.items()
        )

    def psql(self, sql: str, database: str | None = None) -> str:
        """Run ``sql`` as the superuser in ``database`` (default: the server's own); psql's
        unaligned, tuples-only output.

        Statements run one by one and the first error stops the script and raises
        AssertionError with psql's standard error.
        """
        return self._psql(sql, self.database if database is None else database)

    def store_database(self, name: str) -> str:
        """A new database ``name`` for the job-log store, owned by a login role of the same
        name (so it may create tables and the pg_trgm extension, as a plant's would); its
        ``postgresql://`` URL, password included."""
        password = secrets.token_urlsafe(18)
        role = _sql_identifier(name)
        self._psql(
            f"CREATE ROLE {role} LOGIN PASSWORD {_sql_literal(password)};\n"
            f"CREATE DATABASE {role} OWNER {role};\n",
            "postgres",
        )
        return f"postgresql://{name}:{password}@{self.host}:{self.port}/{name}"

    def terminate_backends(self, user: str | None = None) -> None:
        """End every session of ``user`` (default ``self.user``), waiting until they are gone."""
        name = self.user if user is None else user
        self.psql(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
            f" WHERE usename = {_sql_literal(name)} AND pid <> pg_backend_pid();"
        )

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop -m fast``): sessions end, new connections are refused."""
        self._pg_ctl("stop", "-m", "fast")

    def start(self) -> None:
        """Start the server again, same port and data; return once it accepts connections."""
        self._pg_ctl("start", "-l", str(self.log))

    def running(self) -> bool:
        """Whether the server's postmaster runs (``pg_ctl status``)."""
        result = _run_as_postgres(
            [str(self.bindir / "pg_ctl"), "status", "-D", str(self.data)], self.directory
        )
        return result.returncode == 0

    def _pg_ctl(self, action: str, *args: str) -> None:
        command = [str(self.bindir / "pg_ctl"), action, "-D", str(self.data), "-w", "-t", "30"]
        result = _run_as_postgres([*command, *args], self.directory)
        if result.returncode != 0:
            raise AssertionError(
                f"pg_ctl {action} failed ({result.returncode}): {result.stdout}{result.stderr}"
                f"\n--- server log ---\n{self._log_tail()}"
            )

    def _psql(self, sql: str, database: str) -> str:
        command = [
            str(self.bindir / "psql"),
            "--no-psqlrc",
            "--quiet",
            "--no-align",
            "--tuples-only",
            "--set=ON_ERROR_STOP=1",
            f"--host={self.host}",
            f"--port={self.port}",
            f"--username={SUPERUSER}",
            f"--dbname={database}",
            "--file=-",
        ]
        result = _run_as_postgres(command, self.directory, stdin=sql)
        if result.returncode != 0:
            raise AssertionError(f"psql failed ({result.returncode}): {result.stderr}\n{sql}")
        return result.stdout

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError as error:
            return f"(no log: {error})"


def _run_as_postgres(
    command: Sequence[str], cwd: Path, *, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as the ``postgres`` system user when root, else as ourselves.

    The environment is minimal so no PG* variable or ~/.psqlrc of the caller leaks in.
    """
    prefix: list[str] = []
    if os.geteuid() == 0:
        prefix = [require_command("runuser"), "-u", SUPERUSER, "--"]
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LC_ALL": "C.UTF-8",
        "HOME": str(cwd),
        "TZ": "UTC",
    }
    return subprocess.run(
        [*prefix, *command],
        cwd=cwd,
        env=env,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


def _owned_by_postgres(path: Path) -> None:
    """Hand ``path`` to the ``postgres`` user when we are root (and so run it as that user)."""
    if os.geteuid() == 0:
        shutil.chown(path, user=SUPERUSER, group=SUPERUSER)


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    _owned_by_postgres(path)


def _configure(server: PostgresServer) -> None:
    """Settings for a fast, loopback-only throwaway cluster and its access rules."""
    _write(
        server.data / "joblog.conf",
        "\n".join(
            [
                f"port = {server.port}",
                f"listen_addresses = '{server.host}'",
                f"unix_socket_directories = '{server.directory}'",
                "password_encryption = 'scram-sha-256'",
                "fsync = off",
                "synchronous_commit = off",
                "full_page_writes = off",
                "max_connections = 50",
                "shared_buffers = 16MB",
                "logging_collector = off",
                "log_connections = on",
                "",
            ]
        ),
    )
    conf = server.data / "postgresql.conf"
    text = conf.read_text()
    if "include = 'joblog.conf'" not in text:
        conf.write_text(text + "\ninclude = 'joblog.conf'\n")
    # First match wins: the superuser needs no password, everyone else needs theirs.
    _write(
        server.data / "pg_hba.conf",
        "\n".join(
            [
                "# TYPE  DATABASE  USER      ADDRESS       METHOD",
                "local   all       all                     trust",
                f"host    all       {SUPERUSER}  127.0.0.1/32  trust",
                "host    all       all       127.0.0.1/32  scram-sha-256",
                "",
            ]
        ),
    )


def _initdb(bindir: Path, directory: Path) -> None:
    data = directory / "data"
    command = [
        str(bindir / "initdb"),
        f"--pgdata={data}",
        f"--username={SUPERUSER}",
        "--encoding=UTF8",
        "--locale=C.UTF-8",
        "--auth=trust",
        "--no-sync",
    ]
    result = _run_as_postgres(command, directory)
    if result.returncode != 0:
        raise AssertionError(f"initdb failed ({result.returncode}): {result.stderr}")


def _start_on_a_free_port(server: PostgresServer) -> PostgresServer:
    """Start ``server``; should its port have been taken meanwhile, retry on another one."""
    for attempt in range(1, START_ATTEMPTS + 1):
        _configure(server)
        try:
            server.start()
        except AssertionError as error:
            port_taken = re.search(r"could not bind|Address already in use", str(error))
            if not port_taken or attempt == START_ATTEMPTS:
                raise
            server = replace(server, port=free_port())
        else:
            return server
    raise AssertionError("unreachable")


def _create_reader_and_database(server: PostgresServer) -> None:
    """The login role, and the database it may connect to and read every table and view of."""
    user, database = _sql_identifier(server.user), _sql_identifier(server.database)
    server._psql(
        f"CREATE ROLE {user} LOGIN PASSWORD {_sql_literal(server.password)};\n"
        f"CREATE DATABASE {database} OWNER {SUPERUSER};\n"
        f"REVOKE ALL ON DATABASE {database} FROM PUBLIC;\n"
        f"GRANT CONNECT ON DATABASE {database} TO {user};\n",
        "postgres",
    )
    server.psql(
        f"GRANT USAGE ON SCHEMA public TO {user};\n"
        f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {user};\n"
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {SUPERUSER} IN SCHEMA public"
        f" GRANT SELECT ON TABLES TO {user};\n"
    )


def _shut_down(server: PostgresServer) -> None:
    """Stop the server however it is (fast, else immediate); never raises."""
    try:
        if server.running():
            try:
                server.stop()
            except AssertionError:
                server._pg_ctl("stop", "-m", "immediate")
    except (AssertionError, OSError, subprocess.SubprocessError):
        pass


@contextmanager
def postgres_server(
    *, database: str = "orders", user: str = "sync_reader"
) -> Iterator[PostgresServer]:
    """A fresh PostgreSQL cluster, running on a free loopback port until the block ends.

    The superuser ``postgres`` logs in without a password (socket and 127.0.0.1; see
    :meth:`PostgresServer.psql`); ``user`` logs in over 127.0.0.1 with a random password
    (SCRAM-SHA-256), may connect to ``database`` only and read (SELECT) every table and view
    in its ``public`` schema, present and future. Afterwards the server is stopped and its folder
    removed, whatever happened.
    """
    bindir = _postgres_bin()
    driver = _odbc_driver()
    if os.geteuid() == 0:
        require_command("runuser")
    directory = Path(tempfile.mkdtemp(prefix="joblog-pg-"))
    server = PostgresServer(
        host="127.0.0.1",
        port=free_port(),
        database=database,
        user=user,
        password=secrets.token_urlsafe(18),
        directory=directory,
        bindir=bindir,
        driver=driver,
    )
    try:
        _owned_by_postgres(directory)
        _initdb(bindir, directory)
        server = _start_on_a_free_port(server)
        _create_reader_and_database(server)
        yield server
    finally:
        _shut_down(server)
        shutil.rmtree(directory, ignore_errors=True)


@asynccontextmanager
async def connected(url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A plain session on ``url`` (autocommit, rows as tuples), as another program opens one."""
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        yield conn
    finally:
        await conn.close()


async def schema_database(server: PostgresServer, name: str) -> str:
    """:meth:`PostgresServer.store_database` with the job-log schema applied; its URL."""
    from service.store.postgres import apply_schema

    url = server.store_database(name)
    async with connected(url) as conn:
        await apply_schema(conn)
    return url
