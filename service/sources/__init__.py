"""Where the synced rows come from: an ODBC data source, or the embedded demo source."""

from __future__ import annotations

from pathlib import Path

from service.settings import Settings

from .base import Source, SourceDescription, SourceError
from .demo import DemoSource
from .odbc import OdbcSource, import_driver_manager

__all__ = ["Source", "SourceDescription", "SourceError", "build_source", "demo_path"]


def demo_path(settings: Settings) -> Path:
    """The demo source's file, beside the service's database."""
    return settings.database_path.with_name("demo-source.sqlite3")


def build_source(settings: Settings) -> Source:
    """The ODBC source when SOURCE_ODBC is set (unixODBC checked now), else the demo source."""
    if settings.source_odbc is None:
        return DemoSource(demo_path(settings), delay=settings.demo_delay_seconds)
    import_driver_manager()
    query = settings.source_query
    return OdbcSource(
        settings.source_odbc.get_secret_value(),
        view=None if query is not None else settings.source_view,
        query=query,
        login_timeout=settings.source_login_timeout,
        query_timeout=settings.source_query_timeout,
    )
