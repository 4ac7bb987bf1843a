"""API failures, classified by HTTP status and Status ``reason`` (never by message text).

Every call in ``scheduler.kube`` that fails raises an ``ApiError`` subclass; callers branch on
``kind`` (or the subclass) and never parse ``message``, which is for logs only. The
classification is a pure function of ``(http status, Status reason)`` so it is unit-tested
on captured ``Status`` bodies:

================  ========  =====================================================  ==========
kind              status    reasons                                                retryable
================  ========  =====================================================  ==========
CONFLICT          409       ``Conflict`` (bind of a bound/gated pod, stale RV)     no
ALREADY_EXISTS    409       ``AlreadyExists`` (create of an existing name)         no
NOT_FOUND         404       ``NotFound``                                           no
GONE              410       ``Expired``, ``Gone`` (watch/continue too old)         relist
INVALID           422       ``Invalid``                                            no
BAD_REQUEST       400       ``BadRequest`` (and other 4xx without a better match)  no
UNAUTHORIZED      401       ``Unauthorized``                                       no
FORBIDDEN         403       ``Forbidden``                                          no
TOO_MANY          429       ``TooManyRequests`` (API Priority and Fairness)        after
                                                                                   Retry-After
SERVER_ERROR      5xx       ``InternalError``, ``ServiceUnavailable``, ...         yes
TIMEOUT           0/504     client read/connect timeout, ``Timeout``,              yes
                            ``ServerTimeout``
CONNECTION        0         refused, reset, TLS failure, protocol error            yes
================  ========  =====================================================  ==========

A known ``reason`` wins over the status code (a 500 with reason ``ServerTimeout`` is a
TIMEOUT; a 409 with reason ``AlreadyExists`` is ALREADY_EXISTS); otherwise the status code
decides. Watch ``ERROR`` events carry the same ``Status`` object and go through
``from_status``.
"""

from __future__ import annotations

import enum
import json
import ssl
from collections.abc import Mapping
from typing import Any

import urllib3.exceptions
from kubernetes.client import exceptions as k8s_exceptions


class ApiErrorKind(enum.StrEnum):
    """What went wrong, as far as a caller needs to know to react."""

    CONFLICT = "conflict"
    ALREADY_EXISTS = "already_exists"
    NOT_FOUND = "not_found"
    GONE = "gone"
    INVALID = "invalid"
    BAD_REQUEST = "bad_request"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    TOO_MANY_REQUESTS = "too_many_requests"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    OTHER = "other"


RETRYABLE_KINDS = frozenset(
    {
        ApiErrorKind.TOO_MANY_REQUESTS,
        ApiErrorKind.SERVER_ERROR,
        ApiErrorKind.TIMEOUT,
        ApiErrorKind.CONNECTION,
    }
)
"""Kinds for which the same request may succeed later (with backoff)."""

_BY_REASON: Mapping[str, ApiErrorKind] = {
    "Conflict": ApiErrorKind.CONFLICT,
    "AlreadyExists": ApiErrorKind.ALREADY_EXISTS,
    "NotFound": ApiErrorKind.NOT_FOUND,
    "Gone": ApiErrorKind.GONE,
    "Expired": ApiErrorKind.GONE,
    "Invalid": ApiErrorKind.INVALID,
    "BadRequest": ApiErrorKind.BAD_REQUEST,
    "MethodNotAllowed": ApiErrorKind.BAD_REQUEST,
    "NotAcceptable": ApiErrorKind.BAD_REQUEST,
    "UnsupportedMediaType": ApiErrorKind.BAD_REQUEST,
    "RequestEntityTooLarge": ApiErrorKind.BAD_REQUEST,
    "Unauthorized": ApiErrorKind.UNAUTHORIZED,
    "Forbidden": ApiErrorKind.FORBIDDEN,
    "TooManyRequests": ApiErrorKind.TOO_MANY_REQUESTS,
    "InternalError": ApiErrorKind.SERVER_ERROR,
    "ServiceUnavailable": ApiErrorKind.SERVER_ERROR,
    "StoreReadError": ApiErrorKind.SERVER_ERROR,
    "Timeout": ApiErrorKind.TIMEOUT,
    "ServerTimeout": ApiErrorKind.TIMEOUT,
}

_BY_STATUS: Mapping[int, ApiErrorKind] = {
    400: ApiErrorKind.BAD_REQUEST,
    401: ApiErrorKind.UNAUTHORIZED,
    403: ApiErrorKind.FORBIDDEN,
    404: ApiErrorKind.NOT_FOUND,
    409: ApiErrorKind.CONFLICT,
    410: ApiErrorKind.GONE,
    422: ApiErrorKind.INVALID,
    429: ApiErrorKind.TOO_MANY_REQUESTS,
    504: ApiErrorKind.TIMEOUT,
}


def kind_for(status: int, reason: str = "") -> ApiErrorKind:
    """Classify an HTTP status and a Status ``reason`` (pure; the table in the module doc).

    Args:
        status: HTTP status code (0 when no response was received).
        reason: ``Status.reason`` from the body, or ``""``.

    Returns:
        The kind; a known reason wins over the status code.
    """
    by_reason = _BY_REASON.get(reason)
    if by_reason is not None:
        return by_reason
    by_status = _BY_STATUS.get(status)
    if by_status is not None:
        return by_status
    if status >= 500:
        return ApiErrorKind.SERVER_ERROR
    if 400 <= status < 500:
        return ApiErrorKind.BAD_REQUEST
    if status == 0:
        return ApiErrorKind.CONNECTION
    return ApiErrorKind.OTHER


class NotSentError(Exception):
    """A write was not sent: its guard refused it right before the request.

    Raised for Bindings and resizes once this replica no longer leads; nothing reached the API
    server, so the caller may hand the work to whoever leads next.
    """


class ApiError(Exception):
    """A failed API call.

    Attributes:
        kind: The classification; branch on this (or the subclass), never on ``message``.
        http_status: HTTP status code, 0 when no response arrived.
        reason: ``Status.reason`` (``""`` when the body was not a Status).
        message: Human-readable text for logs only.
        retry_after: Seconds the server asked us to wait (``Retry-After`` header or
            ``details.retryAfterSeconds``), or ``None``.
        status: The decoded ``Status`` body, or ``{}``.
    """

    kind: ApiErrorKind = ApiErrorKind.OTHER

    def __init__(
        self,
        message: str,
        *,
        http_status: int = 0,
        reason: str = "",
        retry_after: float | None = None,
        status: Mapping[str, Any] | None = None,
        kind: ApiErrorKind | None = None,
    ) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind
        self.http_status = http_status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after
        self.status: Mapping[str, Any] = status or {}

    @property
    def retryable(self) -> bool:
        """The same request may succeed later (after a backoff or ``retry_after``)."""
        return self.kind in RETRYABLE_KINDS

    def __str__(self) -> str:
        reason = f" {self.reason}" if self.reason else ""
        return f"HTTP {self.http_status}{reason} ({self.kind}): {self.message}"


class ConflictError(ApiError):
    """409 Conflict: bind of an assigned, gated or terminating pod; stale resourceVersion."""

    kind = ApiErrorKind.CONFLICT


class AlreadyExistsError(ConflictError):
    """409 AlreadyExists: a create for a name that exists."""

    kind = ApiErrorKind.ALREADY_EXISTS


class NotFoundError(ApiError):
    """404: the object (or the API path) does not exist."""

    kind = ApiErrorKind.NOT_FOUND


class GoneError(ApiError):
    """410 Gone/Expired: a watch or continue token is too old; LIST again."""

    kind = ApiErrorKind.GONE


class InvalidError(ApiError):
    """422 Invalid: the server rejected the object (``status.details.causes`` say why)."""

    kind = ApiErrorKind.INVALID


class BadRequestError(ApiError):
    """400 and other client errors without a more specific class."""

    kind = ApiErrorKind.BAD_REQUEST


class UnauthorizedError(ApiError):
    """401: credentials missing or rejected."""

    kind = ApiErrorKind.UNAUTHORIZED


class ForbiddenError(ApiError):
    """403: RBAC denies the call (or a namespace is terminating)."""

    kind = ApiErrorKind.FORBIDDEN


class TooManyRequestsError(ApiError):
    """429: API Priority and Fairness throttled us; honour ``retry_after``."""

    kind = ApiErrorKind.TOO_MANY_REQUESTS


class ServerError(ApiError):
    """5xx: the API server (or an aggregated API behind it) failed."""

    kind = ApiErrorKind.SERVER_ERROR


class ApiConnectionError(ApiError):
    """No usable response: refused, reset, TLS or protocol failure."""

    kind = ApiErrorKind.CONNECTION


class ApiTimeoutError(ApiConnectionError):
    """A client-side connect/read timeout, or a server-side ``Timeout``/``ServerTimeout``."""

    kind = ApiErrorKind.TIMEOUT


_CLASS_BY_KIND: Mapping[ApiErrorKind, type[ApiError]] = {
    ApiErrorKind.CONFLICT: ConflictError,
    ApiErrorKind.ALREADY_EXISTS: AlreadyExistsError,
    ApiErrorKind.NOT_FOUND: NotFoundError,
    ApiErrorKind.GONE: GoneError,
    ApiErrorKind.INVALID: InvalidError,
    ApiErrorKind.BAD_REQUEST: BadRequestError,
    ApiErrorKind.UNAUTHORIZED: UnauthorizedError,
    ApiErrorKind.FORBIDDEN: ForbiddenError,
    ApiErrorKind.TOO_MANY_REQUESTS: TooManyRequestsError,
    ApiErrorKind.SERVER_ERROR: ServerError,
    ApiErrorKind.TIMEOUT: ApiTimeoutError,
    ApiErrorKind.CONNECTION: ApiConnectionError,
    ApiErrorKind.OTHER: ApiError,
}


def _parse_retry_after(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None  # HTTP-date form: not used by kube-apiserver
    return seconds if seconds >= 0 else None


def from_status(
    status: Mapping[str, Any],
    *,
    http_status: int | None = None,
    retry_after_header: str | None = None,
) -> ApiError:
    """Build the error for a ``Status`` object (a response body or a watch ERROR event).

    Args:
        status: The decoded ``Status`` (``code``, ``reason``, ``message``, ``details``).
        http_status: The HTTP status when known; defaults to ``status["code"]``.
        retry_after_header: The ``Retry-After`` header value, if any.

    Returns:
        An ``ApiError`` subclass matching the classification.
    """
    code_raw = status.get("code")
    status_code = code_raw if isinstance(code_raw, int) else 0
    code = http_status if http_status is not None else status_code
    reason = status.get("reason")
    reason = reason if isinstance(reason, str) else ""
    message = status.get("message")
    message = message if isinstance(message, str) else ""
    details = status.get("details")
    retry_after = _parse_retry_after(retry_after_header)
    if retry_after is None and isinstance(details, Mapping):
        retry_after = _parse_retry_after(details.get("retryAfterSeconds"))
    kind = kind_for(code, reason)
    cls = _CLASS_BY_KIND[kind]
    return cls(
        message or f"HTTP {code}",
        http_status=code,
        reason=reason,
        retry_after=retry_after,
        status=status,
    )


def from_response(status: int, body: bytes | str | None, headers: Mapping[str, str]) -> ApiError:
    """Build the error for a non-2xx HTTP response.

    Args:
        status: HTTP status code.
        body: Raw response body; a JSON ``Status`` when the API server produced it, plain
            text when a proxy or an aggregated API did.
        headers: Response headers (``Retry-After`` is read).

    Returns:
        An ``ApiError`` subclass matching the classification.
    """
    parsed: Any = None
    text = body.decode(errors="replace") if isinstance(body, bytes) else (body or "")
    if text:
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
    retry_after = headers.get("Retry-After") if headers else None
    if isinstance(parsed, Mapping) and parsed.get("kind") == "Status":
        return from_status(parsed, http_status=status, retry_after_header=retry_after)
    kind = kind_for(status)
    return _CLASS_BY_KIND[kind](
        text.strip()[:500] or f"HTTP {status}",
        http_status=status,
        retry_after=_parse_retry_after(retry_after),
    )


def from_exception(exc: BaseException) -> ApiError:
    """Wrap a transport exception (urllib3, socket, SSL, the client's ApiException).

    Args:
        exc: The exception raised while sending a request or reading a response.

    Returns:
        ``exc`` itself when it already is an ``ApiError``; otherwise a classified wrapper
        (timeouts → ``ApiTimeoutError``, other transport failures → ``ApiConnectionError``,
        the official client's ``ApiException`` by its status and body).
    """
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, k8s_exceptions.ApiException):
        status = int(exc.status or 0)
        if status > 0:
            return from_response(status, exc.body, exc.headers or {})
        return ApiConnectionError(str(exc.reason or exc), http_status=0)
    cause = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) else exc
    if isinstance(cause, urllib3.exceptions.NewConnectionError):
        # (a subclass of ConnectTimeoutError in urllib3 2.x, but a refusal is no timeout)
        return ApiConnectionError(f"{type(exc).__name__}: {cause}", http_status=0)
    if isinstance(cause, urllib3.exceptions.TimeoutError | TimeoutError):
        return ApiTimeoutError(f"{type(exc).__name__}: {cause}", http_status=0)
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError | ssl.SSLError):
        return ApiConnectionError(f"{type(exc).__name__}: {exc}", http_status=0)
    return ApiError(f"{type(exc).__name__}: {exc}", http_status=0, kind=ApiErrorKind.OTHER)


def classify(exc: BaseException) -> ApiErrorKind:
    """Return the kind of any exception raised by an API call.

    Args:
        exc: An ``ApiError``, the official client's ``ApiException``, or a transport error.

    Returns:
        Its ``ApiErrorKind`` (``OTHER`` for anything unrelated to the API).
    """
    return from_exception(exc).kind
