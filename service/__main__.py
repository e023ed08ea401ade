"""Command line: ``python -m service`` serves the API, the page and the scheduler."""

from __future__ import annotations

import argparse
import logging
import sys

from aiohttp import web

from service import logs
from service.app import create_app
from service.settings import SettingsError, load_settings
from service.store import StoreError

logger = logging.getLogger("service")

EXIT_SETTINGS = 2
EXIT_STARTUP = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m service",
        description="Job-execution log service. Settings come from environment variables "
        "(see README.md).",
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the HTTP server (the default)")
    return parser


def _announce(banner: str) -> None:
    """Log aiohttp's "Running on …" banner as one line, once the socket is bound."""
    for line in banner.splitlines():
        if line.startswith("="):
            logger.info("%s", line.strip("= "))


def main(argv: list[str] | None = None) -> int:
    """Run the command named in ``argv``; returns the process exit code."""
    _parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return EXIT_SETTINGS
    logs.configure(settings.log_level)
    try:
        web.run_app(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            shutdown_timeout=settings.shutdown_timeout_seconds,
            print=_announce,
            access_log=logging.getLogger("service.access"),
        )
    except StoreError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    except OSError as exc:
        print(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return EXIT_STARTUP
    logger.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
