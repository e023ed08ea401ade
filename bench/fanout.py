"""Fan-out: details appended at a steady rate, delivered to many SSE subscribers.

Each round starts one server process (bench/fanout_server.py: the service, the floor — a minimal
aiohttp handler writing pre-encoded bytes — or the peer, sse-starlette on uvicorn) and four
client processes (bench/fanout_client.py) holding the subscribers on raw asyncio streams. The
server sends at the rate for the round's duration, with each event's commit (or send) time; the
clients record when each event id arrives. Reported: delivery latency from commit to receipt
(p50, p99, max over every delivery of the round), server CPU (utime + stime from /proc) per
1,000 deliveries, lost and duplicated events; then, per server, the highest rate at which p99
stays within 100 ms.

python -m bench.fanout [--quick] [--out PATH] [--profile PATH]
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench import common
from bench.common import Section, median, spread
from bench.fanout_server import raise_nofile
from tests.support.faults import cpu_seconds
from tests.support.system import free_port

ROOT = Path(__file__).resolve().parents[1]
MODES = ("service", "floor", "peer")
# Lines committed by another process: the change check against the poll it replaced.
ELSEWHERE = ("elsewhere", "elsewhere-poll")
CLIENTS = 4
RATES = (10, 20, 50, 100, 200, 500, 1000)
P99_LIMIT_MS = 100.0
BIN = 10_000  # the clients' histogram bins per second
_pool = ThreadPoolExecutor(max_workers=16)


NOTES = [
    "How the service fans out: each event is encoded once (its frame, and the frame as one "
    "HTTP/1.1 chunk); details the hub reads together (a busy writer, another process's "
    "transaction) are joined once into one chunk for every subscriber. A stream that is "
    "caught up — its queue empty, its task idle — lets the hub write that pre-encoded chunk "
    "straight to its transport, one write per read, without waking its task; the floor "
    "wakes one task per subscriber per event. Anything else (a log change, a "
    "transport already holding 64 KiB the client has not taken, a closing connection) goes to "
    "the stream's queue, and its task writes it with the stall limit as before: the backlog is "
    "bounded by the transport's buffer plus SSE_BUFFER_EVENTS, ids stay detail ids, order and "
    "resume are unchanged.",
    "What dominates the service now: `socket.send` inside `transport.write`, once per "
    "subscriber per read, as in the floor; then the per-event commit and the hub's read of "
    "it. Idle streams cost no wake-ups of their own: one tick of the hub every 0.25 s checks "
    "every stream (client gone, stall, ping, session end).",
    "Lines committed by another process (a `run-once`, the Rails app): the hub asks "
    "`PRAGMA data_version` on a connection of its own every EVENTS_CHECK_SECONDS (20 ms) "
    "and reads only when it changed; idle, that costs ~10 ms of CPU a second on this "
    "machine, mostly the wake-up itself (a no-op timer at that rate costs nearly as "
    "much); the baseline is the same service with the check off, reading every "
    "EVENTS_POLL_SECONDS (0.25 s) as before #13. The writer is a separate process "
    "committing one detail per transaction; latency is from its commit to receipt. The "
    "poll's batches of ~2.5 lines are written as one chunk each, hence its lower CPU per "
    "delivery.",
    "A rate passes when p99 ≤ 100 ms, nothing is lost or duplicated, and the sender kept 95% "
    "of the rate. The service appends in process as its sync job does — one awaited "
    "`add_detail` after another, on the loop that also fans out — so its ceiling is where one "
    "commit plus one fan-out to every subscriber takes longer than the interval; the floor "
    "has no database.",
    "With --quick's 200 subscribers, the service's per-event cost (the commit, the hub's "
    "read, the JSON) is shared by a fifth as many deliveries, so its CPU per delivery sits "
    "above the floor's; the goal is judged with 1,000.",
    "Latency is measured on a shared 2-core machine with the four client processes competing "
    "for it: the p99 and max mostly show how long a process waits for a core, for the servers "
    "and the clients alike; compare the servers with each other, in the same run.",
]


@dataclass
class Round:
    """One server, one rate, one run."""

    mode: str
    rate: float
    achieved: float
    p50: float  # ms
    p99: float  # ms
    max: float  # ms
    cpu_per_1000: float  # ms of server CPU per 1,000 deliveries
    deliveries: int
    lost: int
    duplicated: int

    @property
    def within(self) -> bool:
        """p99 within the limit, nothing lost, and the rate kept up."""
        clean = self.lost == 0 and self.duplicated == 0
        return clean and self.p99 <= P99_LIMIT_MS and self.achieved >= 0.95 * self.rate


def read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The next line a child prints, or an error after ``timeout`` seconds."""
    assert process.stdout is not None
    line = _pool.submit(process.stdout.readline).result(timeout=timeout)
    if not line:
        raise RuntimeError(f"{process.args!r} exited ({process.wait()})")
    return line


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def measure(
    mode: str, subscribers: int, rate: float, duration: float, profile: Path | None = None
) -> Round:
    """One round: start the server and the clients, send, collect."""
    port = free_port()
    command = ["bench.fanout_server", mode, "--port", str(port), "--rate", str(rate)]
    command += ["--duration", str(duration), "--subscribers", str(subscribers)]
    if profile is not None:
        command += ["--profile", str(profile)]
    server = spawn(*command)
    clients: list[subprocess.Popen[str]] = []
    try:
        assert read_line(server, 30).strip() == "READY"
        for n in range(CLIENTS):
            share = subscribers // CLIENTS + (1 if n < subscribers % CLIENTS else 0)
            clients.append(
                spawn("bench.fanout_client", "--port", str(port), "--connections", str(share))
            )
        for client in clients:
            assert read_line(client, 60).strip() == "READY"
        before = cpu_seconds(server.pid)
        started = time.monotonic()
        _send(server, "GO")
        sent = read_line(server, duration * 3 + 60)
        elapsed = time.monotonic() - started
        time.sleep(1.0)  # let the last events arrive
        cpu = cpu_seconds(server.pid) - before
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
            file.write(sent)
        for client in clients:
            _send(client, f"REPORT {file.name}")
        reports = [json.loads(read_line(client, 120)) for client in clients]
        Path(file.name).unlink()
    finally:
        for process in (server, *clients):
            _stop(process)
    return _combine(mode, rate, len(json.loads(sent)["sent"]) / elapsed, cpu, reports)


def _combine(
    mode: str, rate: float, achieved: float, cpu: float, reports: list[dict[str, object]]
) -> Round:
    histogram: dict[int, int] = {}
    for report in reports:
        for key, count in report["histogram"]:  # type: ignore[attr-defined]
            histogram[key] = histogram.get(key, 0) + count
    deliveries = sum(int(r["deliveries"]) for r in reports)  # type: ignore[call-overload]

    def pct(p: float) -> float:
        rank = max(1, min(deliveries, round(p / 100 * deliveries + 0.5)))
        for key in sorted(histogram):
            rank -= histogram[key]
            if rank <= 0:
                return (key + 0.5) / BIN * 1000
        return float("nan")

    return Round(
        mode=mode,
        rate=rate,
        achieved=achieved,
        p50=pct(50),
        p99=pct(99),
        max=max(float(r["max"]) for r in reports) * 1000,  # type: ignore[arg-type]
        cpu_per_1000=cpu / max(deliveries, 1) * 1000 * 1000,
        deliveries=deliveries,
        lost=sum(int(r["lost"]) for r in reports),  # type: ignore[call-overload]
        duplicated=sum(int(r["duplicated"]) for r in reports),  # type: ignore[call-overload]
    )


def _send(process: subprocess.Popen[str], line: str) -> None:
    assert process.stdin is not None
    process.stdin.write(line + "\n")
    process.stdin.flush()


def _stop(process: subprocess.Popen[str]) -> None:
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _log(result: Round) -> None:
    print(
        f"{result.mode:8} {result.rate:6.0f}/s (kept {result.achieved:6.1f}/s) "
        f"p50 {result.p50:7.1f} p99 {result.p99:7.1f} max {result.max:7.1f} ms  "
        f"cpu {result.cpu_per_1000:6.1f} ms/1000  n={result.deliveries} "
        f"lost={result.lost} dup={result.duplicated}",
        file=sys.stderr,
        flush=True,
    )


def rate_search(mode: str, subscribers: int, duration: float) -> tuple[float, list[Round]]:
    """The highest rate of RATES with p99 within the limit in one of two tries (0: none)."""
    best = 0.0
    rounds = []
    for rate in RATES:
        # Two tries: on a shared machine a miss may be another process's burst; a pass cannot be.
        for _ in range(2):
            result = measure(mode, subscribers, rate, duration)
            _log(result)
            rounds.append(result)
            if result.within:
                break
        if not result.within:
            break
        best = rate
    return best, rounds


def run(quick: bool, profile: Path | None = None) -> Section:
    """Measure the service, the floor and the peer alternately; return the section."""
    raise_nofile()
    subscribers, rounds, duration = (200, 1, 5.0) if quick else (1000, 3, 20.0)
    results: dict[str, list[Round]] = {mode: [] for mode in MODES}
    for _ in range(rounds):
        for mode in MODES:
            result = measure(mode, subscribers, 10, duration)
            _log(result)
            results[mode].append(result)
    if profile is not None:
        # A round of its own: the profiler's cost must not count in the figures.
        _log(measure("service", subscribers, 10, duration, profile))
    elsewhere: dict[str, list[Round]] = {mode: [] for mode in ELSEWHERE}
    for _ in range(rounds):
        for mode in ELSEWHERE:
            result = measure(mode, subscribers, 10, duration)
            _log(result)
            elsewhere[mode].append(result)
    best: dict[str, float] = {}
    if not quick:
        for mode in MODES:
            best[mode], _ = rate_search(mode, subscribers, 10.0)
    section = _section(quick, subscribers, rounds, duration, results, best)
    _elsewhere(section, subscribers, elsewhere)
    return section


def _elsewhere(section: Section, subscribers: int, results: dict[str, list[Round]]) -> None:
    """The table and goal of lines committed by another process."""
    labels = {
        "elsewhere": "service: change check (PRAGMA data_version) every 20 ms, read on change",
        "elsewhere-poll": "baseline: the same service reading every 0.25 s (check off)",
    }
    section.table(
        [
            f"lines committed by another process, 10/s, {subscribers:,} subscribers",
            "p50",
            "p99",
            "max",
            "CPU per 1,000 deliveries",
            "lost / dup",
        ],
        [
            [
                labels[mode],
                spread([r.p50 for r in rs], "ms", 1),
                spread([r.p99 for r in rs], "ms", 1),
                spread([r.max for r in rs], "ms", 1),
                spread([r.cpu_per_1000 for r in rs], "ms", 1),
                f"{sum(r.lost for r in rs)} / {sum(r.duplicated for r in rs)}",
            ]
            for mode, rs in results.items()
        ],
    )
    checked, polled = (median([r.p99 for r in results[mode]]) for mode in ELSEWHERE)
    clean = all(r.lost == 0 and r.duplicated == 0 for rs in results.values() for r in rs)
    section.goal(
        "another process's lines: commit to receipt p99 ≤ 100 ms, none lost or duplicated",
        checked <= 100 and clean,
        f"{checked:.1f} ms vs {polled:.1f} ms polling every 0.25 s; {_lost(results['elsewhere'])}",
    )


def _section(
    quick: bool,
    subscribers: int,
    rounds: int,
    duration: float,
    results: dict[str, list[Round]],
    best: dict[str, float],
) -> Section:
    section = Section(
        title="Fan-out to SSE subscribers",
        command=f"python -m bench.fanout{' --quick' if quick else ''}",
        method=(
            f"{subscribers:,} subscribers on raw asyncio streams in {CLIENTS} client processes; "
            f"one detail appended every 100 ms (10/s) for {duration:.0f} s per round, "
            f"{rounds} round(s) per server, alternating service, floor and peer. Latency is "
            "commit (or send) to receipt over every delivery of a round; CPU is the server "
            "process's utime + stime over the window, per 1,000 deliveries. Figures are the "
            "median (min to max) over the rounds."
        ),
    )
    labels = {
        "service": "service (create_app, add_detail in process)",
        "floor": "floor: minimal aiohttp, pre-encoded bytes, a task per subscriber",
        "peer": "peer: sse-starlette on uvicorn",
    }
    rows = []
    for mode in MODES:
        rs = results[mode]
        rows.append(
            [
                labels[mode],
                spread([r.p50 for r in rs], "ms", 1),
                spread([r.p99 for r in rs], "ms", 1),
                spread([r.max for r in rs], "ms", 1),
                spread([r.cpu_per_1000 for r in rs], "ms", 1),
                f"{sum(r.lost for r in rs)} / {sum(r.duplicated for r in rs)}",
                f"{sum(r.deliveries for r in rs):,}",
            ]
        )
    section.table(
        ["server", "p50", "p99", "max", "CPU per 1,000 deliveries", "lost / dup", "deliveries"],
        rows,
    )
    if best:
        section.table(
            [
                "server",
                f"highest rate of {RATES} with p99 ≤ {P99_LIMIT_MS:.0f} ms (10 s, best of 2 tries)",
            ],
            [[labels[mode], _rate(best[mode])] for mode in MODES],
        )
    service, floor, peer = (results[mode] for mode in MODES)
    p99 = {mode: median([r.p99 for r in results[mode]]) for mode in MODES}
    cpu = {mode: median([r.cpu_per_1000 for r in results[mode]]) for mode in MODES}
    clean = all(r.lost == 0 and r.duplicated == 0 for r in service)
    section.goal("no event lost or duplicated (service)", clean, _lost(service))
    section.goal(
        "p99 ≤ the floor's p99 and ≤ 50 ms at 10/s",
        p99["service"] <= p99["floor"] and p99["service"] <= 50,
        f"{p99['service']:.1f} ms vs floor {p99['floor']:.1f} ms",
    )
    section.goal(
        "CPU per delivery ≤ 1.0x the floor's",
        cpu["service"] <= cpu["floor"],
        f"{cpu['service']:.1f} vs {cpu['floor']:.1f} ms per 1,000 "
        f"({cpu['service'] / cpu['floor']:.2f}x)",
    )
    section.goal(
        "ahead of the peer on p99 and CPU",
        p99["service"] < p99["peer"] and cpu["service"] < cpu["peer"],
        f"p99 {p99['service']:.1f} vs {p99['peer']:.1f} ms; CPU {cpu['service']:.1f} vs "
        f"{cpu['peer']:.1f} ms per 1,000 ({cpu['service'] / cpu['peer']:.2f}x)",
    )
    if best:
        section.goal(
            f"highest rate with p99 ≤ {P99_LIMIT_MS:.0f} ms ≥ the floor's",
            best["service"] >= best["floor"],
            f"{_rate(best['service'])} vs floor {_rate(best['floor'])}",
        )
    del floor, peer
    load = os.getloadavg()
    section.notes += [
        *NOTES,
        f"Load average at the end of this run: {load[0]:.1f} (1 min), {load[1]:.1f} (5 min).",
    ]
    return section


def _rate(rate: float) -> str:
    return f"{rate:,.0f}/s" if rate else f"none: p99 > {P99_LIMIT_MS:.0f} ms at {RATES[0]}/s"


def _lost(rounds: list[Round]) -> str:
    lost = sum(r.lost for r in rounds)
    duplicated = sum(r.duplicated for r in rounds)
    return f"{lost} lost, {duplicated} duplicated of {sum(r.deliveries for r in rounds):,}"


def main() -> None:
    common.main(
        "fanout",
        "200 subscribers, one round each",
        lambda args: run(args.quick, args.profile),
        lambda parser: parser.add_argument(
            "--profile", type=Path, help="a pyinstrument profile of the service"
        ),
    )


if __name__ == "__main__":
    main()
