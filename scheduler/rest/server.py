"""The HTTP server of the REST API: bytes in, ``Api.handle``, bytes out.

A ``ThreadingHTTPServer`` (standard library: the API is small, clients are few and sequential,
and no new dependency is needed) speaking HTTP/1.1 with keep-alive. The body is read only up to
``max_body_bytes`` (``Content-Length`` or chunked); a larger one is answered with 413 and the
connection is closed without reading it. Requests are logged at DEBUG without headers, so the
bearer token never reaches the log.
"""

from __future__ import annotations

import http.server
import logging
import threading
import time
from typing import Any

from scheduler.rest import api as api_mod

log = logging.getLogger(__name__)


class _BodyTooLargeError(Exception):
    pass


class _BadBodyError(Exception):
    pass


def _handler_class(api: api_mod.Api) -> type[http.server.BaseHTTPRequestHandler]:
    limit = api.max_body_bytes

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "wfsched"

        def _serve(self) -> None:
            started = time.perf_counter()
            try:
                body = self._read_body()
            except _BodyTooLargeError:
                self.close_connection = True
                reply = api_mod.error(413, f"the body is larger than {limit} bytes")
            except _BadBodyError as exc:
                self.close_connection = True
                reply = api_mod.error(400, str(exc))
            else:
                headers = {k: v for k, v in self.headers.items()}
                reply = api.handle(self.command, self.path, headers, body)
            self._write(reply)
            log.debug(
                "rest request",
                extra={
                    "method": self.command,
                    "path": self.path.split("?", 1)[0][:200],
                    "status": reply.status,
                    "seconds": round(time.perf_counter() - started, 4),
                },
            )

        def _read_body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                return self._read_chunked()
            raw = self.headers.get("Content-Length")
            if raw is None:
                return b""
            try:
                length = int(raw)
            except ValueError:
                raise _BadBodyError("Content-Length is not an integer") from None
            if length < 0:
                raise _BadBodyError("Content-Length is negative")
            if length > limit:
                raise _BodyTooLargeError
            return self.rfile.read(length)

        def _read_chunked(self) -> bytes:
            chunks: list[bytes] = []
            total = 0
            while True:
                line = self.rfile.readline(100)
                try:
                    size = int(line.split(b";", 1)[0].strip() or b"x", 16)
                except ValueError:
                    raise _BadBodyError("malformed chunked body") from None
                if size == 0:
                    while self.rfile.readline(1000) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                total += size
                if size < 0 or total > limit:
                    raise _BodyTooLargeError
                chunks.append(self.rfile.read(size))
                self.rfile.readline(10)

        def _write(self, reply: api_mod.Reply) -> None:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers:
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def do_PUT(self) -> None:
            self._serve()

        def do_DELETE(self) -> None:
            self._serve()

        def do_PATCH(self) -> None:
            self._serve()

        def do_HEAD(self) -> None:
            self._serve()

        def do_OPTIONS(self) -> None:
            self._serve()

        def __getattr__(self, name: str) -> Any:
            # Any other method (TRACE, MKCOL, ...) gets a JSON 404/405 instead of http.server's
            # HTML 501.
            if name.startswith("do_"):
                return self._serve
            raise AttributeError(name)

        def log_message(self, format: str, *args: Any) -> None:
            del format, args  # logged in _serve, without headers

    return Handler


class RestServer:
    """The REST API on its own port, served by a thread per connection."""

    def __init__(self, api: api_mod.Api, *, address: str, port: int) -> None:
        self.api = api
        self._server = http.server.ThreadingHTTPServer((address, port), _handler_class(api))
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="wfsched-rest", daemon=True
        )

    def start(self) -> None:
        """Serve in a background thread (and start the CWS tick)."""
        self.api.bridge.start()
        self._thread.start()
        log.info(
            "REST API listening",
            extra={"port": self.port, "auth": self.api.auth_required},
        )

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
        self.api.bridge.stop()
