"""``GET /api/openapi.json``: an OpenAPI 3.1 description built from the same pydantic models
that validate the requests and shape the answers, so the two cannot drift apart.

What the models cannot say is added here: query parameters are optional (absent, never null),
``since``/``until`` take a date or a date-time, a ``{ref}`` is a name or an id, the headers every
answer of an operation carries, and the links from a run to its sub-resources. Who may call an
operation is read from its route's handler (see :mod:`service.http.auth`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from service import wire
from service.http import params, payloads, sessions
from service.http.auth import Access, access_of
from service.store import SEARCH_TOTAL_CAP

_OUT: tuple[type[BaseModel], ...] = (
    wire.JobLog,
    wire.JobLogDetail,
    wire.EventDetail,
    wire.JobLogWithDetails,
    wire.JobLogPage,
    wire.DetailPage,
    wire.StatusCounts,
    payloads.StatusOut,
    payloads.NeighboursOut,
    payloads.TimelineOut,
    payloads.ErrorOut,
    payloads.ConflictOut,
    payloads.ReadyOut,
    payloads.SessionOut,
)
# What the store finds by ref (service.store.job_log): a name (YYYYMMDDhhmmss, then _n for a
# same-second run) or an id. Anything else is 404, or another route's answer (``stats``, ``x.txt``).
_REF_PATTERN = r"^(?:[0-9]{14}(?:_[0-9]+)?|[0-9]{1,19})$"
_REF = {
    "name": "ref",
    "in": "path",
    "required": True,
    "description": "A name (20251215143022 or 20251215143022_1) or an id.",
    "schema": {"type": "string", "pattern": _REF_PATTERN},
    "examples": {"name": {"value": "20251215143022"}, "id": {"value": "1"}},
}
# A credential: a bearer token (scripts, curl) or the browser session cookie.
_CREDENTIAL: list[dict[str, list[str]]] = [{"bearer": []}, {"session": []}]
# A moment in a query: what service.http.params reads (ISO 8601; no offset means UTC).
_MOMENT: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "format": "date-time"},
        {"type": "string", "format": "date"},
    ],
    "description": "An ISO 8601 date-time (with Z or an offset; none means UTC) or a date "
    "(its midnight UTC).",
}
_DESCRIPTIONS = {
    (params.ListParams, "status"): "Only runs with this status.",
    (params.ListParams, "since"): "Only runs created at or after this moment.",
    (params.ListParams, "until"): "Only runs created before this moment; not before since.",
    (params.ListParams, "q"): "Only runs with a line containing this text (ASCII case ignored).",
    (params.ListParams, "page"): "The page, from 1.",
    (params.ListParams, "per_page"): "Runs per page.",
    (params.DetailParams, "after"): "Only lines with a greater id (next_after of a page).",
    (params.DetailParams, "limit"): "Lines per page.",
    (params.DetailParams, "q"): "Only lines containing this text (ASCII case ignored).",
    (params.RunParams, "force"): "Pass the shrink guard once (accept a much smaller set).",
    (params.EventParams, "job_log"): "Follow this log only (its name or id); ends with it.",
    (params.EventParams, "last_event_id"): "Resume after this event id (as Last-Event-ID).",
}


def _json(name: str) -> dict[str, Any]:
    """A JSON body of the component schema ``name``."""
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}


def _answer(
    description: str, name: str | None = None, headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A response: ``description``, a JSON body of schema ``name``, and its headers."""
    answer: dict[str, Any] = {"description": description}
    if headers:
        answer["headers"] = headers
    if name is not None:
        answer["content"] = _json(name)
    return answer


def _header(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """A response header that is always sent."""
    return {"description": description, "required": True, "schema": schema or {"type": "string"}}


# pydantic leaves a Field's bounds under these names when a BeforeValidator precedes the Field
# in Annotated[...] (as params.Id does); JSON Schema would silently ignore them.
_BOUNDS = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}


def _query_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema from its model's: no null branch nor null default (absent
    is null; ``?status=null`` is the string "null", which is invalid), standard bound names,
    and a moment as a date-time or a date."""
    schema = {_BOUNDS.get(k, k): v for k, v in schema.items() if k != "title"}
    branches = schema.pop("anyOf", None)
    if branches is not None:
        kept = [_query_schema(b) for b in branches if b != {"type": "null"}]
        schema = {**(kept[0] if len(kept) == 1 else {"anyOf": kept}), **schema}
    if "default" in schema and schema["default"] is None:
        del schema["default"]
    if schema.get("format") == "date-time":
        schema = {k: v for k, v in schema.items() if k not in ("type", "format")} | _MOMENT
    return schema


def _query(model: type[BaseModel]) -> list[dict[str, Any]]:
    """The optional query parameters that ``model`` validates."""
    schema = model.model_json_schema()
    out = []
    for name, prop in schema["properties"].items():
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": False}
        description = _DESCRIPTIONS.get((model, name))
        if description is not None:
            parameter["description"] = description
        parameter["schema"] = _query_schema(prop)
        out.append(parameter)
    return out


def _links(*operations: str) -> dict[str, Any]:
    """Links from an answer holding a job log (its ``name``) to ``operations`` on it."""
    return {
        operation: {"operationId": operation, "parameters": {"ref": "$response.body#/name"}}
        for operation in operations
    }


_LOG_LINKS = ("getJobLog", "listJobLogDetails", "getJobLogText", "cancelRun")
_BAD_PARAMETER = _answer(
    "An invalid parameter, named in field (also: not percent-encoded UTF-8, or given twice)",
    "ErrorOut",
)
_NOT_FOUND = _answer("No such job log", "ErrorOut")
_UNAUTHORIZED = _answer(
    "No credential (or only an anonymous viewer's, for an action)",
    "ErrorOut",
    {"WWW-Authenticate": _header("The scheme to use", {"const": "Bearer"})},
)
_FORBIDDEN = _answer(
    "Not allowed: a wrong token, a role too low, a foreign Host, or cross-site", "ErrorOut"
)
_POST_ERR = {"413": _answer("A body was sent: this request takes none", "ErrorOut")}


def _history_paths() -> dict[str, Any]:
    """The read-only history: the list, counts, the latest, one log and its lines."""
    text = {"text/plain": {"schema": {"type": "string"}}}
    return {
        "/api/job_logs/stats": {
            "get": {
                "operationId": "getStats",
                "summary": "Counts in all and per status",
                "responses": {"200": _answer("The counts", "StatusCounts")},
            }
        },
        "/api/job_logs/latest": {
            "get": {
                "operationId": "getLatestJobLog",
                "summary": "The most recent job log with its details",
                "responses": {
                    "200": {
                        **_answer("The log", "JobLogWithDetails"),
                        "links": _links(*_LOG_LINKS),
                    },
                    "404": _answer("There are no job logs yet", "ErrorOut"),
                },
            }
        },
        "/api/job_logs/{ref}": {
            "get": {
                "operationId": "getJobLog",
                "summary": "One job log with its details, in order (details=false: without)",
                "parameters": [_REF, *_query(params.OneParams)],
                "responses": {
                    "200": {
                        "description": "The log",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "anyOf": [
                                        {"$ref": "#/components/schemas/JobLogWithDetails"},
                                        {"$ref": "#/components/schemas/JobLog"},
                                    ]
                                }
                            }
                        },
                    },
                    "400": _BAD_PARAMETER,
                    "404": _NOT_FOUND,
                },
            }
        },
        "/api/job_logs/{ref}/details": {
            "get": {
                "operationId": "listJobLogDetails",
                "summary": "A page of a job log's details",
                "description": "An unknown ref is 404 before the parameters' values are looked "
                "at (a malformed query string, badly encoded or with a name given twice, is 400 "
                "first).",
                "parameters": [_REF, *_query(params.DetailParams)],
                "responses": {
                    "200": _answer("A page", "DetailPage"),
                    "400": _BAD_PARAMETER,
                    "404": _NOT_FOUND,
                },
            }
        },
        "/api/job_logs/timeline": {
            "get": {
                "operationId": "getTimeline",
                "summary": "Runs per time bucket over a window, and the schedule's gaps",
                "parameters": _query(params.TimelineParams),
                "responses": {
                    "200": _answer("The buckets with runs, and the gaps", "TimelineOut"),
                    "400": _BAD_PARAMETER,
                },
            }
        },
        "/api/job_logs/{ref}/neighbours": {
            "get": {
                "operationId": "getJobLogNeighbours",
                "summary": "The runs just before and just after this one",
                "parameters": [_REF],
                "responses": {
                    "200": _answer("The previous and the next run", "NeighboursOut"),
                    "404": _NOT_FOUND,
                },
            }
        },
        "/api/job_logs/{ref}.txt": {
            "get": {
                "operationId": "getJobLogText",
                "summary": "The whole job log as text, one line per detail",
                "description": _FOLLOW,
                "parameters": [_REF, *_query(params.TextParams)],
                "responses": {
                    "200": {
                        **_answer("The log as text (a download unless follow=true)"),
                        "content": text,
                    },
                    "400": _BAD_PARAMETER,
                    "404": _NOT_FOUND,
                    "503": _answer(
                        "follow=true: SSE_MAX_CLIENTS streams are open already", "ErrorOut"
                    ),
                },
            }
        },
        "/api/job_logs/latest.txt": {
            "get": {
                "operationId": "getLatestJobLogText",
                "summary": "The newest job log as text; follow=true: the run going on, or the next",
                "description": _FOLLOW,
                "parameters": _query(params.TextParams),
                "responses": {
                    "200": {**_answer("The log as text"), "content": text},
                    "400": _BAD_PARAMETER,
                    "404": _NOT_FOUND,
                    "503": _answer(
                        "follow=true: SSE_MAX_CLIENTS streams are open already", "ErrorOut"
                    ),
                },
            }
        },
    }


_FOLLOW = (
    "Without follow: the lines as `<UTC ISO time>  <message>`, as an attachment. With "
    "follow=true: `HH:MM:SS.mmm  <message>` in the service's TIMEZONE, each line as it is "
    "written (by this service or another process), the response ending when the run ends "
    "(`curl -N`). A message's own line breaks are written as `\\n`."
)


def _run_paths() -> dict[str, Any]:
    """The list of runs and running the sync: run now, cancel, status."""
    return {
        "/api/job_logs": {
            "get": {
                "operationId": "listJobLogs",
                "summary": "Job logs, most recent first",
                "description": "With q, the runs that have a detail containing the text "
                "(ASCII letters in either case). Such a search counts at most "
                f"{SEARCH_TOTAL_CAP:,} runs: past that, total is {SEARCH_TOTAL_CAP:,} and "
                f"total_is_lower_bound is true (the page shows '{SEARCH_TOTAL_CAP:,}+'); "
                "every page is still exact, so keep paging while a page is full.",
                "parameters": _query(params.ListParams),
                "responses": {"200": _answer("A page", "JobLogPage"), "400": _BAD_PARAMETER},
            },
            "post": {
                "operationId": "runNow",
                "summary": "Run the sync now",
                "description": "Needs the admin role. The Host must be a loopback name, "
                "PUBLIC_URL's host or a trusted proxy's; a browser's request must be "
                "same-origin.",
                "parameters": _query(params.RunParams),
                "responses": {
                    "202": {
                        **_answer(
                            "The new run",
                            "JobLog",
                            {"Location": _header("The run, relative: job_logs/<name>")},
                        ),
                        "links": _links(*_LOG_LINKS),
                    },
                    "400": _BAD_PARAMETER,
                    **_POST_ERR,
                    "409": _answer("A run is in progress", "ConflictOut"),
                },
            },
        },
        "/api/job_logs/{ref}/cancel": {
            "post": {
                "operationId": "cancelRun",
                "summary": "End a running run as error",
                "parameters": [_REF],
                "responses": {
                    "202": _answer("The cancelled run", "JobLog"),
                    "404": _NOT_FOUND,
                    **_POST_ERR,
                    "409": _answer("That run is not running here", "ConflictOut"),
                },
            }
        },
        "/api/status": {
            "get": {
                "operationId": "getStatus",
                "summary": "Source, schedule, the run in progress, the last success",
                "responses": {"200": _answer("The status", "StatusOut")},
            }
        },
    }


_NO_STORE = {"Cache-Control": _header("Never stored", {"const": "no-store"})}


def _other_paths() -> dict[str, Any]:
    """The event stream, the probes and the metrics."""
    return {
        "/api/events": {
            "get": {
                "operationId": "streamEvents",
                "summary": "Server-Sent Events: detail, job_log and end events",
                "parameters": [
                    *_query(params.EventParams),
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "description": "Resume after this event id (wins over last_event_id).",
                        "schema": {"type": "integer", "minimum": 0, "maximum": params.MAX_ID},
                    },
                ],
                "responses": {
                    "200": {
                        **_answer(
                            "The event stream",
                            headers={
                                "Cache-Control": _header("Never cached", {"const": "no-cache"})
                            },
                        ),
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "204": _answer("The followed log has ended and the client has it all"),
                    "400": _BAD_PARAMETER,
                    "404": _NOT_FOUND,
                    "503": _answer(
                        "Too many streams are open",
                        "ErrorOut",
                        {
                            "Retry-After": _header(
                                "Seconds to wait before retrying", {"type": "string"}
                            )
                        },
                    ),
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness",
                "responses": {
                    "200": {
                        **_answer(
                            "The event loop answers",
                            headers={
                                "Cache-Control": _header("Never stored", {"const": "no-store"})
                            },
                        ),
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"status": {"const": "ok"}},
                                    "required": ["status"],
                                }
                            }
                        },
                    }
                },
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Readiness: a real write reaches the database file; the scheduler runs",
                "responses": {
                    "200": _answer("Ready", "ReadyOut", _NO_STORE),
                    "503": _answer("Not ready; checks say why", "ReadyOut", _NO_STORE),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics (joblog_*)",
                "responses": {
                    "200": {
                        **_answer("The metrics in the Prometheus text format", headers=_NO_STORE),
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    }


def _session_paths() -> dict[str, Any]:
    """Who is asking; a browser session from a token; its end."""
    cookie = {"Set-Cookie": _header("joblog_session=…; HttpOnly; SameSite=Strict; Path=…")}
    return {
        "/api/session": {
            "get": {
                "operationId": "getSession",
                "summary": "Who is asking: role (null: nobody), how it is proven, proxy user",
                "responses": {"200": _answer("The caller", "SessionOut", _NO_STORE)},
            },
            "post": {
                "operationId": "signIn",
                "summary": "Sign a browser in with a token (the role follows the token)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": sessions.SignIn.model_json_schema()}
                    },
                },
                "responses": {
                    "200": _answer("Signed in: the session cookie is set", "SessionOut", cookie),
                    "400": _BAD_PARAMETER,
                    "403": _answer("The token is wrong, or the request cross-site", "ErrorOut"),
                    "413": _answer("The body is over 16 KiB", "ErrorOut"),
                    "415": _answer("The body is not JSON", "ErrorOut"),
                },
            },
            "delete": {
                "operationId": "signOut",
                "summary": "Sign the browser out (the cookie is cleared)",
                "responses": {
                    "204": _answer("Signed out", headers=cookie),
                    "403": _answer("The request came from another site", "ErrorOut"),
                },
            },
        }
    }


def document(access: Mapping[tuple[str, str], Access] | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document; ``access`` (method, path → what it needs) adds who may call
    each operation and the answers of a caller who may not."""
    _, schemas = models_json_schema(
        [(model, "serialization") for model in _OUT],
        ref_template="#/components/schemas/{model}",
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Job log service",
            "version": "1",
            "description": "Every run of the open-orders sync: history over REST, live over SSE.",
        },
        "paths": _secured(
            {**_run_paths(), **_history_paths(), **_session_paths(), **_other_paths()},
            access or {},
        ),
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "joblog_session"},
            },
        },
    }


def _secured(paths: dict[str, Any], access: Mapping[tuple[str, str], Access]) -> dict[str, Any]:
    for path, item in paths.items():
        for method, operation in item.items():
            need = access.get((method.upper(), path))
            if need is None:
                continue
            if need is Access.public:
                operation["security"] = []
                continue
            operation["security"] = _CREDENTIAL
            responses = operation["responses"]
            responses.setdefault("401", _UNAUTHORIZED)
            responses.setdefault("403", _FORBIDDEN)
    return paths


def add_routes(app: web.Application) -> None:
    """Register the document's route; call it after every other route (it describes them)."""
    access = {
        (route.method, resource.canonical): access_of(route.handler)
        for resource in app.router.resources()
        for route in resource
    }
    body = json.dumps(document(access)).encode()

    async def openapi(request: web.Request) -> web.Response:
        """The document."""
        return web.Response(body=body, content_type="application/json")

    app.router.add_get("/api/openapi.json", openapi)
