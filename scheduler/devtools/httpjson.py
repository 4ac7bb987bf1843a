"""The one JSON-over-HTTP(S) client of the developer tooling and the tests.

:class:`JsonHttp` talks to one local server: the dev cluster's kube-apiserver (admin client
certificate or a bearer token), etcd's JSON gateway, a daemon's REST API. One connection per
request; JSON in, JSON out. The daemon itself never uses it: it reaches the API server through
``scheduler.kube``.
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

JSON = "application/json"


class JsonHttp:
    """Requests to ``host:port``, over TLS when ``context`` is given.

    Args:
        port: The server's port.
        context: TLS context (CA, client certificate); ``None`` for plain HTTP.
        host: The server's address.
        headers: Sent with every request (e.g. ``Authorization``).
        timeout: Default seconds per request.
    """

    def __init__(
        self,
        port: int,
        *,
        context: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
        headers: Sequence[tuple[str, str]] = (),
        timeout: float = 30,
    ) -> None:
        self.port = port
        self.host = host
        self._context = context
        self._headers = tuple(headers)
        self._timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = JSON,
        query: Mapping[str, str] | None = None,
        headers: Sequence[tuple[str, str]] = (),
        timeout: float | None = None,
    ) -> tuple[int, Any]:
        """Send one request; return the status and the reply.

        ``body`` is sent as it is when it is ``bytes``, UTF-8 encoded when it is a ``str``,
        as JSON otherwise (``None``: no body). ``headers`` may repeat a name. The reply is the
        decoded JSON when the server says it is JSON, else the text (``None`` when empty).

        Raises:
            OSError: The connection failed (refused, reset, timed out).
            http.client.HTTPException: The server broke the protocol.
        """
        if query:
            path = f"{path}?{urllib.parse.urlencode(query)}"
        payload = _encode(body)
        sent = [("Accept", JSON), *self._headers, *headers]
        if payload is not None:
            sent.append(("Content-Type", content_type))
        conn = self._connect(self._timeout if timeout is None else timeout)
        try:
            conn.putrequest(method, path)
            for name, value in sent:
                conn.putheader(name, value)
            conn.putheader("Content-Length", str(len(payload or b"")))
            conn.endheaders(payload)
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        return response.status, _decode(raw, response.getheader("Content-Type") or "")

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        if self._context is None:
            return http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        return http.client.HTTPSConnection(
            self.host, self.port, context=self._context, timeout=timeout
        )


def _encode(body: Any) -> bytes | None:
    if body is None or isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


def _decode(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    text = raw.decode(errors="replace")
    if "json" not in content_type:
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text
