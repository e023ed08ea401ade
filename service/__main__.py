"""Command line.

python -m service [serve]        the HTTP server, the page and the scheduler (default)
python -m service run-once [--force]
                                 one sync in the foreground: details on stdout, logs on
                                 stderr; exit 0 success, 1 error, 3 another run holds the lock
python -m service purge [--older-than DAYS] [--archive-dir DIR] [--dry-run]
                                 archive (ARCHIVE_DIR) and delete finished logs older than
                                 DAYS (RETENTION_DAYS); exit 0 done, 1 failed, 3 another purge runs
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sqlite3
import sys
from datetime import timedelta
from pathlib import Path

from aiohttp import web

from service import appkeys, logs
from service.app import create_app
from service.backend import open_backend
from service.clock import utc_now
from service.components import build_scheduler, open_notifier
from service.credentials import CredentialsUnavailable
from service.http.access_log import AccessLogger
from service.retention import PurgeLocked, PurgeStopped, purge
from service.settings import Settings, SettingsError, load_settings
from service.sources import SourceError, build_source
from service.store import StoreError
from service.wire import JobLog, JobLogDetail, Status

logger = logging.getLogger("service")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_SETTINGS = 2
EXIT_LOCKED = 3
STOPPED = "Interrupted - run-once stopped"
# How long run-once waits, after its run, for a webhook notice to be delivered (all retries).
NOTIFY_DRAIN_SECONDS = 30.0
# How long a connection may take to send a complete request head: from its opening, and from
# the end of each answer on a kept-alive connection. aiohttp has no separate header-read
# timeout; its keep-alive timer is armed at both moments and closes a connection whose next
# request head has not fully arrived, so it bounds a slow sender (one header byte a second)
# and an idle keep-alive alike. A request being answered (an event stream) is never cut.
REQUEST_HEAD_TIMEOUT_SECONDS = 10.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m service",
        description="Job-execution log service. Settings come from environment variables "
        "(see README.md).",
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the HTTP server and the scheduler (the default)")
    once = commands.add_parser("run-once", help="run the sync once in the foreground")
    once.add_argument(
        "--force", action="store_true", help="replace open_orders even if the shrink guard objects"
    )
    purging = commands.add_parser(
        "purge",
        help="archive and delete old finished logs now",
        description="python -m service purge [--older-than DAYS] [--archive-dir DIR] [--dry-run]: "
        "archive and delete the finished logs created more than DAYS days ago.",
        usage=argparse.SUPPRESS,  # an error is then one line, like an invalid setting
    )
    purging.add_argument(
        "--older-than", type=_days, metavar="DAYS", help="age in days (default RETENTION_DAYS)"
    )
    purging.add_argument(
        "--archive-dir", type=Path, metavar="DIR", help="archive folder (default ARCHIVE_DIR)"
    )
    purging.add_argument("--dry-run", action="store_true", help="say what would go; change nothing")
    return parser


def _days(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of days >= 1 (got {text!r})")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    """Run the command named in ``argv``; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return EXIT_SETTINGS
    try:
        if args.command in ("run-once", "purge"):
            # The details on stdout are the output; stderr only has problems unless LOG_LEVEL.
            explicit = "log_level" in settings.model_fields_set
            logs.configure(
                settings.log_level if explicit else "warning",
                stream=sys.stderr,
                fmt=settings.log_format,
            )
            if args.command == "purge":
                return asyncio.run(_purge(settings, args))
            return asyncio.run(_run_once(settings, force=args.force))
        logs.configure(settings.log_level, fmt=settings.log_format)
        return _serve(settings)
    except (StoreError, SourceError, CredentialsUnavailable) as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _serve(settings: Settings) -> int:
    app = create_app(settings)
    try:
        web.run_app(
            app,
            host=settings.host,
            port=settings.port,
            shutdown_timeout=settings.shutdown_timeout_seconds,
            keepalive_timeout=REQUEST_HEAD_TIMEOUT_SECONDS,
            print=lambda banner: _announce(banner, app, settings),
            access_log=logging.getLogger("service.access"),
            access_log_class=AccessLogger,
        )
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(f"cannot listen on {settings.host}:{settings.port}: {reason}", file=sys.stderr)
        return EXIT_FAILED
    logger.info("stopped")
    return EXIT_OK


def _announce(banner: str, app: web.Application, settings: Settings) -> None:
    """Log aiohttp's "Running on …" banner as one line, once the socket is bound; then, when
    the service made its own admin token and listens on loopback, the link that signs a
    browser on this machine in with it (the token rides in the fragment, which no request
    carries and the page removes at once)."""
    for line in banner.splitlines():
        if line.startswith("="):
            logger.info("%s", line.strip("= "))
    credentials = app[appkeys.CREDENTIALS]
    if credentials.admin_token_path is not None and settings.loopback_bind:
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        logger.info(
            "sign in as admin: http://%s:%d/#signin=%s (the token is in %s)",
            host,
            settings.port,
            credentials.admin,
            credentials.admin_token_path,
        )


async def _run_once(settings: Settings, *, force: bool) -> int:
    """One sync, printing each detail as it is appended; SIGTERM/SIGINT end it as error."""
    source = build_source(settings)
    async with (
        open_backend(settings, utc_now, serving=False) as backend,
        open_notifier(settings, backend.store) as notifier,
    ):
        scheduler = build_scheduler(settings, backend, source=source, on_detail=_print)
        if notifier is not None:
            scheduler.on_finished.append(lambda ended, _rows: notifier.run_ended(ended))
        loop = asyncio.get_running_loop()
        stopping: set[asyncio.Task[bool]] = set()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(
                signum, lambda: stopping.add(asyncio.create_task(scheduler.cancel(STOPPED)))
            )
        log = await scheduler.run_once(force=force)
        for task in stopping:
            await task
        if notifier is not None:
            await notifier.drain(NOTIFY_DRAIN_SECONDS)
    if log is None:
        print(
            f"another sync run holds {scheduler.lock_where}; nothing was run",
            file=sys.stderr,
        )
        return EXIT_LOCKED
    return EXIT_OK if log.status is Status.success else EXIT_FAILED


async def _purge(settings: Settings, args: argparse.Namespace) -> int:
    """One purge now, told in one sentence on stdout; problems are one line on stderr."""
    days: int = settings.retention_days if args.older_than is None else args.older_than
    if days == 0:
        print("retention is off (RETENTION_DAYS=0); nothing was purged")
        return EXIT_OK
    async with open_backend(settings, utc_now, serving=False) as backend:
        try:
            report = await purge(
                backend.store,
                gate=backend.purge_gate,
                cutoff=utc_now() - timedelta(days=days),
                archive_dir=args.archive_dir or settings.archive_dir,
                dry_run=args.dry_run,
            )
        except PurgeLocked as exc:
            print(f"{exc}; nothing was purged", file=sys.stderr)
            return EXIT_LOCKED
        except PurgeStopped as exc:
            if exc.report.logs:
                print(exc.report.describe())
            print(exc, file=sys.stderr)
            return EXIT_FAILED
        except (StoreError, sqlite3.Error, OSError) as exc:
            print(f"purge failed: {exc}", file=sys.stderr)
            return EXIT_FAILED
    print(report.describe())
    return EXIT_OK


def _print(log: JobLog, detail: JobLogDetail) -> None:
    print(detail.message, flush=True)


if __name__ == "__main__":
    sys.exit(main())
