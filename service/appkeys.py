"""Every slot of the application, declared once as a typed key."""

from __future__ import annotations

from aiohttp import web

from service.clock import Clock
from service.credentials import Credentials
from service.events import EventHub
from service.metrics import Metrics
from service.scheduler import Scheduler
from service.settings import Settings
from service.sources import Source
from service.store import Database, Heartbeat

SETTINGS = web.AppKey("settings", Settings)
DATABASE = web.AppKey("database", Database)
# The database that receives open_orders (the job-log database unless configured apart).
TARGET = web.AppKey("target", Database)
SOURCE = web.AppKey("source", Source)
SCHEDULER = web.AppKey("scheduler", Scheduler)
HUB = web.AppKey("hub", EventHub)
METRICS = web.AppKey("metrics", Metrics)
# The one source of time (a fake one in tests).
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
HEARTBEAT = web.AppKey("heartbeat", Heartbeat)
# The tokens of each role, and the keys that sign browser sessions.
CREDENTIALS = web.AppKey("credentials", Credentials)
