"""The OpenAPI document tells the truth about the server.

A plain check ties the document to the app's routes. Then schemathesis fuzzes a real server,
seeded with finished runs, against ``/api/openapi.json``: every check (no 5xx; status codes,
content types, headers and bodies as documented; invalid input rejected, valid input accepted),
and stateful sequences along the document's links; its report must show every operation tested,
every phase passed and every link followed. The event stream and following the latest run
(``latest.txt?follow=true`` waits for the next run) are left out: they may never end.

This module is also schemathesis's hooks module (``hooks`` in the generated config), for the one
rule a schema cannot state: ``until`` must not be earlier than ``since``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from pydantic import ValidationError

from service.http.openapi import document
from service.http.params import ListParams
from tests.support.api import ADMIN, ADMIN_TOKEN
from tests.support.server import ServerProcess
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# Fixed so CI is reproducible; set OPENAPI_FUZZ_SEED to explore other inputs.
SEED = int(os.environ.get("OPENAPI_FUZZ_SEED", "20251215"))
# Test cases per operation and round; fuzzing and stateful sequences repeat in rounds until
# BUDGET seconds are spent (stateful testing alone stops after a few dozen sequences).
MAX_EXAMPLES = 100
BUDGET = 30
# Seconds the schemathesis run may take before the test fails.
RUN_TIMEOUT = 75
# Routes outside the API: the page (also at its deep links), the document itself, and
# /static/ (by its type).
UNDOCUMENTED = ("/", "/runs/{name}", "/static/{path}", "/api/openapi.json")
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@schemathesis.hook
def map_query(context: Any, query: dict[str, Any] | None) -> dict[str, Any] | None:
    """Swap ``since`` and ``until`` when both are valid and out of order: each is a valid
    date-time, but the pair is not, and no schema can say so (the server answers 400); for
    the timeline, whose window must be non-empty and at most 366 days, move ``until`` to a
    day after ``since`` instead."""
    if (
        not query
        or not isinstance(query.get("since"), str)
        or not isinstance(query.get("until"), str)
    ):
        return query
    try:
        since = ListParams.model_validate({"since": query["since"]}).since
        until = ListParams.model_validate({"until": query["until"]}).until
    except ValidationError:
        return query
    if since is None or until is None:
        return query
    if getattr(getattr(context, "operation", None), "path", "") == "/api/job_logs/timeline":
        # The timeline's window must also be non-empty and at most 366 days.
        if not since < until <= since + timedelta(days=366):
            later = (since + timedelta(days=1)).isoformat().replace("+00:00", "Z")
            return {**query, "until": later}
        return query
    if since > until:
        return {**query, "since": query["until"], "until": query["since"]}
    return query


def _request(url: str, method: str = "GET") -> Any:
    """The JSON answer to ``method url``."""
    request = urllib.request.Request(url, method=method, headers=ADMIN)
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def _finished_run(base: str) -> dict[str, Any]:
    """Run the sync now and wait for the run to finish; its final state."""
    started = _request(f"{base}/api/job_logs", "POST")

    def finished() -> dict[str, Any] | None:
        log = dict(_request(f"{base}/api/job_logs/{started['id']}"))
        return None if log["status"] in ("pending", "processing") else log

    return wait_for(finished, f"run {started['name']} finished")


@pytest.fixture
def seeded_server(tmp_path: Path) -> Iterator[tuple[ServerProcess, list[str]]]:
    """A real server on the demo source with two finished runs; their refs (names and ids)."""
    with ServerProcess(
        tmp_path,
        DEMO_DELAY_SECONDS="0",
        SYNC_ON_START="false",
        SYNC_INTERVAL_SECONDS="0",
        # Every operation that declares a credential must then refuse a request without one.
        ALLOW_ANONYMOUS_VIEWERS="false",
    ) as server:
        server.wait_ready()
        runs = [_finished_run(server.url) for _ in range(2)]
        yield server, [ref for run in runs for ref in (run["name"], str(run["id"]))]


def _pythonpath() -> list[str]:
    """The entries of this process's PYTHONPATH."""
    return [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]


def _config(server: ServerProcess, refs: list[str]) -> str:
    """schemathesis.toml: the accepted Host, this module as hooks, existing refs half the time."""
    values = ", ".join(json.dumps(ref) for ref in refs)
    return f"""
hooks = "tests.integration.test_openapi"
request-timeout = 10

[headers]
Host = "127.0.0.1:{server.port}"
Authorization = "Bearer {ADMIN_TOKEN}"

[generation]
database = "none"

[dictionaries.refs]
values = [{values}]

[parameters]
"path.ref" = {{ dictionary = "refs", probability = 0.5 }}
"""


@pytest.mark.timeout(RUN_TIMEOUT + 15)
def test_the_server_answers_as_its_document_says(
    seeded_server: tuple[ServerProcess, list[str]], tmp_path: Path
) -> None:
    server, refs = seeded_server
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config(server, refs))
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color"),
        *("run", f"{server.url}/api/openapi.json", "--exclude-path", "/api/events"),
        # Following the latest run waits for the next one to start: it may never end either.
        *("--exclude-path", "/api/job_logs/latest.txt"),
        *("--checks", "all", "--phases", "examples,coverage,fuzzing,stateful"),
        *("--max-examples", str(MAX_EXAMPLES), "--max-time", str(BUDGET), "--seed", str(SEED)),
        *("--workers", "1"),
    ]
    try:
        run = subprocess.run(
            command,
            cwd=tmp_path,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join([str(ROOT), *_pythonpath()]),
                "COLUMNS": "120",
            },
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as late:
        pytest.fail(f"schemathesis ran over {RUN_TIMEOUT} s (seed {SEED}):\n{late.stdout!s}")
    assert run.returncode == 0, (
        f"schemathesis found problems (seed {SEED}):\n{run.stdout}{run.stderr}"
    )
    _assert_everything_was_exercised(run.stdout)
    assert server.process is not None
    assert server.process.poll() is None, f"the server exited: {server.logs()}"
    errors = [line for line in server.logs().splitlines() if " ERROR service" in line]
    assert not errors, (
        "the service logged errors (a 5xx schemathesis missed, or a failed run):\n"
        + ("\n".join(errors[:5]))
    )


def _assert_everything_was_exercised(report: str) -> None:
    """A green run proves little if it tested less than it should: every operation but the
    event stream, every phase, and in the stateful phase every link of the document."""
    selected = re.search(r"Selected: (\d+)/(\d+)", report)
    tested = re.search(r"Tested: (\d+)", report)
    links = re.search(r"API Links:\s+(\d+) covered / (\d+) selected / (\d+) total", report)
    assert selected, report
    assert tested, report
    assert links, report
    operations = len(list(_operations(document())))
    assert int(selected.group(2)) == operations
    # Not the two streams that may never end: the events and following the latest run.
    assert int(tested.group(1)) == int(selected.group(1)) == operations - 2
    assert int(links.group(1)) == int(links.group(3)) > 0, "stateful: every link followed"
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert re.search(rf"✅ {phase}\b", report), f"the {phase} phase did not pass"


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path, operation) for every operation the document describes."""
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method.upper(), path, operation


def _registered(app: web.Application) -> set[tuple[str, str]]:
    """Every (METHOD, path template) the app routes, less the page, its files and the document;
    HEAD counts as its GET (aiohttp adds one to every GET route)."""
    routes = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path in UNDOCUMENTED:
            continue
        routes.add(("GET" if route.method == "HEAD" else route.method, path))
    return routes


def _refs(node: object) -> Iterator[str]:
    """Every ``$ref`` value anywhere in ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _keys(node: object) -> Iterator[str]:
    """Every key of every mapping anywhere in ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _keys(value)
    elif isinstance(node, list):
        for item in node:
            yield from _keys(item)


def _resolve(doc: dict[str, Any], ref: str) -> object:
    """The node a local JSON pointer ``#/...`` names; KeyError when there is none."""
    assert ref.startswith("#/"), f"not a local reference: {ref}"
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_the_document_is_openapi_31_and_covers_every_route(app: web.Application) -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    assert {"title", "version"} <= doc["info"].keys()
    # Bounds pydantic can leave under its own names, which JSON Schema ignores (no field of
    # the API is named so).
    assert set(_keys(doc)) & {"ge", "le", "gt", "lt"} == set()
    routes = _registered(app)
    documented = {(method, path) for method, path, _ in _operations(doc)}
    assert routes - documented == set(), "routes the document leaves out"
    assert documented - routes == set(), "documented operations no route serves"
    for method, path, operation in _operations(doc):
        assert operation["responses"], f"{method} {path} has no responses"
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert declared == set(re.findall(r"{([^}]+)}", path)), f"{method} {path}: {declared}"


def test_every_reference_and_link_of_the_document_resolves() -> None:
    doc = document()
    ids = [operation["operationId"] for _, _, operation in _operations(doc)]
    assert len(ids) == len(set(ids)), "operationIds are unique"
    for method, path, operation in _operations(doc):
        for status, answer in operation["responses"].items():
            for name, link in answer.get("links", {}).items():
                assert link["operationId"] in ids, f"{method} {path} {status}: link {name}"
    refs = set(_refs(doc))
    assert refs, "the answers refer to component schemas"
    for ref in sorted(refs):
        try:
            _resolve(doc, ref)
        except (KeyError, TypeError):
            pytest.fail(f"$ref {ref} does not resolve")


def test_the_document_passes_the_openapi_31_meta_schema() -> None:
    schemathesis.openapi.from_dict(document()).validate()
