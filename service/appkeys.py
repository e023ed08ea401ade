"""Every slot of the application, declared once as a typed key."""

from __future__ import annotations

from aiohttp import web

from service.backend import Backend
from service.clock import Clock
from service.credentials import Credentials
from service.events import EventHub
from service.metrics import Metrics
from service.scheduler import Scheduler
from service.settings import Settings
from service.sources import Source
from service.store import Database, JobLogStore

SETTINGS = web.AppKey("settings", Settings)
# The job-log database this node runs on (SQLite or PostgreSQL) and what goes with it.
BACKEND = web.AppKey("backend", Backend)
# SQLite mode only: the database file.
DATABASE = web.AppKey("database", Database)
# The job-log tables behind the store's contract (what every reader and writer of runs uses).
STORE: web.AppKey[JobLogStore] = web.AppKey("store")
SOURCE = web.AppKey("source", Source)
SCHEDULER = web.AppKey("scheduler", Scheduler)
HUB = web.AppKey("hub", EventHub)
METRICS = web.AppKey("metrics", Metrics)
# The one source of time (a fake one in tests).
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
# The tokens of each role, and the keys that sign browser sessions.
CREDENTIALS = web.AppKey("credentials", Credentials)
