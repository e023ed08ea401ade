"""The service's settings, read from environment variables once at startup."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)

LogLevel = Literal["debug", "info", "warning", "error", "critical"]


class Settings(BaseSettings):
    """Every knob of the service. Each field is read from the upper-case variable of its name."""

    model_config = SettingsConfigDict(
        case_sensitive=False,
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
    )

    database_path: Path = Field(
        default=Path("data/joblog.sqlite3"),
        description="SQLite file holding job_logs and job_log_details; its folder is created.",
    )
    database_busy_timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=5.0,
        description="How long a write waits for another process's lock on the database.",
    )
    host: str = Field(default="127.0.0.1", description="Address the HTTP server listens on.")
    port: Annotated[int, Field(ge=1, le=65535)] = Field(
        default=8080, description="TCP port the HTTP server listens on."
    )
    log_level: LogLevel = Field(default="info", description="Least severe level written.")
    timezone: str = Field(
        default="UTC",
        description="IANA time zone of job-log names (YYYYMMDDhhmmss); timestamps stay UTC.",
    )
    shutdown_timeout_seconds: Annotated[float, Field(gt=0, le=4)] = Field(
        default=3.0,
        description="How long a stop waits for open requests before closing them (<= 4 s).",
    )

    @field_validator("database_path")
    @classmethod
    def _database_path_is_a_file_path(cls, value: Path) -> Path:
        if str(value).strip() == "" or value.is_dir():
            raise ValueError("must name a file, not a directory")
        return value

    @field_validator("host")
    @classmethod
    def _host_is_an_address_or_name(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            if not _HOSTNAME.match(value):
                raise ValueError("must be an IP address or a host name") from None
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level_lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("timezone")
    @classmethod
    def _timezone_exists(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                "must be an IANA time zone name such as UTC or Europe/Berlin"
            ) from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        """The time zone that job-log names are written in."""
        return ZoneInfo(self.timezone)


class SettingsError(Exception):
    """The environment holds an invalid setting; the message is one line per variable."""


def load_settings() -> Settings:
    """Build the settings from the process environment; the one place that reads it.

    Raises SettingsError with one line per invalid variable, naming it and what is wrong.
    """
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        variable = ".".join(str(part) for part in error["loc"]).upper() or "settings"
        message = error["msg"].removeprefix("Value error, ")
        value = error.get("input")
        shown = f" (got {value!r})" if isinstance(value, str) and len(value) <= 200 else ""
        lines.append(f"invalid {variable}: {message}{shown}")
    return "\n".join(lines)
