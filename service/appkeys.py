"""Every slot of the application, declared once as a typed key."""

from __future__ import annotations

from aiohttp import web

from service.settings import Settings
from service.store import Database

SETTINGS = web.AppKey("settings", Settings)
DATABASE = web.AppKey("database", Database)
