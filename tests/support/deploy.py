"""docs/deploy/ as a test reads and runs it: the systemd unit's settings, the Containerfile's
instructions, and the service set up as the unit sets it up behind nginx (tests/support/nginx.py)
with the documented site or a bare ``proxy_pass``."""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .http_client import Answer, call
from .nginx import Nginx, bare_site, deployed_site
from .server import ServerProcess
from .system import free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "docs" / "deploy"
UNIT = DEPLOY / "joblog.service"
CONTAINERFILE = DEPLOY / "Containerfile"

# The tokens of the service behind the proxy: its admin's (from a file, as the unit hands it)
# and a viewer's.
ADMIN = "deploy-admin-token-7f3c9a1e5b"
VIEWER = "deploy-view-token-2d8e6b4a0c"

# No schedule: every run is one the test starts. Batches 2 s apart give a run of about 8 s,
# time enough to restart the proxy in the middle of it on a loaded machine.
QUIET = {"SYNC_ON_START": "false", "SYNC_INTERVAL_SECONDS": "0", "DEMO_DELAY_SECONDS": "2"}

# What an operator may well have in nginx.conf: gzip for every text type, the event stream
# among them. The documented site must keep its stream uncompressed all the same.
GZIP_EVERYTHING = """    gzip on;
    gzip_min_length 1;
    gzip_types application/json text/event-stream text/css application/javascript;"""


# --- the systemd unit -----------------------------------------------------------------------------


def unit_options() -> dict[str, list[str]]:
    """Every ``Key=value`` of joblog.service, all values of each key in order."""
    options: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            options.setdefault(key, []).append(value)
    return options


def unit_environment(credentials: Path) -> dict[str, str]:
    """The ``Environment=`` settings of joblog.service, ``%d`` (the credentials folder) made
    ``credentials``."""
    env: dict[str, str] = {}
    for line in UNIT.read_text().splitlines():
        if line.startswith("Environment="):
            for assignment in shlex.split(line.removeprefix("Environment=")):
                name, _, value = assignment.partition("=")
                env[name] = value.replace("%d", str(credentials))
    return env


def unit_credentials() -> dict[str, str]:
    """``LoadCredential=name:path`` of joblog.service, as {name: path}."""
    found = re.findall(r"^LoadCredential=([^:\s]+):(\S+)$", UNIT.read_text(), re.MULTILINE)
    return dict(found)


def verifiable_unit(tmp_path: Path, text: str) -> Path:
    """A copy of the unit whose ExecStart runs this Python (systemd checks it exists)."""
    documented = "ExecStart=/opt/joblog/bin/python -m service\n"
    assert text.count(documented) == 1
    copy = tmp_path / "joblog.service"
    copy.write_text(text.replace(documented, f"ExecStart={sys.executable} -m service\n"))
    return copy


def write_secret(path: Path, value: str) -> Path:
    """``value`` in a file only its owner reads, as systemd and container engines hand them."""
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


# --- the service behind nginx ---------------------------------------------------------------------


@dataclass
class Stack:
    """The service behind nginx at ``/joblog/``; ``kind`` is "deploy" or "bare"."""

    kind: str
    server: ServerProcess
    nginx: Nginx
    admin: str
    database: Path

    @property
    def base(self) -> str:
        """The page's address through the proxy."""
        return self.nginx.url("/joblog/")

    def call(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        *,
        source: str | None = None,
    ) -> Answer:
        """A request through the proxy (``path`` under /joblog/)."""
        host = source or "127.0.0.1"
        return call(
            self.nginx.port, method, f"/joblog{path}", headers, body, source=source, host=host
        )

    def direct(self, method: str, path: str, headers: Mapping[str, str] | None = None) -> Answer:
        """A request to the service itself on loopback, past the proxy."""
        return call(self.server.port, method, path, headers)


@contextmanager
def serve_behind_nginx(kind: str, tmp_path: Path) -> Iterator[Stack]:
    """The service and nginx in front of it.

    deploy: docs/deploy/nginx-joblog.conf, and the service with joblog.service's settings
    (tokens in credential files) plus PUBLIC_URL, as the configuration says; AUTH_PROXY_HEADER
    is set too, so that a Remote-User the proxy let through would count.
    bare: one proxy_pass; the service trusts another address as its proxy (not nginx's), with
    AUTH_PROXY_HEADER, and makes its own admin token.
    """
    nginx_port = free_port()
    workdir = tmp_path / "service"
    workdir.mkdir()
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    write_secret(credentials / "view-token", VIEWER)
    # ServerProcess gives the tests' admin token unless told otherwise; an empty variable is
    # no setting: the token comes from a file here.
    proxy_user = {
        "AUTH_PROXY_HEADER": "Remote-User",
        "AUTH_PROXY_ADMINS": "admin",
        "ADMIN_TOKEN": "",
    }
    if kind == "deploy":
        write_secret(credentials / "admin-token", ADMIN)
        env = unit_environment(credentials)
        # The unit's own port and database folder are the machine's; the rest is used as is.
        env.pop("PORT")
        env.pop("DATABASE_PATH")
        env["PUBLIC_URL"] = f"http://127.0.0.1:{nginx_port}/joblog/"
    else:
        env = {"TRUSTED_PROXIES": "192.0.2.1", "VIEW_TOKEN_FILE": str(credentials / "view-token")}
    with ServerProcess(workdir, **QUIET, **proxy_user, **env) as server:
        server.wait_ready()
        database = workdir / "data" / "joblog.sqlite3"
        admin = ADMIN if kind == "deploy" else (database.parent / "admin-token").read_text()
        if kind == "deploy":
            site, extra = deployed_site(nginx_port, server.port), GZIP_EVERYTHING
        else:
            site, extra = bare_site(nginx_port, server.port), ""
        with Nginx(tmp_path / "nginx", site, port=nginx_port, http_extra=extra) as nginx:
            yield Stack(kind, server, nginx, admin.strip(), database)


# --- the Containerfile ----------------------------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    """The Containerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    found: list[tuple[str, str]] = []
    pending = ""
    for raw in CONTAINERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        found.append((keyword.upper(), " ".join(rest.split())))
        pending = ""
    assert not pending, "the Containerfile ends inside a continued line"
    return found


def the(keyword: str) -> list[str]:
    """The arguments of every ``keyword`` instruction."""
    return [rest for kind, rest in instructions() if kind == keyword]


def container_env() -> dict[str, str]:
    """The ``ENV`` the image sets."""
    env: dict[str, str] = {}
    for rest in the("ENV"):
        for assignment in shlex.split(rest):
            name, _, value = assignment.partition("=")
            env[name] = value
    return env
