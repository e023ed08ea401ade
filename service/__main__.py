"""Command line.

python -m service [serve]        the HTTP server, the page and the scheduler (default)
python -m service run-once [--force]
                                 one sync in the foreground: details on stdout, logs on
                                 stderr; exit 0 success, 1 error, 3 another run holds the lock
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from aiohttp import web

from service import logs
from service.app import create_app
from service.clock import utc_now
from service.components import build_scheduler, open_database, open_target
from service.settings import Settings, SettingsError, load_settings
from service.sources import SourceError, build_source
from service.store import JobLogDetail, Status, StoreError

logger = logging.getLogger("service")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_SETTINGS = 2
EXIT_LOCKED = 3
STOPPED = "Interrupted - run-once stopped"


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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command named in ``argv``; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return EXIT_SETTINGS
    try:
        if args.command == "run-once":
            # The details on stdout are the output; stderr only has problems unless LOG_LEVEL.
            explicit = "log_level" in settings.model_fields_set
            logs.configure(settings.log_level if explicit else "warning", stream=sys.stderr)
            return asyncio.run(_run_once(settings, force=args.force))
        logs.configure(settings.log_level)
        return _serve(settings)
    except (StoreError, SourceError) as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _serve(settings: Settings) -> int:
    try:
        web.run_app(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            shutdown_timeout=settings.shutdown_timeout_seconds,
            print=_announce,
            access_log=logging.getLogger("service.access"),
        )
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(f"cannot listen on {settings.host}:{settings.port}: {reason}", file=sys.stderr)
        return EXIT_FAILED
    logger.info("stopped")
    return EXIT_OK


def _announce(banner: str) -> None:
    """Log aiohttp's "Running on …" banner as one line, once the socket is bound."""
    for line in banner.splitlines():
        if line.startswith("="):
            logger.info("%s", line.strip("= "))


async def _run_once(settings: Settings, *, force: bool) -> int:
    """One sync, printing each detail as it is appended; SIGTERM/SIGINT end it as error."""
    source = build_source(settings)
    async with open_database(settings, utc_now) as db, open_target(settings, db) as target:
        scheduler = build_scheduler(
            settings, db=db, target=target, source=source, clock=utc_now, on_detail=_print
        )
        loop = asyncio.get_running_loop()
        stopping: set[asyncio.Task[bool]] = set()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(
                signum, lambda: stopping.add(asyncio.create_task(scheduler.cancel(STOPPED)))
            )
        log = await scheduler.run_once(force=force)
        for task in stopping:
            await task
    if log is None:
        print(
            f"another sync run holds the lock {scheduler.lock_path}; nothing was run",
            file=sys.stderr,
        )
        return EXIT_LOCKED
    return EXIT_OK if log.status is Status.success else EXIT_FAILED


def _print(detail: JobLogDetail) -> None:
    print(detail.message, flush=True)


if __name__ == "__main__":
    sys.exit(main())
