"""Retention: finished logs older than RETENTION_DAYS are archived (when ARCHIVE_DIR is set) and
deleted with their details, daily and on demand (``python -m service purge``).

policy.py is the purge (its batches, report and lock) and the daily loop; archive.py writes the
monthly gzip files; the SQL is in service/store/purge.py.
"""

from service.retention.policy import PurgeLocked, PurgeReport, PurgeStopped, Retention, purge

__all__ = ["PurgeLocked", "PurgeReport", "PurgeStopped", "Retention", "purge"]
