"""The store's PostgreSQL dialect (DATABASE_URL=postgresql://…): raw SQL tuned for PostgreSQL,
through psycopg 3. Imported from here, never through its modules.

:mod:`.schema` creates the job-log tables or adopts those the Rails migrations made, with ids
in commit order, and builds the indexes over existing rows without blocking writers.
"""

from .schema import INDEXES, apply_schema, build_indexes, index_state

__all__ = ["INDEXES", "apply_schema", "build_indexes", "index_state"]
