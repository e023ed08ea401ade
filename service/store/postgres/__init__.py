"""The store's PostgreSQL dialect (DATABASE_URL=postgresql://…): raw SQL tuned for PostgreSQL,
through psycopg 3. Imported from here, never through its modules.

:mod:`.schema` creates the job-log tables or adopts those the Rails migrations made, with ids
in commit order, and builds the indexes over existing rows without blocking writers.
:mod:`.database`, :mod:`.writes`, :mod:`.reads`, :mod:`.search` (pages of runs),
:mod:`.timeline` (buckets) and :mod:`.json_rows` (JSON written by the database, the same bytes
as SQLite mode's) are the twins of the store's modules of the same names, answering the
store's contract through :class:`PostgresStore`.
:mod:`.lease` is the sync's run lock across nodes (a lease), its fencing, and the claims of
scheduled slots. :mod:`.wakeups` wakes this node's readers for every node's commits.
:mod:`.node` holds one node's sessions together. :mod:`.open_orders` stages each run in a
table of its own and swaps it in, fenced; :mod:`.staging` writes a run's batches from the
source's thread, and :class:`PgTarget` (:mod:`.target`) answers the store's SyncTarget with
both. :mod:`.failures` turns psycopg's errors into the store's.
"""

from .database import PgDatabase
from .failures import translated
from .lease import LeaseLost, RunLease, claim_slot, database_now, fence
from .node import PgNode
from .open_orders import (
    change_summary,
    count_open_orders,
    create_staging,
    drop_staging,
    stage,
    staging_table,
    swap_open_orders,
)
from .schema import INDEXES, apply_schema, build_indexes, index_state
from .staging import PgStagingWriter
from .store import PostgresStore
from .target import PgTarget
from .wakeups import CHANNEL, Wake, Wakeups, notify

__all__ = [
    "CHANNEL",
    "INDEXES",
    "LeaseLost",
    "PgDatabase",
    "PgNode",
    "PgStagingWriter",
    "PgTarget",
    "PostgresStore",
    "RunLease",
    "Wake",
    "Wakeups",
    "apply_schema",
    "build_indexes",
    "change_summary",
    "claim_slot",
    "count_open_orders",
    "create_staging",
    "database_now",
    "drop_staging",
    "fence",
    "index_state",
    "notify",
    "stage",
    "staging_table",
    "swap_open_orders",
    "translated",
]
