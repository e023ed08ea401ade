"""Run every benchmark, each in a process of its own, and write docs/benchmarks.md.

python -m bench.run_all [--quick] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# In the order of docs/benchmarks.md.
BENCHMARKS = (
    "sync_throughput",
    "fanout",
    "history",
    "postgres",
    "footprint",
    "adoption",
    "chart_draw",
)


def machine() -> str:
    """What the figures were measured on."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{platform.system()} {platform.release()} ({platform.machine()}), {os.cpu_count()} "
        f"cores of {cpu}, {memory:.0f} GiB; Python {platform.python_version()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run_all")
    parser.add_argument("--quick", action="store_true", help="small sizes, under 3 minutes")
    parser.add_argument("--only", nargs="*", default=list(BENCHMARKS), choices=BENCHMARKS)
    parser.add_argument(
        "--assemble",
        action="store_true",
        help="run nothing: write the document from each benchmark's last results",
    )
    args = parser.parse_args()
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    sections = []
    started = time.monotonic()
    for name in args.only:
        out = results / f"{name}{'-quick' if args.quick else ''}.md"
        code = 0
        if not args.assemble:
            command = [sys.executable, "-m", f"bench.{name}", "--out", str(out)]
            if args.quick:
                command.append("--quick")
            print(f"== {name}", file=sys.stderr, flush=True)
            began = time.monotonic()
            code = subprocess.call(command, cwd=ROOT)
            print(f"== {name}: {time.monotonic() - began:.1f} s", file=sys.stderr, flush=True)
        if code != 0 or not out.exists():
            sections.append(f"## bench.{name}\n\nFailed (exit {code}); no figures.\n")
        else:
            sections.append(out.read_text())
    took = time.monotonic() - started
    which = "make bench-quick" if args.quick else "make bench"
    if args.assemble:
        when = ", ".join(
            f"{name} {datetime.fromtimestamp(path.stat().st_mtime, UTC):%Y-%m-%d %H:%M}"
            for name in args.only
            if (path := results / f"{name}{'-quick' if args.quick else ''}.md").exists()
        )
        written = (
            "Assembled by `python -m bench.run_all --assemble` from the last run of each "
            f"benchmark (`python -m bench.<name>`, one at a time; UTC): {when}."
        )
    else:
        written = (
            f"Written by `{which}` (`python -m bench.run_all{' --quick' if args.quick else ''}`)"
            f" on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, in {took / 60:.1f} minutes."
        )
    header = (
        "# Benchmarks\n\n"
        f"{written}\n\n"
        f"Machine: {machine()}.\n\n"
        "Every figure is measured against its baseline in the same run, alternately where the "
        "two can share the machine, and reported as the median with its spread (min to max) "
        "unless a percentile is named. The machine is shared and noisy: ratios and goals are "
        "the point, absolute times are context. Benchmarks are never part of the tests.\n"
    )
    target = ROOT / "docs" / ("benchmarks-quick.md" if args.quick else "benchmarks.md")
    target.write_text(header + "\n" + "\n".join(sections))
    print(target.read_text())


if __name__ == "__main__":
    main()
