"""The daemon's HTTP servers: a WSGI application served by waitress, with limits and timeouts.

Why waitress: one asynchronous I/O thread reads every connection and hands a request to a
worker thread only once it arrived in full, so a slow or silent client never holds a worker;
connections are capped (more wait in the listen backlog), idle keep-alive connections are
closed, and request bodies beyond 512 KiB are buffered in a temporary file, not in memory.

What wfsched adds (:class:`HttpServer`):

* a **request deadline**: a request whose headers and body have not all arrived
  ``request_timeout_s`` after its first byte is cut off, however steadily it trickles in
  (waitress's own ``channel_timeout`` only sees silence, so a byte per second would hold a
  connection for ever);
* a **body limit per path** (``body_limit``), checked as soon as the headers (or, chunked,
  the bytes so far) exceed it, so an oversized body is refused before it is buffered;
* JSON error replies (``{"error": ...}``) for what waitress refuses itself (a body over the
  limit: 413; a malformed request: 400);
* a clean start and stop from another thread.

Limits (:class:`HttpLimits`): worker threads, open connections, the request deadline, the idle
timeout (whole seconds, waitress's granularity) and the largest body waitress accepts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from waitress import adjustments, channel, parser, server, task, utilities

log = logging.getLogger(__name__)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_CHECK_INTERVAL_S = 1
"""How often connections are checked against the deadlines (waitress's cleanup interval)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpLimits:
    """Resource bounds of one server."""

    threads: int = 4
    """Worker threads running the application."""
    connection_limit: int = 100
    """Open connections; while at the limit, new ones wait in the listen backlog."""
    request_timeout_s: float = 30.0
    """A request must arrive in full within this (from its first byte)."""
    idle_timeout_s: float = 60.0
    """An idle keep-alive connection is closed after this (rounded up to whole seconds)."""
    max_body_bytes: int = 1 << 20
    """Largest body accepted; a larger one is answered 413 without being read."""


class _TimedParser(parser.HTTPRequestParser):  # type: ignore[misc]
    """waitress's request parser: remembers when the first byte came, applies the path's limit."""

    def __init__(self, adj: adjustments.Adjustments) -> None:
        super().__init__(adj)
        self.started = time.monotonic()

    def received(self, data: bytes) -> int:
        consumed: int = super().received(data)
        limit_for: Callable[[str], int] | None = getattr(self.adj, "wfsched_body_limit", None)
        refused = getattr(self, "error", None)
        if limit_for is None or refused is not None or not self.headers_finished:
            return consumed
        limit = limit_for(str(getattr(self, "request_uri", "") or "/"))
        if max(self.content_length, self.body_bytes_received) > limit:
            self.error = utilities.RequestEntityTooLarge(f"exceeds the limit of {limit} bytes")
            self.completed = True
        return consumed


class _JsonErrorTask(task.ErrorTask):  # type: ignore[misc]
    """waitress's own error replies (400, 413, 431, ...) as JSON ``{"error": ...}``."""

    def execute(self) -> None:
        error = self.request.error
        body = json.dumps({"error": f"{error.reason}: {error.body}"}).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _Channel(channel.HTTPChannel):  # type: ignore[misc]
    parser_class = _TimedParser
    error_task_class = _JsonErrorTask


class _Server(server.TcpWSGIServer):  # type: ignore[misc]
    """waitress's TCP server, also closing connections whose request is overdue."""

    channel_class = _Channel
    request_timeout_s = 30.0
    name = "http"

    def maintenance(self, now: float) -> None:
        super().maintenance(now)
        overdue = time.monotonic() - self.request_timeout_s
        for conn in list(self.active_channels.values()):
            request = conn.request
            if conn.will_close or request is None or request.completed:
                continue
            if request.started < overdue:
                conn.will_close = True  # closed by the I/O thread at its next turn
                log.info(
                    "HTTP request not received in time; connection closed",
                    extra={"server": self.name, "timeout_s": self.request_timeout_s},
                )


class HttpServer:
    """Serves a WSGI application on ``address:port`` (0: a free port) until :meth:`stop`."""

    def __init__(
        self,
        app: WsgiApp,
        *,
        address: str,
        port: int,
        limits: HttpLimits,
        name: str,
        body_limit: Callable[[str], int] | None = None,
    ) -> None:
        """Bind the socket (not serving yet).

        ``body_limit(path)`` is the largest body a request to ``path`` may carry (at most
        ``limits.max_body_bytes``, which applies when it is not given).
        """
        adj = adjustments.Adjustments(
            host=address,
            port=port,
            threads=limits.threads,
            connection_limit=limits.connection_limit,
            channel_timeout=max(1, math.ceil(limits.idle_timeout_s)),
            cleanup_interval=_CHECK_INTERVAL_S,
            # waitress refuses a body of exactly max_request_body_size bytes.
            max_request_body_size=limits.max_body_bytes + 1,
            ident="wfsched",
            expose_tracebacks=False,
            clear_untrusted_proxy_headers=False,
            asyncore_loop_timeout=_CHECK_INTERVAL_S,
        )
        adj.wfsched_body_limit = body_limit
        self._server = _Server(app, map={}, adj=adj)
        self._server.request_timeout_s = limits.request_timeout_s
        self._server.name = name
        self.name = name
        self.limits = limits
        self.port: int = int(self._server.effective_port)
        self._thread = threading.Thread(target=self._run, name=f"wfsched-{name}", daemon=True)

    def _run(self) -> None:
        try:
            self._server.run()
        except Exception:  # the I/O loop must not take the process down; logged, then stopped
            log.exception("HTTP server failed", extra={"server": self.name})

    def start(self) -> None:
        """Serve on a background thread."""
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Close the listening socket and every connection, then stop the worker threads."""
        if self._thread.is_alive():
            with contextlib.suppress(OSError):  # the I/O loop is already closing its trigger
                self._server.trigger.pull_trigger(self._close_all)
            self._thread.join(timeout=timeout_s)
        if self._thread.is_alive() or not self._thread.ident:
            self._close_all()  # never started, or the I/O thread is stuck: close from here
        self._server.task_dispatcher.shutdown(cancel_pending=True, timeout=timeout_s)

    def _close_all(self) -> None:
        """Remove every socket from the I/O loop's map, which ends the loop."""
        for dispatcher in list(self._server._map.values()):
            if dispatcher is self._server or dispatcher is self._server.trigger:
                continue
            with contextlib.suppress(Exception):
                dispatcher.handle_close()
        with contextlib.suppress(Exception):
            self._server.close()
