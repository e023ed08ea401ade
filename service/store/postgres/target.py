"""The sync's target on PostgreSQL: the store's SyncTarget (service/store/contract.py) over
open_orders.py's per-run staging tables and fenced swap, and staging.py's writer."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager

from service.sources.base import Column

from ..contract import StagingAppender
from ..open_orders import ChangeSummary
from . import open_orders, staging
from .database import PgDatabase
from .lease import LeaseLost


class PgTarget:
    """open_orders on PostgreSQL: a staging table per run, swapped in under the run lease."""

    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    async def recover(self) -> None:
        """Drop every run's staging table: only with the run lease held, when no run of any
        node can be staging."""
        await open_orders.drop_staging(self.db)

    async def drop_staging(self, run_id: int) -> None:
        await open_orders.drop_staging(self.db, run_id)

    async def create_staging(self, run_id: int, columns: Sequence[Column]) -> None:
        await open_orders.create_staging(self.db, run_id, columns)

    def open_staging(self, run_id: int, width: int) -> AbstractAsyncContextManager[StagingAppender]:
        return staging.open_staging(self.db, run_id)

    async def count_open_orders(self) -> int:
        return await open_orders.count_open_orders(self.db)

    async def change_summary(self, run_id: int, key: str) -> ChangeSummary | None:
        return await open_orders.change_summary(self.db, run_id, key)

    async def swap_open_orders(self, run_id: int, epoch: int | None) -> None:
        """The swap, fenced by ``epoch``; a run without one (no lease) swaps nothing."""
        if epoch is None:
            raise LeaseLost("the run holds no run lease; open_orders was left as it was")
        await open_orders.swap_open_orders(self.db, run_id, epoch)
