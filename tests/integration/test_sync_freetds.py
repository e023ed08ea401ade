"""The sync job through FreeTDS (tdsodbc): a closed port, and a server that never answers."""

from __future__ import annotations

import time

import pytest

from service.settings import Settings
from service.wire import Status
from tests.support.odbc import freetds
from tests.support.silent import silent_server
from tests.support.sync import sync_service, with_source
from tests.support.system import free_port

pytestmark = pytest.mark.integration


async def test_a_closed_port_is_a_connection_error(settings: Settings) -> None:
    odbc = freetds(free_port())
    async with sync_service(with_source(settings, odbc)) as service:
        log = await service.scheduler.run_once()
        assert log is not None
        assert log.status is Status.error
        messages = await service.messages(log.id)
    assert messages == [
        "Job started - SyncOpenOrdersJob",
        "Connecting to SQL Server 127.0.0.1...",
        "ERROR: Connection failed - [08S01] Unable to connect: "
        "Adaptive Server is unavailable or does not exist",
    ]


async def test_a_silent_server_is_ended_by_the_login_timeout(settings: Settings) -> None:
    with silent_server() as port:
        source = with_source(settings, freetds(port), source_login_timeout=2)
        async with sync_service(source) as service:
            started = time.monotonic()
            log = await service.scheduler.run_once()
            elapsed = time.monotonic() - started
            assert log is not None
            assert log.status is Status.error
            messages = await service.messages(log.id)
    assert messages[-1].startswith("ERROR: Connection failed - [HYT00] ")
    assert elapsed < 8
    assert not any("s3cret" in m for m in messages)
