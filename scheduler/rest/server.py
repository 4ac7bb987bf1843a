"""The HTTP server of the REST API: a WSGI adapter from a request to ``Api.handle`` and back.

Served by :class:`scheduler.runtime.httpserver.HttpServer` (waitress): a request reaches a worker
thread only once it arrived in full, within ``http_request_timeout_s``; connections are capped;
bodies are buffered by the server (on disk beyond 512 KiB) up to the largest route limit and
handed to ``Api.handle`` as a stream, which reads or parses only what the route allows. Requests
are logged at DEBUG without headers, so the bearer token never reaches the log.
"""

from __future__ import annotations

import dataclasses
import http
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from scheduler.rest import api as api_mod
from scheduler.runtime import httpserver

log = logging.getLogger(__name__)


def wsgi_app(api: api_mod.Api) -> httpserver.WsgiApp:
    """Return the WSGI application serving ``api``."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        method = str(environ.get("REQUEST_METHOD", "GET"))
        target = str(environ.get("REQUEST_URI") or environ.get("PATH_INFO") or "/")
        headers = {
            key[5:].replace("_", "-").title(): str(value)
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(key):
                headers[key.replace("_", "-").title()] = str(environ[key])
        reply = api.handle(method, target, headers, environ["wsgi.input"])
        reason = http.HTTPStatus(reply.status).phrase if reply.status in _KNOWN else "Unknown"
        start_response(
            f"{reply.status} {reason}",
            [
                ("Content-Type", reply.content_type),
                ("Content-Length", str(len(reply.body))),
                *reply.headers,
            ],
        )
        log.debug(
            "rest request",
            extra={
                "method": method[:20],
                "path": target.split("?", 1)[0][:200],
                "status": reply.status,
                "seconds": round(time.perf_counter() - started, 4),
            },
        )
        return [] if method == "HEAD" else [reply.body]

    return app


_KNOWN = frozenset(status.value for status in http.HTTPStatus)


class RestServer:
    """The REST API on its own port (see the module docstring)."""

    def __init__(
        self,
        api: api_mod.Api,
        *,
        address: str,
        port: int,
        limits: httpserver.HttpLimits | None = None,
    ) -> None:
        self.api = api
        body_limit = max(api.max_body_bytes, api.max_task_body_bytes)
        limits = dataclasses.replace(
            limits or httpserver.HttpLimits(threads=8), max_body_bytes=body_limit
        )
        self._server = httpserver.HttpServer(
            wsgi_app(api),
            address=address,
            port=port,
            limits=limits,
            name="rest",
            body_limit=api.body_limit,
        )
        self.port = self._server.port

    def start(self) -> None:
        """Serve in a background thread (and start the CWS tick)."""
        self.api.bridge.start()
        self._server.start()
        log.info(
            "REST API listening",
            extra={"port": self.port, "auth": self.api.auth_required},
        )

    def stop(self) -> None:
        """Stop serving."""
        self._server.stop()
        self.api.bridge.stop()
