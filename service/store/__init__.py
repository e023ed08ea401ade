"""The store: every SQL statement the service runs, returning pydantic models."""

from .database import Database, DatabaseUnavailable
from .errors import IncompatibleSchema, InvalidMessage, InvalidTransition, NotFound, StoreError
from .job_logs import (
    MAX_MESSAGE_LENGTH,
    add_detail,
    close_unfinished,
    count_by_status,
    create_job_log,
    fail_job_log,
    fit_message,
    get_job_log,
    get_job_log_by_name,
    latest_job_log,
    list_job_logs,
    set_status,
)
from .models import (
    JobLog,
    JobLogDetail,
    JobLogPage,
    JobLogQuery,
    JobLogWithDetails,
    Status,
    StatusCounts,
)

__all__ = [
    "MAX_MESSAGE_LENGTH",
    "Database",
    "DatabaseUnavailable",
    "IncompatibleSchema",
    "InvalidMessage",
    "InvalidTransition",
    "JobLog",
    "JobLogDetail",
    "JobLogPage",
    "JobLogQuery",
    "JobLogWithDetails",
    "NotFound",
    "Status",
    "StatusCounts",
    "StoreError",
    "add_detail",
    "close_unfinished",
    "count_by_status",
    "create_job_log",
    "fail_job_log",
    "fit_message",
    "get_job_log",
    "get_job_log_by_name",
    "latest_job_log",
    "list_job_logs",
    "set_status",
]
