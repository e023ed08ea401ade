"""The job-log database this node runs on, as the rest of the service sees it.

SQLite (the embedded default): one file, the processes of one machine — the server, a
``run-once``, the Rails app — with a file lock for the sync and a cheap change check for other
processes' commits. PostgreSQL (``DATABASE_URL``): several nodes on one database, with the run
lease, claimed slots and take-over for the sync, and LISTEN/NOTIFY for every node's commits.
:func:`open_backend` opens the one the settings name, and closes it at exit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime

from service.clock import Clock
from service.retention.policy import purge_lock
from service.runlock import FileGate, RunGate, RunLock
from service.settings import Settings
from service.store import (
    BackgroundBuild,
    ChangeWatch,
    Database,
    Heartbeat,
    JobLogStore,
    SqliteStore,
    SqliteTarget,
    SyncTarget,
)
from service.store.postgres import PgNode


@dataclass(frozen=True)
class Several:
    """What the scheduler needs with several nodes: slots and take-over."""

    claim: Callable[[datetime], Awaitable[bool]]
    claim_day: Callable[[date], Awaitable[bool]]
    takeover_seconds: float
    sync_node: Callable[[], Awaitable[str | None]]


@dataclass(frozen=True)
class Backend:
    """The store and what goes with it on one backend."""

    store: JobLogStore
    target: SyncTarget
    gate: RunGate
    # One purge at a time (across processes; across nodes on PostgreSQL).
    purge_gate: RunGate
    # Called after each commit this node must show: its own (and, on PostgreSQL, every node's).
    on_commit: list[Callable[[], None]]
    # Raises service.store.Unready when the database cannot take a write or a round trip now.
    check_ready: Callable[[], Awaitable[None]]
    # The scheduler's time: on PostgreSQL the database's, so every node ticks on one grid.
    clock: Clock
    kind: str
    several: Several | None = None
    # SQLite mode: the database file, and its change check (None when EVENTS_CHECK_SECONDS=0).
    database: Database | None = None
    watch: ChangeWatch | None = None
    # How often the event hub reads without a wake-up.
    poll_seconds: float = 1.0


@asynccontextmanager
async def open_backend(
    settings: Settings, clock: Clock, *, serving: bool = True
) -> AsyncIterator[Backend]:
    """The backend the settings name, open; closed at exit. A command run to its end
    (``serving=False``: run-once, purge) builds no missing index and hears no other node."""
    opener = _postgres if settings.database_url is not None else _sqlite
    async with opener(settings, clock, serving) as backend:
        yield backend


@asynccontextmanager
async def open_database(settings: Settings, clock: Clock) -> AsyncIterator[Database]:
    """The job-log database, closed at exit."""
    db = await Database.open(
        settings.database_path,
        busy_timeout_seconds=settings.database_busy_timeout_seconds,
        clock=clock,
        zone=settings.zone,
    )
    try:
        yield db
    finally:
        await db.close()


@asynccontextmanager
async def open_target(settings: Settings, db: Database) -> AsyncIterator[Database]:
    """The database that receives open_orders: the job-log one unless TARGET_DATABASE_PATH."""
    path = settings.target_database_path
    if path is None or path.resolve() == settings.database_path.resolve():
        yield db
        return
    target = await Database.open(
        path,
        busy_timeout_seconds=settings.database_busy_timeout_seconds,
        clock=db.clock,
        apply_schema=False,
    )
    try:
        yield target
    finally:
        await target.close()


@asynccontextmanager
async def _sqlite(settings: Settings, clock: Clock, serving: bool) -> AsyncIterator[Backend]:
    async with open_database(settings, clock) as db, open_target(settings, db) as target:
        heartbeat = Heartbeat(db)
        # What an adopted database lacks (runs by status, search index) is built while serving.
        build = BackgroundBuild(db, max_rows=settings.adoption_batch_rows)
        if serving:
            build.start()
        watch = ChangeWatch(db.path) if serving and settings.events_check_seconds > 0 else None
        try:
            yield Backend(
                store=SqliteStore(db),
                target=SqliteTarget(target),
                gate=FileGate(RunLock.beside(settings.database_path)),
                purge_gate=FileGate(purge_lock(settings.database_path)),
                on_commit=db.on_commit,
                check_ready=heartbeat.check,
                clock=clock,
                kind="sqlite",
                database=db,
                watch=watch,
                poll_seconds=settings.events_poll_seconds,
            )
        finally:
            if watch is not None:
                watch.close()
            await build.close()
            await heartbeat.close()


@asynccontextmanager
async def _postgres(settings: Settings, clock: Clock, serving: bool) -> AsyncIterator[Backend]:
    assert settings.database_url is not None
    direct = settings.database_direct_url
    async with PgNode.open(
        settings.database_url.get_secret_value(),
        direct_url=direct.get_secret_value() if direct is not None else None,
        node=settings.node,
        clock=clock,
        zone=settings.zone,
        lease_seconds=settings.sync_lease_seconds,
        serving=serving,
    ) as node:
        offset = await node.clock_offset()
        yield Backend(
            store=node.store,
            target=node.target,
            gate=node.lease,
            purge_gate=node.purge_lock,
            on_commit=node.db.on_commit,
            check_ready=node.check_ready,
            clock=lambda: clock() + offset,
            kind="postgresql",
            several=Several(
                claim=node.claim,
                claim_day=node.claim_day,
                takeover_seconds=min(1.0, settings.sync_lease_seconds / 3),
                sync_node=node.sync_node,
            ),
            poll_seconds=min(1.0, settings.events_poll_seconds),
        )
