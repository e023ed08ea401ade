"""The service's settings, read from environment variables once at startup."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.schedule import Cron, Grid, InvalidSchedule, Plan

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)

_SOURCE_VIEW = re.compile(r"^[A-Za-z_][A-Za-z0-9_@$#]*(\.[A-Za-z_][A-Za-z0-9_@$#]*)?$")
# Settings whose values never appear in an error message; each may also be given as the path of
# a file holding it, in <NAME>_FILE (as Docker secrets and systemd credentials provide).
SECRETS = (
    "admin_token",
    "view_token",
    "metrics_token",
    "source_odbc",
    "notify_webhook_url",
    "database_url",
    "database_direct_url",
)
SECRET_FILE_VARIABLES = tuple(f"{name.upper()}_FILE" for name in SECRETS)
_NODE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_NODE_NAME_OUTSIDE = re.compile(r"[^A-Za-z0-9._-]")
# An HTTP header name (RFC 9110 token characters).
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")
# A user name a proxy passes: printable, no separators that could smuggle a second name.
_USER_NAME = re.compile(r"^[^\s,;\x00-\x1f\x7f]{1,256}$")

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
    database_url: SecretStr | None = Field(
        default=None,
        description=(
            "postgresql://user:password@host:5432/db selects PostgreSQL mode (several nodes on "
            "one database; DATABASE_PATH and TARGET_DATABASE_PATH are then unused); unset, SQLite."
        ),
    )
    database_direct_url: SecretStr | None = Field(
        default=None,
        description=(
            "PostgreSQL URL for the sessions a transaction-pooling PgBouncer breaks (the run "
            "lock, LISTEN), when DATABASE_URL goes through one; unset, DATABASE_URL."
        ),
    )
    node_name: str | None = Field(
        default=None,
        description=(
            "This node's name in /api/status, /readyz and the metrics' node label; unset, the "
            "host name (letters, digits, dots, dashes and underscores kept)."
        ),
    )
    sync_lease_seconds: Annotated[float, Field(ge=2, le=600)] = Field(
        default=10.0,
        description=(
            "PostgreSQL mode: how long a node that stops answering (hung, cut off) keeps the "
            "sync's run lock before another node takes over."
        ),
    )
    database_busy_timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=5.0,
        description="How long a write waits for another process's lock on the database.",
    )
    adoption_batch_rows: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        default=20_000,
        description=(
            "Most runs or lines added per transaction while what an adopted database lacks "
            "(the runs by status, the search index) is built in the background."
        ),
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

    source_odbc: SecretStr | None = Field(
        default=None,
        description="ODBC connection string of the source; unset serves the embedded demo source.",
    )
    source_view: str = Field(
        default="vwZSDOrder_Advanced",
        description="View to copy (plain or schema-qualified name), read as SELECT * FROM it.",
    )
    source_query: str | None = Field(
        default=None, description="A full query to run instead of the view (not with SOURCE_VIEW)."
    )
    source_login_timeout: Annotated[int, Field(ge=1, le=3600)] = Field(
        default=15, description="Seconds the ODBC driver may take to log in."
    )
    source_query_timeout: Annotated[int, Field(ge=1, le=86400)] = Field(
        default=300, description="Seconds the ODBC driver may wait on one statement."
    )
    target_database_path: Path | None = Field(
        default=None,
        description="SQLite file that receives open_orders when not the job-log database.",
    )
    sync_batch_size: Annotated[int, Field(ge=1, le=100_000)] = Field(
        default=500, description="Rows fetched and staged per batch."
    )
    sync_min_ratio: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.5,
        description="Shrink guard: refuse a new set smaller than this share of the current one.",
    )
    sync_key: str | None = Field(
        default=None, description="Key column for the new/gone/changed summary of each run."
    )
    sync_interval_seconds: Annotated[float, Field(ge=0, le=31 * 86400)] = Field(
        default=300, description="Seconds between scheduled runs; 0 turns the schedule off."
    )
    sync_schedule: str | None = Field(
        default=None,
        description=(
            "A cron expression (minute hour day month weekday) evaluated in TIMEZONE, e.g. "
            "'*/5 6-22 * * 1-6'; unset, the SYNC_INTERVAL_SECONDS grid."
        ),
    )
    sync_late_after_seconds: Annotated[float, Field(gt=0, le=31 * 86400)] | None = Field(
        default=None,
        description=(
            "The sync is late when no run succeeded for this long (scheduled time only); "
            "unset, three of the schedule's usual gaps."
        ),
    )
    sync_on_start: bool = Field(
        default=True,
        description="Run once as soon as the service starts (with SYNC_SCHEDULE: unless paused).",
    )
    sync_timeout_seconds: Annotated[float, Field(gt=0, le=86400)] = Field(
        default=900, description="A run longer than this ends as error."
    )
    demo_delay_seconds: Annotated[float, Field(ge=0, le=60)] = Field(
        default=0.75, description="Pause after each batch of the demo source, so a run is visible."
    )

    admin_token: SecretStr | None = Field(
        default=None,
        description="Token of the admin role (run now, cancel, and everything a viewer may); "
        "unset, one is made at first start in admin-token beside the database.",
    )
    view_token: SecretStr | None = Field(
        default=None,
        description="Token of the viewer role: the page, the history, the event stream.",
    )
    metrics_token: SecretStr | None = Field(
        default=None, description="Bearer token that may read /metrics (and nothing else)."
    )
    session_hours: Annotated[float, Field(gt=0, le=24 * 366)] = Field(
        default=12, description="How long a browser stays signed in."
    )
    trusted_proxies: Annotated[
        tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...],
        NoDecode,
        BeforeValidator(lambda value: _networks(_comma_list(value, "a list of addresses"))),
    ] = Field(
        default=(),
        description="Addresses (CIDRs) of reverse proxies whose X-Forwarded-*/Forwarded "
        "headers, and AUTH_PROXY_HEADER, are believed.",
    )
    auth_proxy_header: str | None = Field(
        default=None,
        description="Header a trusted proxy sets to the signed-in user's name (e.g. Remote-User).",
    )
    auth_proxy_admins: Annotated[
        frozenset[str],
        NoDecode,
        BeforeValidator(lambda value: _comma_list(value, "a comma-separated list of names")),
    ] = Field(
        default=frozenset(),
        description="User names (from AUTH_PROXY_HEADER) that are admins; other users are viewers.",
    )
    allow_anonymous_viewers: bool | None = Field(
        default=None,
        description="true: anyone may view; false: nobody without a credential; unset: only "
        "clients on this machine, when the service listens on loopback only.",
    )
    public_url: str | None = Field(
        default=None,
        description="The URL users reach the service at (its host is accepted in Host headers).",
    )
    events_poll_seconds: Annotated[float, Field(gt=0, le=1)] = Field(
        default=0.25, description="How often the event stream looks for other writers' changes."
    )
    events_check_seconds: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.02,
        description=(
            "How often the event stream checks for other writers' commits (a cheap "
            "PRAGMA data_version), reading only when one landed; 0 turns the check off and "
            "the stream reads every EVENTS_POLL_SECONDS instead."
        ),
    )
    sse_ping_seconds: Annotated[float, Field(gt=0, le=300)] = Field(
        default=15, description="Seconds between keep-alive comments on idle event streams."
    )
    sse_buffer_events: Annotated[int, Field(ge=10, le=1_000_000)] = Field(
        default=1000, description="Events a subscriber may fall behind before it is cut off."
    )
    sse_stall_seconds: Annotated[float, Field(gt=0, le=600)] = Field(
        default=10, description="A subscriber that takes nothing sent to it this long is cut off."
    )
    sse_max_clients: Annotated[int, Field(ge=1, le=100_000)] = Field(
        default=10_000, description="Open event streams allowed at once; one more gets 503."
    )

    log_format: Literal["text", "json"] = Field(
        default="text", description="Service log lines on stdout: text, or one JSON object each."
    )
    retention_days: Annotated[int, Field(ge=0, le=36_500)] = Field(
        default=90,
        description="Finished logs older than this many days are purged daily; 0 keeps all.",
    )
    archive_dir: Path | None = Field(
        default=None,
        description="Folder where purged logs are archived first (job_logs-YYYY-MM.jsonl.gz).",
    )
    notify_webhook_url: SecretStr | None = Field(
        default=None,
        description="URL POSTed a notice when a run fails, and when one succeeds after failures.",
    )

    @field_validator("admin_token", "view_token", "metrics_token")
    @classmethod
    def _token_is_strong(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not is_strong_token(value.get_secret_value()):
            raise ValueError("must be 16 to 1,000 printable ASCII characters without spaces")
        return value

    @field_validator("auth_proxy_header")
    @classmethod
    def _header_name(cls, value: str | None) -> str | None:
        if value is not None and not _HEADER_NAME.match(value):
            raise ValueError("must be an HTTP header name such as Remote-User")
        if value is not None and value.lower() in _RESERVED_HEADERS:
            raise ValueError("must not be a header clients or proxies send for other purposes")
        return value

    @field_validator("auth_proxy_admins")
    @classmethod
    def _user_names(cls, value: frozenset[str]) -> frozenset[str]:
        for name in value:
            if not _USER_NAME.match(name):
                raise ValueError("must be user names without spaces, commas or control characters")
        return value

    @model_validator(mode="after")
    def _access_is_consistent(self) -> Settings:
        if self.auth_proxy_header is not None and not self.trusted_proxies:
            raise ValueError("AUTH_PROXY_HEADER needs TRUSTED_PROXIES (the proxy's addresses)")
        if self.auth_proxy_admins and self.auth_proxy_header is None:
            raise ValueError("AUTH_PROXY_ADMINS needs AUTH_PROXY_HEADER")
        tokens = [t.get_secret_value() for t in (self.admin_token, self.view_token) if t]
        if self.metrics_token is not None and self.metrics_token.get_secret_value() in tokens:
            raise ValueError("METRICS_TOKEN must differ from ADMIN_TOKEN and VIEW_TOKEN")
        if len(tokens) == 2 and tokens[0] == tokens[1]:
            raise ValueError("VIEW_TOKEN must differ from ADMIN_TOKEN")
        if not self.loopback_bind and not (
            self.view_token is not None
            or self.auth_proxy_header is not None
            or self.allow_anonymous_viewers is not None
        ):
            raise ValueError(
                f"HOST={self.host} lets other machines in, so viewers must prove who they are: "
                "set VIEW_TOKEN (or VIEW_TOKEN_FILE), AUTH_PROXY_HEADER with TRUSTED_PROXIES, "
                "or ALLOW_ANONYMOUS_VIEWERS"
            )
        return self

    @property
    def node(self) -> str:
        """NODE_NAME, or the host name made valid for it."""
        if self.node_name is not None:
            return self.node_name
        return _NODE_NAME_OUTSIDE.sub("-", socket.gethostname())[:64] or "node"

    @property
    def loopback_bind(self) -> bool:
        """True when the server listens on this machine's loopback interface only."""
        return is_loopback(self.host)

    @field_validator("public_url")
    @classmethod
    def _public_url_is_http(cls, value: str | None) -> str | None:
        if value is not None and not _is_http_url(value):
            raise ValueError("must be an http(s) URL such as https://joblog.example")
        return value

    @field_validator("notify_webhook_url")
    @classmethod
    def _webhook_is_http(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _is_http_url(value.get_secret_value()):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("database_url", "database_direct_url")
    @classmethod
    def _postgresql_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and (problem := postgresql_url_problem(value.get_secret_value())):
            raise ValueError(problem)
        return value

    @field_validator("node_name")
    @classmethod
    def _node_name(cls, value: str | None) -> str | None:
        if value is not None and not _NODE_NAME.match(value):
            raise ValueError("must be 1 to 64 letters, digits, dots, dashes or underscores")
        return value

    @model_validator(mode="after")
    def _one_database(self) -> Settings:
        if self.database_direct_url is not None and self.database_url is None:
            raise ValueError("DATABASE_DIRECT_URL needs DATABASE_URL")
        if self.database_url is not None and self.target_database_path is not None:
            raise ValueError(
                "TARGET_DATABASE_PATH is for SQLite mode; with DATABASE_URL open_orders is "
                "kept in the PostgreSQL database"
            )
        if self.database_url is not None and self.admin_token is None:
            raise ValueError(
                "DATABASE_URL needs ADMIN_TOKEN (or ADMIN_TOKEN_FILE): every node must accept "
                "the same admin token and browser sessions"
            )
        return self

    @field_validator("archive_dir")
    @classmethod
    def _archive_dir_is_a_folder(cls, value: Path | None) -> Path | None:
        if value is not None and (str(value).strip() == "" or value.is_file()):
            raise ValueError("must name a folder, not a file")
        return value

    @property
    def public_host(self) -> str | None:
        """The host name of PUBLIC_URL, lower-cased."""
        if self.public_url is None:
            return None

        return urlsplit(self.public_url).hostname

    @field_validator("source_odbc")
    @classmethod
    def _source_odbc_parses(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            from service.sources.connection_string import ConnectionStringError, parse

            try:
                parse(value.get_secret_value())
            except ConnectionStringError as exc:
                raise ValueError(f"is not a valid ODBC connection string: {exc}") from None
        return value

    @field_validator("source_view")
    @classmethod
    def _source_view_is_an_identifier(cls, value: str) -> str:
        if not _SOURCE_VIEW.match(value):
            raise ValueError("must be a view name, plain or schema-qualified (dbo.vwName)")
        return value

    @field_validator("source_query", "sync_key")
    @classmethod
    def _printable_text(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or "\x00" in value):
            raise ValueError("must be non-blank text without NUL characters")
        if value is not None and len(value) > 100_000:
            raise ValueError("is too long")
        return value

    @model_validator(mode="after")
    def _one_source_query(self) -> Settings:
        chosen = self.model_fields_set & {"source_view", "source_query"}
        if len(chosen) == 2 and self.source_query is not None:
            raise ValueError("set SOURCE_VIEW or SOURCE_QUERY, not both")
        if chosen and self.source_odbc is None:
            names = " and ".join(sorted(name.upper() for name in chosen))
            raise ValueError(f"{names} {'needs' if len(chosen) == 1 else 'need'} SOURCE_ODBC")
        return self

    @field_validator("database_path", "target_database_path")
    @classmethod
    def _database_path_is_a_file_path(cls, value: Path | None) -> Path | None:
        if value is not None and (str(value).strip() == "" or value.is_dir()):
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

    @field_validator("log_level", "log_format", mode="before")
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

    @field_validator("sync_schedule")
    @classmethod
    def _schedule_is_cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return Cron.parse(value.strip(), ZoneInfo("UTC")).expression
        except InvalidSchedule as exc:
            raise ValueError(str(exc)) from None

    def plan(self) -> Plan:
        """When runs are due: the cron schedule, or the interval grid."""
        if self.sync_schedule is not None:
            return Cron.parse(self.sync_schedule, self.zone)
        return Grid(timedelta(seconds=self.sync_interval_seconds))

    @property
    def late_after(self) -> timedelta | None:
        """SYNC_LATE_AFTER_SECONDS, if set."""
        if self.sync_late_after_seconds is None:
            return None
        return timedelta(seconds=self.sync_late_after_seconds)


# Headers that a client or a proxy sends for its own purposes: never a user name.
_RESERVED_HEADERS = frozenset(
    {
        "authorization",
        "cookie",
        "host",
        "origin",
        "referer",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-forwarded-prefix",
        "x-real-ip",
        "content-length",
        "content-type",
    }
)


def is_strong_token(token: str) -> bool:
    """16 to 1,000 printable ASCII characters, none of them a space."""
    return 16 <= len(token) <= 1000 and token.isascii() and token.isprintable() and " " not in token


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _comma_list(value: object, what: str) -> object:
    """A comma-separated variable as a list of its non-empty, stripped items."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if value is None:
        raise ValueError(f"must be {what}")
    return value


def _networks(value: object) -> object:
    """Addresses and CIDRs (``127.0.0.1``, ``10.0.0.0/8``, ``::1``) as networks."""
    if not isinstance(value, list | tuple):
        return value
    networks = []
    for item in value:
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except (TypeError, ValueError):
            raise ValueError(f"{item!r} is not an IP address or network (CIDR)") from None
    return tuple(networks)


def postgresql_url_problem(text: str) -> str | None:
    """Why ``text`` is not a PostgreSQL URL (without repeating it: it may hold a password);
    None when it is one."""
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in text):
        return "must be a postgresql:// URL without spaces or control characters"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        return "must be a postgresql:// URL (its host or port does not parse)"
    if parts.scheme not in ("postgresql", "postgres"):
        return "must be a postgresql:// URL"
    if not parts.hostname and "host=" not in parts.query:
        return "must name the server: postgresql://user:password@host:5432/database"
    return None


def _is_http_url(text: str) -> bool:
    """An http or https URL with a host and, if any, a valid port."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


class SettingsError(Exception):
    """The environment holds an invalid setting; the message is one line per variable."""


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from the process environment; the one place that reads it.

    A secret may come from a file named by ``<NAME>_FILE`` (its content, less one final line
    break). Raises SettingsError with one line per invalid variable, naming it and what is
    wrong, never a secret's value.
    """
    env = os.environ if environ is None else environ
    from_files, problems = _secrets_from_files(env)
    if problems:
        raise SettingsError("\n".join(problems))
    try:
        return Settings(**from_files)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(_describe(exc, from_files)) from None


def _secrets_from_files(env: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    values: dict[str, str] = {}
    problems: list[str] = []
    for name in SECRETS:
        variable = f"{name.upper()}_FILE"
        path = env.get(variable, "")
        if not path:
            continue
        if env.get(name.upper()):
            problems.append(f"invalid {variable}: set {name.upper()} or {variable}, not both")
            continue
        try:
            with open(path, encoding="utf-8") as file:
                text = file.read(100_001)
        except OSError as exc:
            problems.append(f"invalid {variable}: cannot read {path}: {exc.strerror or exc}")
            continue
        except UnicodeDecodeError:
            problems.append(f"invalid {variable}: {path} is not UTF-8 text")
            continue
        if len(text) > 100_000:
            problems.append(f"invalid {variable}: {path} is too long for a secret")
            continue
        values[name] = text.removesuffix("\n").removesuffix("\r")
    return values, problems


def _describe(exc: ValidationError, from_files: Mapping[str, str] | None = None) -> str:
    from_files = from_files or {}
    lines = []
    for error in exc.errors(include_url=False):
        variable = str(error["loc"][0]).upper() if error["loc"] else "settings"
        if variable.lower() in from_files:
            variable += "_FILE"
        message = error["msg"].removeprefix("Value error, ")
        value = error.get("input")
        secret = any(str(part) in SECRETS for part in error["loc"])
        shown = f" (got {value!r})" if isinstance(value, str) and len(value) <= 200 else ""
        shown = "" if secret else shown
        lines.append(f"invalid {variable}: {message}{shown}")
    return "\n".join(lines)
