"""The REST API without sockets: route table, authentication, leadership, validation, replies.

``Api.handle(method, target, headers, body)`` turns one HTTP request into one :class:`Reply`;
``server.py`` only moves bytes. The route table :data:`ROUTES` is also the source of the OpenAPI
document (``openapi.py``), so every served route is documented and vice versa.

Order of checks for each request (each failure is a JSON ``{"error": ...}`` reply and changes
nothing): path normalisation (``//`` collapses: nf-cws builds ``http://host:port/v1/`` +
``/scheduler/...``) → ``/health`` (no auth) → bearer token (401) → route and method (404, 405)
→ path parameters (400) → leadership for writes (503 with the leader's identity) → body size
and item counts (413) → body schema (400) → the operation on the loop thread (4xx from
``CwsError``, 503 if the loop does not answer in time).

Bodies arrive as bytes or as a stream. A task registration (nf-cws lists every input file in
it) is read from the stream up to ``max_task_body_bytes`` (``schemas.read_task``); every
other body is read up to ``max_body_bytes`` and decoded whole. Each body is checked against
its route's schema in the published document (``schemas.body_schemas``) before the operation
sees it.

Compatibility with nf-cws: every success is exactly 200. Error statuses follow CWS where CWS
has one (400 unknown execution, 404 unknown strategy name), and fix CWS where it answers 500 or
misleads (cws-semantics.md section 7: D19-D21, D25).
"""

from __future__ import annotations

import hmac
import io
import json
import logging
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any

import scheduler
from scheduler import cws
from scheduler.rest import bridge as bridge_mod
from scheduler.rest import openapi, schemas

log = logging.getLogger(__name__)

JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Reply:
    """One HTTP response."""

    status: int
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()


def json_reply(status: int, value: Any, *headers: tuple[str, str]) -> Reply:
    """A JSON reply."""
    return Reply(status, json.dumps(value, separators=(",", ":")).encode(), JSON, headers)


def error(status: int, message: str, **extra: Any) -> Reply:
    """A JSON error reply ``{"error": message, ...}``."""
    return json_reply(status, {"error": message, **extra})


_STATUS = {
    cws.ErrorKind.INVALID: 400,
    cws.ErrorKind.UNKNOWN_EXECUTION: 400,
    cws.ErrorKind.UNKNOWN_NAME: 404,
    cws.ErrorKind.UNKNOWN_TASK: 404,
    cws.ErrorKind.DUPLICATE: 409,
    cws.ErrorKind.LIMIT: 429,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """One route: how it is served and how it is documented.

    Attributes:
        method: HTTP method.
        path: Template; ``{execution}`` and ``{id}`` are path parameters.
        operation: ``operationId`` and the name of the ``Api`` method serving it.
        summary: One line for the docs.
        description: More text for the docs (CWS route number, wfsched differences).
        write: Only the leader serves it.
        body: Request body kind: ``None``, a component name, ``"vertices"``, ``"edges"``,
            ``"uids"`` or ``"count"``.
        streamed: The body is read as a stream, up to ``max_task_body_bytes`` (the operation
            gets a ``schemas.TaskBody``, not the decoded JSON).
        response: Component name of the 200 body, or ``"text"``/``"html"``/``"openapi"``.
        errors: Documented error statuses.
    """

    method: str
    path: str
    operation: str
    summary: str
    description: str = ""
    write: bool = False
    body: str | None = None
    streamed: bool = False
    response: str = "Result"
    errors: tuple[int, ...] = (400,)

    @property
    def segments(self) -> tuple[str, ...]:
        """The template's path segments."""
        return tuple(self.path.strip("/").split("/"))


_E = "/v1/scheduler/{execution}"
_RW = (400, 401, 503)
ROUTES: tuple[Route, ...] = (
    Route(
        method="POST",
        path=_E,
        operation="register_execution",
        summary="Register an execution (CWS route 1)",
        description="409 if it exists (CWS: 400, D20); 404 for an unknown strategy name.",
        write=True,
        body="SchedulerConfig",
        errors=(*_RW, 404, 409, 429),
    ),
    Route(
        method="DELETE",
        path=_E,
        operation="delete_execution",
        summary="Delete an execution and all its state (CWS route 2)",
        write=True,
        errors=_RW,
    ),
    Route(
        method="GET",
        path=_E,
        operation="get_execution",
        summary="Describe an execution (wfsched only): strategy, ranks, tasks, batches",
        errors=(400, 401, 503),
    ),
    Route(
        method="POST",
        path=_E + "/DAG/vertices",
        operation="add_vertices",
        summary="Add DAG vertices (CWS route 3)",
        description="All or nothing; an identical vertex again is a no-op.",
        write=True,
        body="vertices",
        errors=(*_RW, 413),
    ),
    Route(
        method="DELETE",
        path=_E + "/DAG/vertices",
        operation="remove_vertices",
        summary="Remove DAG vertices by uid, with their edges (CWS route 4)",
        write=True,
        body="uids",
        errors=(*_RW, 413),
    ),
    Route(
        method="POST",
        path=_E + "/DAG/edges",
        operation="add_edges",
        summary="Add DAG edges (CWS route 5)",
        description=(
            "All or nothing: an unknown vertex (400 naming the uid; CWS: 500) or a cycle (400) "
            "adds nothing. Edges with a null endpoint are ignored."
        ),
        write=True,
        body="edges",
        errors=(*_RW, 413),
    ),
    Route(
        method="DELETE",
        path=_E + "/DAG/edges",
        operation="remove_edges",
        summary="Remove DAG edges by uid (CWS route 6)",
        write=True,
        body="uids",
        errors=(*_RW, 413),
    ),
    Route(
        method="PUT",
        path=_E + "/startBatch",
        operation="start_batch",
        summary="Open a batch unless one is open (CWS route 7)",
        write=True,
        errors=_RW,
    ),
    Route(
        method="PUT",
        path=_E + "/endBatch",
        operation="end_batch",
        summary="Close the open batch; the body is the task count (CWS route 8)",
        description="Without an open batch: a no-op (CWS: 500, D21). Released when every "
        "registered pod was seen, or after batch_timeout_s (D10).",
        write=True,
        body="count",
        errors=_RW,
    ),
    Route(
        method="POST",
        path=_E + "/task/{id}",
        operation="register_task",
        summary="Register a task before its pod exists (CWS route 9)",
        description="Replies with the planned memory and the process rank (CWS: {}, D19). An "
        "unknown process is registered implicitly (CWS: 500, D21).",
        write=True,
        body="TaskConfig",
        streamed=True,
        response="TaskRegistered",
        errors=(*_RW, 409),
    ),
    Route(
        method="GET",
        path=_E + "/task/{id}",
        operation="get_task",
        summary="The CWS state of a task (CWS route 10)",
        response="TaskState",
        errors=(400, 401, 404, 503),
    ),
    Route(
        method="DELETE",
        path=_E + "/task/{id}",
        operation="delete_task",
        summary="Withdraw a task: out of its batch and the queue (CWS route 11, D9)",
        write=True,
        errors=(*_RW, 404),
    ),
    Route(
        method="POST",
        path="/v1/scheduler/{execution}/metrics/task/{id}",
        operation="task_metrics",
        summary="Task metrics: feed the execution's predictor (CWS route 12)",
        description="Idempotent: a second post for a task is a no-op 200 (CWS: 500, D21).",
        write=True,
        body="TaskMetrics",
        errors=(*_RW, 404),
    ),
    Route(
        method="POST",
        path="/v1/file/{execution}/publish",
        operation="publish",
        summary="Publish outputs (nf-cws 2.0.1 shutdown; no-op without WOW, D25)",
        errors=(401,),
    ),
    Route(
        method="PUT",
        path="/v1/file/{execution}/publish",
        operation="publish",
        summary="Publish one file (WOW only; no-op)",
        errors=(401,),
    ),
    Route(
        method="GET",
        path="/v1/file/{execution}/publish",
        operation="publish_pending",
        summary="Files still to publish: always 0 (no WOW)",
        response="text",
        errors=(401,),
    ),
    Route(
        method="GET",
        path="/health",
        operation="health",
        summary="Liveness of the REST server; never needs a token",
        errors=(),
    ),
    Route(
        method="GET",
        path="/openapi.json",
        operation="openapi",
        summary="This OpenAPI 3.1 document",
        response="openapi",
        errors=(401,),
    ),
    Route(
        method="GET",
        path="/docs",
        operation="docs",
        summary="Browsable API documentation (HTML, rendered from /openapi.json)",
        response="html",
        errors=(401,),
    ),
)

_EXECUTION = re.compile(schemas.EXECUTION_PATTERN)
_SLASHES = re.compile(r"/{2,}")


class Api:
    """Serves one request at a time per caller thread; see the module docstring."""

    def __init__(
        self,
        *,
        bridge: bridge_mod.CwsBridge,
        max_body_bytes: int = 1 << 20,
        max_task_body_bytes: int = 32 << 20,
        max_items: int = 10_000,
        token: str | None = None,
        may_write: Callable[[], bool] = lambda: True,
        leader: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.bridge = bridge
        self.state = bridge.state
        self.max_body_bytes = max_body_bytes
        self.max_task_body_bytes = max_task_body_bytes
        self.max_items = max_items
        self._token = token.encode() if token else None
        self.may_write = may_write
        self.leader = leader
        self.document = openapi.build(
            ROUTES, max_items=max_items, version=scheduler.__version__, auth=bool(token)
        )
        self._body_schemas = schemas.body_schemas(self.document)
        self._openapi = json.dumps(self.document, indent=1).encode()
        self._docs = openapi.docs_html(self.document).encode()

    @property
    def auth_required(self) -> bool:
        """True when a bearer token is configured."""
        return self._token is not None

    # --- dispatch -------------------------------------------------------------------------

    def handle(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes | IO[bytes] = b"",
    ) -> Reply:
        """Serve one request; never raises. ``body`` is the bytes or a stream of the body."""
        stream = io.BytesIO(body) if isinstance(body, bytes) else body
        try:
            return self._handle(method.upper(), target, headers, stream)
        except Exception:  # a bug must cost one 500, never the server
            log.exception("REST handler failed", extra={"method": method})
            return error(500, "internal error")

    def body_limit(self, target: str) -> int:
        """The largest body a request to ``target`` may carry (servers refuse more early)."""
        try:
            _path, segments = _segments(target)
        except UnicodeDecodeError:
            return self.max_body_bytes
        for route in ROUTES:
            if route.streamed and _match(route.segments, segments) is not None:
                return self.max_task_body_bytes
        return self.max_body_bytes

    def _handle(
        self, method: str, target: str, headers: Mapping[str, str], body: IO[bytes]
    ) -> Reply:
        try:
            path, segments = _segments(target)
        except UnicodeDecodeError:
            return error(400, "the path is not valid UTF-8")
        if segments == ("health",) and method in ("GET", "HEAD"):
            return json_reply(200, {"status": "ok"})
        if self._token is not None and not self._authorized(headers):
            return json_reply(
                401, {"error": "missing or wrong bearer token"}, ("WWW-Authenticate", "Bearer")
            )
        matches = [(r, p) for r in ROUTES if (p := _match(r.segments, segments)) is not None]
        if not matches:
            return error(404, f"no route {path}")
        route, params = next(((r, p) for r, p in matches if r.method == method), (None, {}))
        if route is None:
            allowed = ", ".join(sorted({r.method for r, _ in matches}))
            return json_reply(
                405, {"error": f"{method} is not allowed on {path}"}, ("Allow", allowed)
            )
        problem = _check_params(params)
        if problem is not None:
            return error(400, problem)
        if route.write and not self.may_write():
            return error(503, "not the leader", leader=self.leader())
        limit = self.max_task_body_bytes if route.streamed else self.max_body_bytes
        too_large = error(413, f"the body is larger than {limit} bytes")
        if _content_length(headers) > limit:
            return too_large
        handler: Callable[[dict[str, str], Any], Reply] = getattr(self, route.operation)
        try:
            return handler(params, self._read_body(route, body, limit))
        except _BodyTooLargeError:
            return too_large
        except _TooManyItemsError as exc:
            return error(413, str(exc))
        except schemas.ValidationError as exc:
            return error(400, str(exc))
        except cws.CwsError as exc:
            return error(_STATUS[exc.kind], exc.message)
        except bridge_mod.LoopTimeoutError as exc:
            return error(503, str(exc))

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        assert self._token is not None
        value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        scheme, _, credentials = value.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(credentials.strip().encode(), self._token)

    def _read_body(self, route: Route, body: IO[bytes], limit: int) -> Any:
        """The body of ``route`` decoded and checked against its schema in the document.

        ``None`` for a route without a body (what was sent is read up to ``limit`` and
        dropped); a :class:`schemas.TaskBody` for a streamed route; the JSON value otherwise.

        Raises:
            _BodyTooLargeError: More than ``limit`` bytes.
            _TooManyItemsError: A list of more than ``max_items`` items.
            schemas.ValidationError: Not JSON, or not what the route's schema allows.
        """
        if route.streamed:
            task = schemas.read_task(_LimitedReader(body, limit))
            self._body_schemas[(route.method, route.path)].check(task.fields)
            return task
        data = body.read(limit + 1)
        if len(data) > limit:
            raise _BodyTooLargeError
        if route.body is None:
            return None
        value = schemas.load_json(data)
        if isinstance(value, list) and len(value) > self.max_items:
            raise _TooManyItemsError(f"body: more than {self.max_items} items in one request")
        self._body_schemas[(route.method, route.path)].check(value)
        return value

    # --- executions ----------------------------------------------------------------------
    # Each operation gets the path parameters and the body as ``_read_body`` returns it.

    def register_execution(self, params: dict[str, str], body: Any) -> Reply:
        """Route 1."""
        reg = schemas.parse_registration(params["execution"], body)
        return self._run_stored(lambda loop: self.state.register(reg, now=loop.clock()))

    def delete_execution(self, params: dict[str, str], body: None) -> Reply:
        """Route 2."""
        name = params["execution"]
        return self._run_stored(lambda loop: self.state.delete(name))

    def get_execution(self, params: dict[str, str], body: None) -> Reply:
        """A summary of the execution (not in CWS)."""
        name = params["execution"]
        return self._run(lambda loop: self.state.info(name))

    # --- DAG ------------------------------------------------------------------------------

    def add_vertices(self, params: dict[str, str], body: Any) -> Reply:
        """Route 3."""
        name, vertices = params["execution"], schemas.parse_vertices(body)
        return self._run(lambda loop: self.state.add_vertices(name, vertices))

    def remove_vertices(self, params: dict[str, str], body: Any) -> Reply:
        """Route 4."""
        name, uids = params["execution"], schemas.parse_uids(body)
        return self._run(lambda loop: self.state.remove_vertices(name, uids))

    def add_edges(self, params: dict[str, str], body: Any) -> Reply:
        """Route 5."""
        name, edges = params["execution"], schemas.parse_edges(body)
        return self._run(lambda loop: self.state.add_edges(name, edges))

    def remove_edges(self, params: dict[str, str], body: Any) -> Reply:
        """Route 6."""
        name, uids = params["execution"], schemas.parse_uids(body)
        return self._run(lambda loop: self.state.remove_edges(name, uids))

    # --- batches and tasks ----------------------------------------------------------------

    def start_batch(self, params: dict[str, str], body: None) -> Reply:
        """Route 7 (a body, if any, is ignored as in CWS)."""
        name = params["execution"]
        return self._run(lambda loop: self.state.start_batch(name, now=loop.clock()))

    def end_batch(self, params: dict[str, str], body: Any) -> Reply:
        """Route 8."""
        name, count = params["execution"], schemas.parse_batch_count(body)
        return self._run(lambda loop: self.state.end_batch(name, count, now=loop.clock()))

    def register_task(self, params: dict[str, str], body: schemas.TaskBody) -> Reply:
        """Route 9 (the body was read as a stream: see ``schemas.read_task``)."""
        spec = schemas.parse_task(body)
        name, task_id = params["execution"], int(params["id"])
        return self._run(
            lambda loop: self.state.register_task(name, task_id, spec, now=loop.clock())
        )

    def get_task(self, params: dict[str, str], body: None) -> Reply:
        """Route 10."""
        name, task_id = params["execution"], int(params["id"])
        return self._run(
            lambda loop: self.state.task_state(name, task_id, pod_state=loop.cache.pod_state)
        )

    def delete_task(self, params: dict[str, str], body: None) -> Reply:
        """Route 11."""
        name, task_id = params["execution"], int(params["id"])
        return self._run(lambda loop: self.state.delete_task(name, task_id))

    def task_metrics(self, params: dict[str, str], body: Any) -> Reply:
        """Route 12."""
        metrics = schemas.parse_metrics(body)
        name, task_id = params["execution"], int(params["id"])
        return self._run(lambda loop: self.state.task_metrics(name, task_id, metrics))

    # --- publish, health, docs ------------------------------------------------------------

    def publish(self, params: dict[str, str], body: None) -> Reply:
        """POST and PUT ``/v1/file/{e}/publish``: nothing to publish without WOW (D25)."""
        return json_reply(200, {})

    def publish_pending(self, params: dict[str, str], body: None) -> Reply:
        """GET ``/v1/file/{e}/publish``: no files wait to be published."""
        return Reply(200, b"0", "text/plain")

    def health(self, params: dict[str, str], body: None) -> Reply:
        """``/health`` (served before authentication; listed for the docs)."""
        return json_reply(200, {"status": "ok"})

    def openapi(self, params: dict[str, str], body: None) -> Reply:
        """The OpenAPI document."""
        return Reply(200, self._openapi, JSON)

    def docs(self, params: dict[str, str], body: None) -> Reply:
        """The HTML docs page."""
        return Reply(200, self._docs, "text/html; charset=utf-8")

    # --- helpers --------------------------------------------------------------------------

    def _run(self, op: Callable[[bridge_mod.LoopLike], dict[str, Any]]) -> Reply:
        return json_reply(200, self.bridge.call(op))

    def _run_stored(self, op: Callable[[bridge_mod.LoopLike], dict[str, Any]]) -> Reply:
        """Like ``_run``, and the change is stored before the reply (a failover keeps it)."""
        result = self.bridge.call(op)
        if not self.bridge.persist_now():
            log.warning("execution change not stored yet; retrying in the background")
        return json_reply(200, result)


class _TooManyItemsError(ValueError):
    """A list body with more items than ``max_items``."""


class _BodyTooLargeError(Exception):
    """A streamed body went past its limit."""


class _LimitedReader:
    """Reads a stream, raising ``_BodyTooLargeError`` once more than ``limit`` bytes came."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self._stream = stream
        self._left = limit

    def read(self, size: int = -1) -> bytes:
        want = self._left + 1 if size is None or size < 0 else min(size, self._left + 1)
        data = self._stream.read(want)
        self._left -= len(data)
        if self._left < 0:
            raise _BodyTooLargeError
        return data


def _content_length(headers: Mapping[str, str]) -> int:
    """The declared body length (0 when absent or unreadable: the read limit still applies)."""
    value = next((v for k, v in headers.items() if k.lower() == "content-length"), "")
    try:
        return int(value)
    except ValueError:
        return 0


def _segments(target: str) -> tuple[str, tuple[str, ...]]:
    """The normalised path of a request target and its decoded segments.

    Raises:
        UnicodeDecodeError: A segment is not UTF-8 once decoded.
    """
    # Not urlsplit: a target starting with "//" would lose its first segment as a netloc.
    raw_path = target.split("?", 1)[0].split("#", 1)[0]
    path = _SLASHES.sub("/", raw_path if raw_path.startswith("/") else "/" + raw_path)
    if len(path) > 1:
        path = path.rstrip("/")
    segments = tuple(urllib.parse.unquote(s, errors="strict") for s in path[1:].split("/"))
    return path, segments


def _match(template: tuple[str, ...], segments: tuple[str, ...]) -> dict[str, str] | None:
    if len(template) != len(segments):
        return None
    params: dict[str, str] = {}
    for want, got in zip(template, segments, strict=True):
        if want.startswith("{"):
            params[want[1:-1]] = got
        elif want != got:
            return None
    return params


def _check_params(params: Mapping[str, str]) -> str | None:
    execution = params.get("execution")
    if execution is not None and not _EXECUTION.fullmatch(execution):
        return f"execution name {execution[:80]!r} does not match {schemas.EXECUTION_PATTERN}"
    task_id = params.get("id")
    if task_id is None:
        return None
    if re.fullmatch(r"-?\d{1,10}", task_id) and -(1 << 31) <= int(task_id) <= schemas.INT32_MAX:
        return None
    return f"task id {task_id[:20]!r} is not a 32-bit integer"
