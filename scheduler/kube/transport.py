"""Sending requests: configuration, rate limiting, error classification, read retries.

The official ``kubernetes`` package is used for what it does well — loading a kubeconfig or
the in-cluster service account, TLS, token refresh, and urllib3's connection pool — and for
nothing else: requests are built from a path, a query and a dict body and sent with
``ApiClient.param_serialize`` + ``ApiClient.call_api``, which return the raw urllib3 response
with no model (pydantic) validation and no deserialisation. Bodies are decoded once with
``json.loads``.

Rules:

- Every request first takes a token from a ``TokenBucket`` (the shared one unless the caller
  passes its own).
- A non-2xx response or a transport failure raises an ``errors.ApiError`` subclass,
  classified by HTTP status and Status ``reason``.
- ``get_json`` (idempotent reads only) retries a bounded number of times on 429, and on 5xx
  responses that carry ``Retry-After``, sleeping what the server asked for (capped).
  ``send``/``request_json`` never retry: writes are the caller's decision.
- urllib3 itself retries only connection failures (the request never left) and read
  failures of idempotent methods, never on status codes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, Final

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from scheduler.kube import errors
from scheduler.kube.ratelimit import TokenBucket
from scheduler.kube.resources import JsonDict

log = logging.getLogger(__name__)

Timeout = tuple[float, float]
"""(connect, read) timeouts in seconds."""

Query = Mapping[str, str | int | bool | None]
"""Query parameters; ``None`` values are left out."""

USER_AGENT: Final = "wfsched/0.1 (kubernetes-python raw-json)"
JSON: Final = "application/json"
STRATEGIC_MERGE: Final = "application/strategic-merge-patch+json"
MERGE_PATCH: Final = "application/merge-patch+json"


def api_client_from_config(
    kubeconfig: str | None,
    *,
    pool_size: int,
    context: str | None = None,
    stream_slots: int = 4,
) -> k8s_client.ApiClient:
    """Build the official ``ApiClient`` (auth, TLS, pool) from a kubeconfig or in-cluster.

    Args:
        kubeconfig: Path of a kubeconfig; ``None`` uses the in-cluster service account
            (token refreshed as it rotates), falling back to the default kubeconfig
            (``$KUBECONFIG`` or ``~/.kube/config``) outside a cluster.
        pool_size: Concurrent short requests to keep connections for (bind workers plus a
            few for events and status writes).
        context: kubeconfig context (default: the current one).
        stream_slots: Extra pooled connections for long-running watch streams, so watches
            never take a binder's connection.

    Returns:
        A configured client; no request has been sent.
    """
    configuration = k8s_client.Configuration()
    if kubeconfig is not None:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context, client_configuration=configuration
        )
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
    else:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            context=context, client_configuration=configuration
        )
    configuration.connection_pool_maxsize = max(1, pool_size) + max(0, stream_slots)
    configuration.retries = urllib3.Retry(
        total=3, connect=3, read=1, status=0, redirect=0, backoff_factor=0.1
    )
    configuration.keep_alive = True  # TCP keepalive: notice dead watch connections
    api_client = k8s_client.ApiClient(configuration)
    api_client.user_agent = USER_AGENT
    return api_client


class Transport:
    """Send requests through one ``ApiClient`` (see the module docstring). Thread-safe."""

    def __init__(
        self,
        api_client: k8s_client.ApiClient,
        *,
        limiter: TokenBucket,
        request_timeout: Timeout = (5.0, 30.0),
        max_read_retries: int = 3,
        max_retry_after_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Wrap a configured ``ApiClient``.

        Args:
            api_client: The official client (configuration, auth and pool only).
            limiter: The shared token bucket.
            request_timeout: Default (connect, read) timeout.
            max_read_retries: Retries of an idempotent read on 429 (and 5xx + Retry-After).
            max_retry_after_s: Cap on one retry sleep.
            sleep: Sleep function for read retries (tests inject a fake).
        """
        self.api_client = api_client
        self.limiter = limiter
        self.request_timeout = request_timeout
        self._max_read_retries = max_read_retries
        self._max_retry_after_s = max_retry_after_s
        self._sleep = sleep
        self._lock = threading.Lock()
        self.requests_total = 0
        """Requests sent (each LIST page and each retry counts)."""
        self.read_retries = 0
        """Reads retried after 429 / 5xx + Retry-After."""

    def close(self) -> None:
        """Close pooled connections."""
        with contextlib.suppress(Exception):
            self.api_client.close()  # type: ignore[no-untyped-call]

    def send(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: Timeout | None = None,
        limiter: TokenBucket | None = None,
        guard: Callable[[], bool] | None = None,
    ) -> urllib3.BaseHTTPResponse:
        """Send one request; return the 2xx response with its body not yet read.

        The caller reads it (``.data`` or ``.stream()``) and releases the connection.
        ``guard`` is called after the rate limiter granted the request, right before it is
        sent; when it returns False nothing is sent.

        Raises:
            errors.NotSentError: ``guard`` refused the request.
            errors.ApiError: non-2xx status or transport failure, classified.
        """
        (limiter or self.limiter).acquire()
        if guard is not None and not guard():
            raise errors.NotSentError(f"{method} {path}: refused by its guard, not sent")
        url_path = path
        if query:
            pairs = [(k, _query_value(v)) for k, v in query.items() if v is not None]
            if pairs:
                url_path += "?" + urllib.parse.urlencode(pairs)
        headers: dict[str, str] = {"Accept": JSON}
        if content_type is not None:
            headers["Content-Type"] = content_type
        elif body is not None:
            headers["Content-Type"] = JSON
        with self._lock:
            self.requests_total += 1
        try:
            serialized = self.api_client.param_serialize(
                method=method,
                resource_path=url_path,
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            rest_response = self.api_client.call_api(
                *serialized, _request_timeout=timeout or self.request_timeout
            )
        except errors.ApiError:
            raise
        except Exception as exc:
            raise errors.from_exception(exc) from exc
        response: urllib3.BaseHTTPResponse = rest_response.response
        status = int(response.status)
        if 200 <= status <= 299:
            return response
        try:
            data = response.data
        except Exception:
            data = b""
        finally:
            with contextlib.suppress(Exception):
                response.release_conn()
        raise errors.from_response(status, data, dict(response.headers))

    def send_prepared(
        self,
        method: str,
        path: str,
        body: bytes,
        *,
        timeout: Timeout | None = None,
        guard: Callable[[], bool] | None = None,
    ) -> None:
        """Send a pre-serialised JSON ``body`` and discard the 2xx response (never retried).

        The hot write path (one Binding per pod): the request goes straight to urllib3's pool
        with the client's auth headers, skipping ``param_serialize``'s sanitising and
        ``call_api``'s re-serialising of the body. Same rate limiting, ``guard`` and errors as
        :meth:`send`.

        Raises:
            errors.NotSentError: ``guard`` refused the request.
            errors.ApiError: non-2xx status or transport failure, classified.
        """
        self.limiter.acquire()
        if guard is not None and not guard():
            raise errors.NotSentError(f"{method} {path}: refused by its guard, not sent")
        headers: dict[str, str] = {**self.api_client.default_headers}
        headers["Accept"] = JSON
        headers["Content-Type"] = JSON
        with self._lock:
            self.requests_total += 1
        connect, read = timeout or self.request_timeout
        try:
            self.api_client.update_params_for_auth(
                headers, None, ["BearerToken"], path, method, None
            )
            response: urllib3.BaseHTTPResponse = self.api_client.rest_client.pool_manager.request(
                method,
                self.api_client.configuration.host + path,
                body=body,
                headers=headers,
                timeout=urllib3.Timeout(connect=connect, read=read),
                preload_content=False,
            )
        except Exception as exc:
            raise errors.from_exception(exc) from exc
        status = int(response.status)
        try:
            data = response.data if not 200 <= status <= 299 else b""
            if not data:
                response.drain_conn()
        except Exception:
            data = b""
        finally:
            with contextlib.suppress(Exception):
                response.release_conn()
        if not 200 <= status <= 299:
            raise errors.from_response(status, data, dict(response.headers))

    def request_json(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: Timeout | None = None,
        limiter: TokenBucket | None = None,
        guard: Callable[[], bool] | None = None,
    ) -> JsonDict:
        """Send one request and decode the JSON object it returns (never retried).

        Raises:
            errors.NotSentError: ``guard`` refused the request (see :meth:`send`).
            errors.ApiError: the request failed, or the body is not a JSON object.
        """
        response = self.send(
            method,
            path,
            query=query,
            body=body,
            content_type=content_type,
            timeout=timeout,
            limiter=limiter,
            guard=guard,
        )
        try:
            data = response.data
        except Exception as exc:
            raise errors.from_exception(exc) from exc
        finally:
            with contextlib.suppress(Exception):
                response.release_conn()
        return _decode(data, path)

    def get_json(
        self,
        path: str,
        *,
        query: Query | None = None,
        timeout: Timeout | None = None,
        limiter: TokenBucket | None = None,
        max_retries: int | None = None,
    ) -> JsonDict:
        """GET and decode, retrying on 429 (and 5xx with Retry-After) a bounded number of times.

        Raises:
            errors.ApiError: the last attempt failed, or the failure was not retryable.
        """
        budget = self._max_read_retries if max_retries is None else max_retries
        attempt = 0
        while True:
            try:
                return self.request_json("GET", path, query=query, timeout=timeout, limiter=limiter)
            except errors.ApiError as exc:
                if attempt >= budget or not _read_retryable(exc):
                    raise
                delay = exc.retry_after if exc.retry_after is not None else 2.0**attempt
                delay = min(max(delay, 0.05), self._max_retry_after_s)
                attempt += 1
                with self._lock:
                    self.read_retries += 1
                log.info(
                    "read throttled; retrying",
                    extra={"path": path, "status": exc.http_status, "delay_s": delay},
                )
                self._sleep(delay)


def _query_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _read_retryable(exc: errors.ApiError) -> bool:
    if exc.kind is errors.ApiErrorKind.TOO_MANY_REQUESTS:
        return True
    return exc.kind is errors.ApiErrorKind.SERVER_ERROR and exc.retry_after is not None


def _decode(data: bytes, path: str) -> JsonDict:
    try:
        value = json.loads(data) if data else {}
    except ValueError as exc:
        raise errors.ServerError(f"invalid JSON from {path}: {exc}", http_status=200) from exc
    if not isinstance(value, dict):
        raise errors.ServerError(f"expected a JSON object from {path}", http_status=200)
    return value
