"""A real nginx in front of the server process, started by the test in its own folder.

nginx runs in the foreground (``daemon off``) with its configuration, pid file, logs and temp
folders under the test's folder, so it needs nothing from /etc/nginx or /var/lib/nginx and
never touches a system nginx. Run as root, its workers stay root too (``user root``): the
test's folder is private to root. The site is either ``docs/deploy/nginx-joblog.conf`` as
written (see :func:`deployed_site`, which changes only its ports) or any server block a test
gives.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from contextlib import suppress
from pathlib import Path
from typing import Self

from .process import ChildProcess
from .system import require_command

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_SITE = ROOT / "docs" / "deploy" / "nginx-joblog.conf"
# The service's port in docs/deploy/nginx-joblog.conf (its PORT in joblog.service).
DOCUMENTED_UPSTREAM = "127.0.0.1:8080"

_LISTEN = re.compile(r"^(\s*listen\s+(?:[0-9.]+:|\[[^\]]*\]:)?)(\d+)\b", re.MULTILINE)
_COMMENT = re.compile(r"^\s*#")

# What the main configuration logs for each request: enough to tell requests apart and to see
# which ones came back after a restart (a resumed event stream carries Last-Event-ID).
_LOG_FORMAT = (
    '"$request" $status $remote_addr upstream=$upstream_addr '
    'last_event_id="$http_last_event_id" gzip="$sent_http_content_encoding" '
    'agent="$http_user_agent"'
)


def nginx_path() -> str:
    """The nginx binary (Debian: /usr/sbin/nginx, which a non-root PATH may lack)."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    return found if found is not None else require_command("nginx")


def deployed_site(listen_port: int, upstream_port: int) -> str:
    """``docs/deploy/nginx-joblog.conf`` with only its ports changed: every ``listen`` to
    ``listen_port`` (addresses kept), every ``127.0.0.1:8080`` to ``upstream_port``.

    Comment lines are left alone; the file must have both kinds of port to change.
    """
    text = DEPLOY_SITE.read_text()
    lines = []
    listens = upstreams = 0
    for line in text.splitlines(keepends=True):
        if _COMMENT.match(line):
            lines.append(line)
            continue
        line, found = _LISTEN.subn(rf"\g<1>{listen_port}", line)
        listens += found
        upstreams += line.count(DOCUMENTED_UPSTREAM)
        lines.append(line.replace(DOCUMENTED_UPSTREAM, f"127.0.0.1:{upstream_port}"))
    assert listens, f"{DEPLOY_SITE} has no listen directive"
    assert upstreams, f"{DEPLOY_SITE} does not proxy to {DOCUMENTED_UPSTREAM}"
    return "".join(lines)


def bare_site(listen_port: int, upstream_port: int) -> str:
    """The least anyone would write: one ``proxy_pass``, no header, no buffering setting."""
    return f"""server {{
    listen 127.0.0.1:{listen_port};
    location /joblog/ {{ proxy_pass http://127.0.0.1:{upstream_port}/; }}
}}
"""


class Nginx(ChildProcess):
    """nginx serving ``site`` (a server block) with ``http_extra`` in its ``http`` block.

    ``port`` is the port the site listens on; ``access_log`` lists what nginx logged.
    """

    name = "nginx"

    def __init__(self, workdir: Path, site: str, *, port: int, http_extra: str = "") -> None:
        self.workdir = workdir
        self.port = port
        self.binary = nginx_path()
        workdir.mkdir(parents=True, exist_ok=True)
        for temp in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (workdir / "temp" / temp).mkdir(parents=True, exist_ok=True)
        (workdir / "site.conf").write_text(site)
        self.config = workdir / "nginx.conf"
        self.config.write_text(self._main_config(http_extra))
        self.error_log = workdir / "error.log"
        self.access_log_path = workdir / "access.log"

    def _main_config(self, http_extra: str) -> str:
        d = self.workdir
        user = "user root;\n" if os.geteuid() == 0 else ""
        temps = "\n".join(
            f"    {name}_temp_path {d}/temp/{folder};"
            for name, folder in (
                ("client_body", "body"),
                ("proxy", "proxy"),
                ("fastcgi", "fastcgi"),
                ("uwsgi", "uwsgi"),
                ("scgi", "scgi"),
            )
        )
        return f"""{user}worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 512; }}
http {{
    log_format joblog '{_LOG_FORMAT}';
    access_log {d}/access.log joblog;
{temps}
{http_extra}
    include {d}/site.conf;
}}
"""

    def check(self) -> None:
        """``nginx -t``: the configuration parses; fails the test with nginx's words if not."""
        tested = subprocess.run(
            [*self._command(), "-t"], capture_output=True, text=True, timeout=30, check=False
        )
        assert tested.returncode == 0, f"nginx -t:\n{tested.stderr}"

    def _command(self) -> list[str]:
        return [
            self.binary,
            "-p",
            str(self.workdir),
            "-c",
            str(self.config),
            "-e",
            str(self.error_log),
            "-g",
            "daemon off;",
        ]

    def start(self, timeout: float = 20.0) -> None:
        """Start nginx and return once it accepts connections on its port."""
        assert not self.running, "nginx already runs"
        # Its own process group: its workers can be ended with it, whatever happens to it.
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            self._command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.wait_until(self._listening, "not listening", within=timeout)

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def stop(self, timeout: float = 20.0) -> None:
        """Fast shutdown (SIGTERM): open connections, event streams too, are closed at once.

        The master exits after its workers; should it not within ``timeout``, its whole process
        group is killed, workers included, and the test fails.
        """
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill_group()
            raise AssertionError(f"nginx did not stop within {timeout} s") from None
        self._kill_group()  # nothing is left in it after a clean stop; a leftover goes too

    def _kill_group(self) -> None:
        assert self.process is not None
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def end(self) -> None:
        """:meth:`stop`."""
        self.stop()

    def __enter__(self) -> Self:
        self.check()
        return super().__enter__()

    def url(self, path: str = "/joblog/", host: str = "127.0.0.1") -> str:
        """A URL of the site."""
        return f"http://{host}:{self.port}{path}"

    def access_log(self) -> list[str]:
        """The lines nginx logged so far (one per finished request)."""
        try:
            return self.access_log_path.read_text().splitlines()
        except FileNotFoundError:
            return []

    def said(self) -> str:
        """:meth:`errors`, for a failure's message."""
        return self.errors()

    def errors(self) -> str:
        """nginx's error log so far."""
        try:
            return self.error_log.read_text()
        except FileNotFoundError:
            return ""
