"""Settings come from the environment; an invalid one stops the service with one line, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.settings import Settings, SettingsError, load_settings
from tests.support.server import run_service, settings_from


def test_defaults() -> None:
    settings = load_settings()
    assert settings.database_path == Path("data/joblog.sqlite3")
    assert (settings.host, settings.port, settings.log_level) == ("127.0.0.1", 8080, "info")
    assert settings.timezone == "UTC"


def test_values_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_PATH", str(tmp_path / "x.sqlite3"))
    monkeypatch.setenv("HOST", "0.0.0.0")
    monkeypatch.setenv("VIEW_TOKEN", "a-viewer-token-of-some-length")
    monkeypatch.setenv("PORT", "5000")
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    monkeypatch.setenv("TIMEZONE", "Europe/Berlin")
    settings = load_settings()
    assert settings.database_path == tmp_path / "x.sqlite3"
    assert (settings.host, settings.port, settings.log_level) == ("0.0.0.0", 5000, "warning")
    assert settings.zone.key == "Europe/Berlin"


def test_an_empty_variable_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "")
    assert load_settings().port == 8080


def refusal(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """What the settings say when ``env`` makes them refuse to load (they must)."""
    with pytest.raises(SettingsError) as caught:
        settings_from(env, monkeypatch)
    return str(caught.value)


def test_several_invalid_variables_give_a_line_each(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = refusal({"PORT": "abc", "LOG_LEVEL": "loud"}, monkeypatch).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("invalid PORT:")
    assert lines[1].startswith("invalid LOG_LEVEL:")


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("PORT", "abc", "valid integer"),
        ("PORT", "0", "greater than or equal to 1"),
        ("PORT", "70000", "less than or equal to 65535"),
        ("HOST", "not a host!", "IP address or a host name"),
        ("LOG_LEVEL", "loud", "'debug', 'info', 'warning', 'error' or 'critical'"),
        ("TIMEZONE", "Mars/Olympus_Mons", "IANA time zone"),
        ("TIMEZONE", "../../etc/passwd", "IANA time zone"),
        ("DATABASE_PATH", "{tmp}", "must name a file"),
        ("DATABASE_BUSY_TIMEOUT_SECONDS", "-1", "greater than 0"),
        ("DATABASE_BUSY_TIMEOUT_SECONDS", "soon", "valid number"),
        ("SHUTDOWN_TIMEOUT_SECONDS", "30", "less than or equal to 4"),
        ("SOURCE_ODBC", "SERVER=db;PWD=topsecret", "is not a valid ODBC connection string"),
        ("SOURCE_VIEW", "orders; DROP TABLE x", "must be a view name"),
        ("SOURCE_LOGIN_TIMEOUT", "0", "greater than or equal to 1"),
        ("SOURCE_QUERY_TIMEOUT", "soon", "valid integer"),
        ("TARGET_DATABASE_PATH", "{tmp}", "must name a file"),
        ("SYNC_BATCH_SIZE", "0", "greater than or equal to 1"),
        ("SYNC_MIN_RATIO", "1.5", "less than or equal to 1"),
        ("SYNC_KEY", "   ", "non-blank"),
        ("SYNC_INTERVAL_SECONDS", "-5", "greater than or equal to 0"),
        ("SYNC_ON_START", "maybe", "valid boolean"),
        ("SYNC_SCHEDULE", "*/5 6-25 * * 1-6", "not a cron expression"),
        ("SYNC_SCHEDULE", "every five minutes", "not a cron expression"),
        ("SYNC_LATE_AFTER_SECONDS", "0", "greater than 0"),
        ("SYNC_TIMEOUT_SECONDS", "0", "greater than 0"),
        ("DEMO_DELAY_SECONDS", "-1", "greater than or equal to 0"),
        ("LOG_FORMAT", "xml", "'text' or 'json'"),
        ("RETENTION_DAYS", "-1", "greater than or equal to 0"),
        ("RETENTION_DAYS", "ninety", "valid integer"),
        ("ARCHIVE_DIR", "{tmp}/db.sqlite3", "must name a folder"),
        ("NOTIFY_WEBHOOK_URL", "ftp://hooks.example/T0/s3cr3t", "must be an http(s) URL"),
        ("NOTIFY_WEBHOOK_URL", "https://hooks.example:99999/s3cr3t", "must be an http(s) URL"),
        ("DATABASE_URL", "mysql://joblog:s3cr3t@db/joblog", "must be a postgresql:// URL"),
        ("DATABASE_URL", "postgresql://joblog:s3cr3t@db:99999/joblog", "does not parse"),
        ("DATABASE_URL", "postgresql://joblog:s3cr3t @db/joblog", "without spaces"),
        ("DATABASE_DIRECT_URL", "postgres://joblog:s3cr3t@/joblog", "must name the server"),
        ("NODE_NAME", "node one", "must be 1 to 64 letters"),
        ("SYNC_LEASE_SECONDS", "1", "greater than or equal to 2"),
    ],
)
@pytest.mark.integration  # the service in a process of its own
def test_an_invalid_variable_stops_the_service_with_one_line(
    tmp_path: Path, variable: str, value: str, says: str
) -> None:
    env = {variable: value.format(tmp=tmp_path)}
    env.setdefault("DATABASE_PATH", str(tmp_path / "db.sqlite3"))
    (tmp_path / "db.sqlite3").touch()
    result = run_service(tmp_path, **env)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"invalid {variable}: ")
    assert says in lines[0]
    assert "Traceback" not in result.stderr
    assert "s3cr3t" not in result.stderr, "a webhook URL is a secret"


def test_a_secret_is_never_echoed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    said = refusal({"SOURCE_ODBC": "SERVER=db;UID=u;PWD=topsecret"}, monkeypatch)
    assert "topsecret" not in said
    assert said.startswith("invalid SOURCE_ODBC: ")


@pytest.mark.parametrize(
    ("env", "says"),
    [
        (
            {"SOURCE_ODBC": "DSN=x", "SOURCE_VIEW": "v", "SOURCE_QUERY": "SELECT 1"},
            "invalid settings: set SOURCE_VIEW or SOURCE_QUERY, not both",
        ),
        ({"SOURCE_QUERY": "SELECT 1"}, "invalid settings: SOURCE_QUERY needs SOURCE_ODBC"),
    ],
)
def test_source_settings_that_contradict(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], says: str
) -> None:
    assert refusal(env, monkeypatch) == says


POSTGRES = "postgresql://joblog:s3cr3t@db.plant.example:5432/joblog"


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"DATABASE_DIRECT_URL": POSTGRES}, "DATABASE_DIRECT_URL needs DATABASE_URL"),
        (
            {"DATABASE_URL": POSTGRES, "ADMIN_TOKEN": "admin-token-of-every-node"},
            None,
        ),
        ({"DATABASE_URL": POSTGRES}, "DATABASE_URL needs ADMIN_TOKEN (or ADMIN_TOKEN_FILE)"),
        (
            {
                "DATABASE_URL": POSTGRES,
                "ADMIN_TOKEN": "admin-token-of-every-node",
                "TARGET_DATABASE_PATH": "orders.sqlite3",
            },
            "TARGET_DATABASE_PATH is for SQLite mode",
        ),
    ],
)
def test_postgresql_mode_settings(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], says: str | None
) -> None:
    """PostgreSQL mode needs the admin token every node shares; its URLs are never shown."""
    if says is None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings = load_settings()
        assert settings.database_url is not None
        assert settings.database_url.get_secret_value() == POSTGRES
        assert "s3cr3t" not in repr(settings)
        assert "s3cr3t" not in str(settings.database_url)
        return
    said = refusal(env, monkeypatch)
    assert says in said
    assert len(said.splitlines()) == 1
    assert "s3cr3t" not in said


def test_a_database_url_can_come_from_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "database-url"
    secret.write_text(POSTGRES + "\n")
    monkeypatch.setenv("DATABASE_URL_FILE", str(secret))
    monkeypatch.setenv("ADMIN_TOKEN", "admin-token-of-every-node")
    settings = load_settings()
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value() == POSTGRES


def test_the_node_name_defaults_to_the_host_name_made_valid() -> None:
    name = Settings().node
    assert name
    assert len(name) <= 64
    assert all(c.isalnum() or c in "._-" for c in name)


# --- who may see: the start-up refusal and secrets from files ---------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "joblog.plant.example"])
@pytest.mark.integration  # the service in a process of its own
def test_listening_beyond_loopback_without_a_way_to_view_stops_the_service(
    tmp_path: Path, host: str
) -> None:
    result = run_service(tmp_path, HOST=host, DATABASE_PATH=str(tmp_path / "x.db"))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert f"HOST={host} lets other machines in" in lines[0]
    for setting in ("VIEW_TOKEN", "AUTH_PROXY_HEADER", "ALLOW_ANONYMOUS_VIEWERS"):
        assert setting in lines[0]
    assert not (tmp_path / "x.db").exists(), "nothing is made before the settings hold"


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"AUTH_PROXY_HEADER": "Remote-User"}, "AUTH_PROXY_HEADER needs TRUSTED_PROXIES"),
        ({"AUTH_PROXY_ADMINS": "alice"}, "AUTH_PROXY_ADMINS needs AUTH_PROXY_HEADER"),
        ({"TRUSTED_PROXIES": "10.0.0.0/8, nonsense"}, "'nonsense' is not an IP address"),
        ({"AUTH_PROXY_HEADER": "X-Forwarded-For", "TRUSTED_PROXIES": "::1"}, "must not be"),
        ({"AUTH_PROXY_HEADER": "Remote User", "TRUSTED_PROXIES": "::1"}, "HTTP header name"),
        ({"VIEW_TOKEN": "short"}, "16 to 1,000 printable ASCII characters"),
        ({"ADMIN_TOKEN": "same-token-for-both-1", "VIEW_TOKEN": "same-token-for-both-1"}, "differ"),
        ({"SESSION_HOURS": "0"}, "greater than 0"),
        ({"ALLOW_ANONYMOUS_VIEWERS": "perhaps"}, "valid boolean"),
    ],
)
def test_access_settings_that_cannot_work(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], says: str
) -> None:
    said = refusal(env, monkeypatch)
    assert says in said
    assert len(said.splitlines()) == 1
    assert "same-token-for-both-1" not in said


SECRET_VALUES = {
    "ADMIN_TOKEN": "admin-token-from-a-file-1",
    "VIEW_TOKEN": "view-token-from-a-file-22",
    "METRICS_TOKEN": "metrics-token-from-a-file",
    "SOURCE_ODBC": "DRIVER={FreeTDS};SERVER=casql2.example;UID=u;PWD=file-secret-pw",
    "NOTIFY_WEBHOOK_URL": "https://hooks.example/services/T0/file-secret-hook",
}


@pytest.mark.parametrize("name", SECRET_VALUES)
def test_each_secret_can_come_from_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    secret = tmp_path / "secret"
    secret.write_text(SECRET_VALUES[name] + "\n")  # as `echo` and editors leave it
    monkeypatch.setenv(f"{name}_FILE", str(secret))
    value = getattr(load_settings(), name.lower())
    assert value.get_secret_value() == SECRET_VALUES[name]


@pytest.mark.parametrize("name", SECRET_VALUES)
@pytest.mark.integration  # the service in a process of its own
def test_a_bad_secret_file_is_one_line_naming_it_and_never_its_content(
    tmp_path: Path, name: str
) -> None:
    """In a subprocess: each _FILE form, with content that is invalid, both forms at once, and
    a file that cannot be read."""
    bad = tmp_path / "bad"
    bad.write_text("  not valid; PWD=leaked-secret-x \x01\n")
    env = {"DATABASE_PATH": str(tmp_path / "x.db")}
    cases = [
        ({f"{name}_FILE": str(bad)}, f"invalid {name}_FILE: "),
        ({f"{name}_FILE": str(bad), name: SECRET_VALUES[name]}, "not both"),
        ({f"{name}_FILE": str(tmp_path / "missing")}, "cannot read"),
    ]
    for extra, says in cases:
        result = run_service(tmp_path, **env, **extra)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"invalid {name}_FILE: "), lines[0]
        assert says in lines[0]
        assert "leaked-secret-x" not in result.stderr
        assert SECRET_VALUES[name] not in result.stderr
