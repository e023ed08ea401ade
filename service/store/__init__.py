"""The store: every SQL statement the service runs, returning :mod:`service.wire`'s records.

Everything the rest of the service uses is imported from here, never from a module inside:
the connections (:mod:`.database`), the reads (:mod:`.reads`, pages of runs and searches in
:mod:`.search`) and writes (:mod:`.writes`) of job logs, the ``open_orders`` staging and
swap, the purge's statements, the readiness write.
"""

from .changes import ChangeWatch
from .database import Database, DatabaseUnavailable
from .errors import (
    IncompatibleSchema,
    InvalidMessage,
    InvalidTransition,
    NotFound,
    StoreError,
    is_busy,
    is_full,
)
from .heartbeat import Heartbeat, Unready
from .models import MAX_PAGE, MAX_PER_PAGE, JobLogQuery
from .open_orders import (
    OPEN_ORDERS,
    OPEN_ORDERS_STAGING,
    ChangeSummary,
    InvalidColumns,
    change_summary,
    count_open_orders,
    create_staging,
    drop_staging,
    swap_open_orders,
)
from .purge import (
    DetailMark,
    MonthCount,
    Purgeable,
    delete_details_through,
    delete_logs,
    purgeable_after,
    purgeable_by_month,
)
from .reads import (
    DetailPageJson,
    changes_since,
    count_by_status,
    detail_page,
    detail_page_json,
    details_after,
    high_water_marks,
    iter_details,
    job_log,
    job_log_with_details,
    job_log_with_details_json,
    last_detail_id,
    last_details,
    last_success_at,
    latest_job_log,
    latest_with_details_json,
    logs_with_details_after,
    open_job_logs,
    previous_finished_status,
)
from .retry import until_written
from .schema import COMPOSITE_INDEX_MAX_RUNS, BackgroundBuild, BuildProgress, read_progress
from .search import SEARCH_TOTAL_CAP, list_job_logs, list_job_logs_json
from .staging import StagingClosed, StagingWriter, open_staging
from .timestamps import from_db, to_db
from .writes import (
    MAX_MESSAGE_LENGTH,
    add_detail,
    close_unfinished,
    create_job_log,
    fail_job_log,
    fit_message,
    name_for,
    set_status,
)

__all__ = [
    "COMPOSITE_INDEX_MAX_RUNS",
    "MAX_MESSAGE_LENGTH",
    "MAX_PAGE",
    "MAX_PER_PAGE",
    "OPEN_ORDERS",
    "OPEN_ORDERS_STAGING",
    "SEARCH_TOTAL_CAP",
    "BackgroundBuild",
    "BuildProgress",
    "ChangeSummary",
    "ChangeWatch",
    "Database",
    "DatabaseUnavailable",
    "DetailMark",
    "DetailPageJson",
    "Heartbeat",
    "IncompatibleSchema",
    "InvalidColumns",
    "InvalidMessage",
    "InvalidTransition",
    "JobLogQuery",
    "MonthCount",
    "NotFound",
    "Purgeable",
    "StagingClosed",
    "StagingWriter",
    "StoreError",
    "Unready",
    "add_detail",
    "change_summary",
    "changes_since",
    "close_unfinished",
    "count_by_status",
    "count_open_orders",
    "create_job_log",
    "create_staging",
    "delete_details_through",
    "delete_logs",
    "detail_page",
    "detail_page_json",
    "details_after",
    "drop_staging",
    "fail_job_log",
    "fit_message",
    "from_db",
    "high_water_marks",
    "is_busy",
    "is_full",
    "iter_details",
    "job_log",
    "job_log_with_details",
    "job_log_with_details_json",
    "last_detail_id",
    "last_details",
    "last_success_at",
    "latest_job_log",
    "latest_with_details_json",
    "list_job_logs",
    "list_job_logs_json",
    "logs_with_details_after",
    "name_for",
    "open_job_logs",
    "open_staging",
    "previous_finished_status",
    "purgeable_after",
    "purgeable_by_month",
    "read_progress",
    "set_status",
    "swap_open_orders",
    "to_db",
    "until_written",
]
