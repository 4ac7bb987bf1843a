"""``KubeClient``: every API call wfsched makes, as plain JSON dicts.

The official ``kubernetes`` package is used for what it does well — loading a kubeconfig or
the in-cluster service account, TLS, token refresh, and urllib3's connection pool — and for
nothing else: requests are built from paths and dicts and sent with
``ApiClient.param_serialize`` + ``ApiClient.call_api``, which return the raw urllib3 response
without model (pydantic) validation or deserialisation. Bodies are decoded once with
``json.loads``; watch streams are split into lines and decoded event by event.

Rules every method follows:

- Each request first takes a token from the shared ``TokenBucket`` (``qps``/``burst``);
  leader-election calls use a small bucket of their own so a burst of binds can never delay
  a lease renewal (kube-scheduler uses a separate client for the same reason).
- Failures raise ``errors.ApiError`` subclasses classified by HTTP status and ``reason``.
- Idempotent reads (GET, LIST) retry a bounded number of times on 429 (and on 5xx that carry
  ``Retry-After``), sleeping what the server asked for (capped). Writes are never retried
  here: a bind that fails with 409 or 404 is final for that attempt; the caller decides.
- ``create_event`` and the metrics readers never raise: events are best effort (failures are
  logged and counted), and metrics.k8s.io being absent or down yields ``None``.

Thread safety: one ``KubeClient`` is shared by the decision loop, bind workers, informers,
the metrics poller and the leader elector; urllib3's pool and the token bucket are
thread-safe, and counters are updated under a lock.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from scheduler.kube import errors, keys
from scheduler.kube.ratelimit import RateLimitTimeout, TokenBucket

log = logging.getLogger(__name__)

JsonDict = dict[str, Any]
"""A decoded JSON object as the API server sent it."""

Timeout = tuple[float, float]
"""(connect, read) timeouts in seconds."""

METRICS_API_PATH: Final = "/apis/metrics.k8s.io/v1beta1"
"""Base path of the resource metrics API served by metrics-server."""

_USER_AGENT: Final = "wfsched/0.1 (kubernetes-python raw-json)"
_STRATEGIC_MERGE: Final = "application/strategic-merge-patch+json"
_MERGE_PATCH: Final = "application/merge-patch+json"
_JSON: Final = "application/json"


@dataclass(frozen=True, slots=True)
class Resource:
    """Where a collection lives in the REST API.

    Attributes:
        group: API group (``""`` for the core group).
        version: API version.
        plural: Collection name in paths.
        kind: ``kind`` of one object.
        namespaced: True when objects live in namespaces.
    """

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        """``apiVersion`` of the objects (``v1`` or ``group/version``)."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self, *, namespace: str | None = None, name: str | None = None, subresource: str = ""
    ) -> str:
        """Return the request path of the collection, one object, or a subresource.

        Args:
            namespace: Namespace for namespaced resources; ``None`` lists across namespaces.
            name: Object name; ``None`` for the collection.
            subresource: ``binding``, ``status``, ``resize``, ...; needs ``name``.

        Returns:
            The absolute path, names percent-encoded.
        """
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{_quote(namespace)}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{_quote(name)}"
            if subresource:
                base += f"/{subresource}"
        return base


RESOURCES: Final[Mapping[str, Resource]] = {
    "pods": Resource("", "v1", "pods", "Pod", True),
    "nodes": Resource("", "v1", "nodes", "Node", False),
    "configmaps": Resource("", "v1", "configmaps", "ConfigMap", True),
    "namespaces": Resource("", "v1", "namespaces", "Namespace", False),
    "leases": Resource("coordination.k8s.io", "v1", "leases", "Lease", True),
    "events": Resource("events.k8s.io", "v1", "events", "Event", True),
}
"""The collections wfsched reads, by the name callers pass as ``kind``."""


def resource_for(kind: str | Resource) -> Resource:
    """Return the ``Resource`` for a collection name (or pass one through).

    Raises:
        ValueError: the name is not in ``RESOURCES``.
    """
    if isinstance(kind, Resource):
        return kind
    try:
        return RESOURCES[kind]
    except KeyError:
        raise ValueError(f"unknown kind {kind!r}; known: {', '.join(RESOURCES)}") from None


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def micro_time(when: datetime.datetime | None = None) -> str:
    """Format a timezone-aware time as a Kubernetes ``MicroTime`` (UTC, microseconds).

    Args:
        when: The time; now when ``None``. Naive values are rejected.

    Raises:
        ValueError: ``when`` is naive.
    """
    moment = when or datetime.datetime.now(datetime.UTC)
    if moment.tzinfo is None:
        raise ValueError("MicroTime needs a timezone-aware datetime")
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rfc3339(when: datetime.datetime | None = None) -> str:
    """Format a timezone-aware time as a Kubernetes ``Time`` (UTC, seconds)."""
    moment = when or datetime.datetime.now(datetime.UTC)
    if moment.tzinfo is None:
        raise ValueError("Time needs a timezone-aware datetime")
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class WatchStream:
    """One open watch response; iterate for events, ``close()`` from any thread to stop.

    Iteration yields each event as a dict ``{"type": ..., "object": {...}}`` (``ADDED``,
    ``MODIFIED``, ``DELETED``, ``BOOKMARK``) and ends when the server closes the stream
    (its ``timeoutSeconds`` elapsed). An ``ERROR`` event is raised as the matching
    ``ApiError`` (``GoneError`` for 410 Expired/Gone). Lines that are not JSON objects are
    skipped, logged and counted in ``malformed``; a JSON object of the wrong shape is
    yielded as is (the consumer validates). Transport failures raise ``ApiConnectionError``
    or ``ApiTimeoutError`` — except after ``close()``, when iteration just ends.
    """

    def __init__(self, response: urllib3.BaseHTTPResponse, *, what: str) -> None:
        self._response = response
        self._what = what
        self._closed = False
        self.malformed = 0
        """Lines skipped because they were not JSON objects."""

    @property
    def closed(self) -> bool:
        """``close()`` was called."""
        return self._closed

    def close(self) -> None:
        """Stop the stream; safe from another thread while one is blocked reading."""
        if self._closed:
            return
        self._closed = True
        shutdown = getattr(self._response, "shutdown", None)
        if callable(shutdown):
            with contextlib.suppress(Exception):
                shutdown()  # unblocks a read in progress in another thread

    def _lines(self) -> Iterator[bytes]:
        pending: list[bytes] = []
        for chunk in self._response.stream(65536, decode_content=True):
            if not chunk:
                continue
            start = 0
            while True:
                newline = chunk.find(b"\n", start)
                if newline < 0:
                    if start < len(chunk):
                        pending.append(chunk[start:])
                    break
                piece = chunk[start:newline]
                start = newline + 1
                if pending:
                    pending.append(piece)
                    line = b"".join(pending)
                    pending.clear()
                else:
                    line = piece
                if line.strip():
                    yield line
        tail = b"".join(pending)
        if tail.strip():
            yield tail

    def __iter__(self) -> Iterator[JsonDict]:
        clean = False
        try:
            for line in self._lines():
                if self._closed:
                    break
                try:
                    event = json.loads(line)
                except ValueError:
                    event = None
                if not isinstance(event, dict):
                    self.malformed += 1
                    log.warning(
                        "malformed watch line skipped",
                        extra={"watch": self._what, "line": line[:200].decode(errors="replace")},
                    )
                    continue
                if event.get("type") == "ERROR":
                    obj = event.get("object")
                    status = obj if isinstance(obj, Mapping) else {}
                    raise errors.from_status(status)
                yield event
            clean = True
        except errors.ApiError:
            raise
        except Exception as exc:
            if self._closed:
                return
            raise errors.from_exception(exc) from exc
        finally:
            self._finish(clean and not self._closed)

    def _finish(self, clean: bool) -> None:
        with contextlib.suppress(Exception):
            if not clean:
                self._response.close()
            self._response.release_conn()


class KubeClient:
    """The API calls wfsched makes, as plain JSON dicts (see the module docstring).

    Construct with ``KubeClient.connect`` (kubeconfig or in-cluster), or around an existing
    ``kubernetes.client.ApiClient``.
    """

    def __init__(
        self,
        api_client: k8s_client.ApiClient,
        *,
        qps: float = 200.0,
        burst: int = 400,
        limiter: TokenBucket | None = None,
        identity: str = "",
        request_timeout: Timeout = (5.0, 30.0),
        list_timeout: Timeout = (5.0, 120.0),
        event_timeout: Timeout = (3.0, 10.0),
        event_max_wait_s: float = 1.0,
        max_read_retries: int = 3,
        max_retry_after_s: float = 10.0,
        metrics_api_path: str = METRICS_API_PATH,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Wrap a configured ``ApiClient``.

        Args:
            api_client: The official client, used only for configuration, auth and its pool.
            qps: Shared rate limit (requests per second; ``<= 0`` unlimited).
            burst: Shared burst.
            limiter: Use this bucket instead of creating one from ``qps``/``burst``.
            identity: ``reportingInstance`` of emitted Events (default: host name + pid).
            request_timeout: (connect, read) timeout of ordinary calls, binds included.
            list_timeout: (connect, read) timeout of each LIST page.
            event_timeout: (connect, read) timeout of Event creation.
            event_max_wait_s: Drop an Event instead of waiting longer than this for a token.
            max_read_retries: Retries of an idempotent read on 429 (and 5xx + Retry-After).
            max_retry_after_s: Cap on one retry sleep.
            metrics_api_path: Base path of the resource metrics API.
            sleep: Sleep function for read retries (tests inject a fake).
        """
        self._api = api_client
        self._limiter = limiter or TokenBucket(qps, burst)
        self._lease_limiter = TokenBucket(5.0, 10)
        self.identity = identity or f"{os.uname().nodename}-{os.getpid()}"
        self._request_timeout = request_timeout
        self._list_timeout = list_timeout
        self._event_timeout = event_timeout
        self._event_max_wait_s = event_max_wait_s
        self._max_read_retries = max_read_retries
        self._max_retry_after_s = max_retry_after_s
        self._metrics_api_path = metrics_api_path.rstrip("/")
        self._sleep = sleep
        self._counter_lock = threading.Lock()
        self.requests_total = 0
        """Requests sent (each LIST page and each retry counts)."""
        self.read_retries = 0
        """Reads retried after 429 / 5xx + Retry-After."""
        self.events_sent = 0
        """Events created."""
        self.events_failed = 0
        """Events the server rejected or that failed in transport."""
        self.events_dropped = 0
        """Events dropped because the rate limiter would have made them wait."""

    # --- construction ------------------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        kubeconfig: str | None,
        *,
        qps: float,
        burst: int,
        pool_size: int,
        context: str | None = None,
        stream_slots: int = 4,
        **kwargs: Any,
    ) -> KubeClient:
        """Build a client from a kubeconfig file, or from the in-cluster service account.

        Args:
            kubeconfig: Path of a kubeconfig; ``None`` uses the in-cluster configuration
                (service-account token, refreshed as it rotates), falling back to the
                default kubeconfig (``$KUBECONFIG`` or ``~/.kube/config``) outside a cluster.
            qps: Shared client-side rate limit.
            burst: Shared client-side burst.
            pool_size: Concurrent short requests to keep connections for: the bind
                concurrency (bind workers) plus a few for events and status writes.
            context: kubeconfig context (default: current context).
            stream_slots: Extra pooled connections for long-running watch streams, so
                watches never take a binder's connection.
            **kwargs: Passed to ``KubeClient.__init__``.

        Returns:
            A ready client (no request has been sent yet).
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
        # Connect errors are retried by urllib3 (the request never left); read errors only
        # for idempotent methods; never on status codes (429 is handled here).
        configuration.retries = urllib3.Retry(
            total=3, connect=3, read=1, status=0, redirect=0, backoff_factor=0.1
        )
        configuration.keep_alive = True  # TCP keepalive: notice dead watch connections
        api_client = k8s_client.ApiClient(configuration)
        api_client.user_agent = _USER_AGENT
        return cls(api_client, qps=qps, burst=burst, **kwargs)

    def close(self) -> None:
        """Close pooled connections."""
        with contextlib.suppress(Exception):
            self._api.close()  # type: ignore[no-untyped-call]

    @property
    def limiter(self) -> TokenBucket:
        """The shared token bucket (for metrics and tests)."""
        return self._limiter

    # --- transport ---------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int | bool | None] | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: Timeout | None = None,
        limiter: TokenBucket | None = None,
        stream: bool = False,
    ) -> urllib3.BaseHTTPResponse:
        """Send one request; return the raw 2xx response (not yet read when ``stream``).

        Raises:
            errors.ApiError: non-2xx status or transport failure, classified.
        """
        (limiter or self._limiter).acquire()
        url_path = path
        if query:
            pairs = [(k, _query_value(v)) for k, v in query.items() if v is not None]
            if pairs:
                url_path += "?" + urllib.parse.urlencode(pairs)
        headers: dict[str, str] = {"Accept": _JSON}
        if content_type is not None:
            headers["Content-Type"] = content_type
        elif body is not None:
            headers["Content-Type"] = _JSON
        with self._counter_lock:
            self.requests_total += 1
        try:
            serialized = self._api.param_serialize(
                method=method,
                resource_path=url_path,
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            rest_response = self._api.call_api(
                *serialized, _request_timeout=timeout or self._request_timeout
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

    def _request_json(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int | bool | None] | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: Timeout | None = None,
        limiter: TokenBucket | None = None,
    ) -> JsonDict:
        response = self._send(
            method,
            path,
            query=query,
            body=body,
            content_type=content_type,
            timeout=timeout,
            limiter=limiter,
        )
        try:
            data = response.data
        except Exception as exc:
            raise errors.from_exception(exc) from exc
        finally:
            with contextlib.suppress(Exception):
                response.release_conn()
        return _decode(data, path)

    def _get_json(
        self,
        path: str,
        *,
        query: Mapping[str, str | int | bool | None] | None = None,
        timeout: Timeout | None = None,
        limiter: TokenBucket | None = None,
    ) -> JsonDict:
        """GET with bounded retries on 429 (and 5xx that carry Retry-After)."""
        attempt = 0
        while True:
            try:
                return self._request_json(
                    "GET", path, query=query, timeout=timeout, limiter=limiter
                )
            except errors.ApiError as exc:
                if attempt >= self._max_read_retries or not _read_retryable(exc):
                    raise
                delay = exc.retry_after if exc.retry_after is not None else 2.0**attempt
                delay = min(max(delay, 0.05), self._max_retry_after_s)
                attempt += 1
                with self._counter_lock:
                    self.read_retries += 1
                log.info(
                    "read throttled; retrying",
                    extra={"path": path, "status": exc.http_status, "delay_s": delay},
                )
                self._sleep(delay)

    # --- generic reads -----------------------------------------------------------------------

    def list_objects(
        self,
        kind: str | Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> tuple[list[JsonDict], str]:
        """LIST a collection page by page (``limit``/``continue``).

        All pages come from one consistent snapshot. When a continue token expires midway
        (410), the LIST restarts from the beginning (twice at most).

        Args:
            kind: A name from ``RESOURCES`` (``pods``, ``nodes``, ``configmaps``, ``leases``,
                ``events``, ``namespaces``) or a ``Resource``.
            namespace: Restrict to one namespace; ``None`` lists all namespaces.
            label_selector: e.g. ``wfsched.io/run-id=abc``.
            field_selector: e.g. ``spec.nodeName=`` (unbound pods).
            page_size: Objects per page.

        Returns:
            ``(items, resourceVersion)``: the objects (``kind``/``apiVersion`` filled in)
            and the list's resourceVersion, from which a watch continues.

        Raises:
            errors.ApiError: the LIST failed.
        """
        res = resource_for(kind)
        path = res.path(namespace=namespace)
        restarts = 0
        while True:
            items: list[JsonDict] = []
            token: str | None = None
            try:
                while True:
                    page = self._get_json(
                        path,
                        query={
                            "limit": max(1, page_size),
                            "continue": token,
                            "labelSelector": label_selector,
                            "fieldSelector": field_selector,
                        },
                        timeout=self._list_timeout,
                    )
                    page_items = page.get("items") or []
                    items.extend(page_items)
                    meta = page.get("metadata") or {}
                    token = meta.get("continue") or None
                    if token is None:
                        resource_version = str(meta.get("resourceVersion") or "")
                        break
            except errors.GoneError:
                if token is None or restarts >= 2:
                    raise
                restarts += 1
                log.info("list continue token expired; restarting list", extra={"path": path})
                continue
            for item in items:
                if isinstance(item, dict):
                    item.setdefault("kind", res.kind)
                    item.setdefault("apiVersion", res.api_version)
            return items, resource_version

    def get_object(
        self, kind: str | Resource, name: str, *, namespace: str | None = None
    ) -> JsonDict | None:
        """GET one object; ``None`` when it does not exist.

        Raises:
            errors.ApiError: any failure other than 404.
        """
        res = resource_for(kind)
        try:
            return self._get_json(res.path(namespace=namespace, name=name))
        except errors.NotFoundError:
            return None

    def open_watch(
        self,
        kind: str | Resource,
        *,
        resource_version: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> WatchStream:
        """Start a WATCH and return the open stream (see ``WatchStream``).

        The server ends the stream after ``timeout_seconds`` (a clean end: watch again from
        the last resourceVersion seen); the client read timeout is ``timeout_seconds + 30``,
        so a dead connection is noticed. Bookmarks are requested.

        Raises:
            errors.ApiError: the request failed (``GoneError`` when the version is too old
                and the server said so with HTTP 410 rather than an ERROR event).
        """
        res = resource_for(kind)
        response = self._send(
            "GET",
            res.path(namespace=namespace),
            query={
                "watch": "true",
                "allowWatchBookmarks": "true",
                "resourceVersion": resource_version or None,
                "timeoutSeconds": max(1, int(timeout_seconds)),
                "labelSelector": label_selector,
                "fieldSelector": field_selector,
            },
            timeout=(self._request_timeout[0], float(timeout_seconds) + 30.0),
            stream=True,
        )
        what = f"{res.plural}@{namespace or '*'}"
        return WatchStream(response, what=what)

    def watch_objects(
        self,
        kind: str | Resource,
        *,
        resource_version: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> Iterator[JsonDict]:
        """Yield raw watch events ``{"type", "object"}`` until the server ends the stream.

        Same contract as ``open_watch`` (ERROR events raise; ``GoneError`` for 410); use
        ``open_watch`` when another thread must be able to stop the stream.
        """
        stream = self.open_watch(
            kind,
            resource_version=resource_version,
            namespace=namespace,
            label_selector=label_selector,
            field_selector=field_selector,
            timeout_seconds=timeout_seconds,
        )
        try:
            yield from stream
        finally:
            stream.close()

    # --- pods --------------------------------------------------------------------------------

    def bind(self, namespace: str, name: str, uid: str, node: str) -> None:
        """Bind a pod to a node (POST ``pods/binding``), with the pod's uid as precondition.

        Never retried: a 409 (already bound, gated, terminating, or a different pod with the
        same name: uid mismatch) or 404 is final for this attempt.

        Raises:
            errors.ConflictError: 409.
            errors.NotFoundError: 404 (the pod is gone).
            errors.ApiError: any other failure, classified.
        """
        res = RESOURCES["pods"]
        metadata = {"name": name, "namespace": namespace}
        if uid:
            metadata["uid"] = uid
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": metadata,
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        response = self._send(
            "POST", res.path(namespace=namespace, name=name, subresource="binding"), body=body
        )
        with contextlib.suppress(Exception):
            response.drain_conn()
            response.release_conn()

    def set_pod_condition(self, namespace: str, name: str, condition: Mapping[str, Any]) -> None:
        """Merge one condition into ``status.conditions`` (strategic merge on ``pods/status``).

        Conditions merge by ``type``. ``lastTransitionTime`` is set to now when absent.
        Example: ``{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/3 nodes are available: ..."}``.

        Raises:
            errors.ApiError: the patch failed (404 when the pod is gone).
        """
        cond = dict(condition)
        cond.setdefault("lastTransitionTime", rfc3339())
        res = RESOURCES["pods"]
        self._request_json(
            "PATCH",
            res.path(namespace=namespace, name=name, subresource="status"),
            body={"status": {"conditions": [cond]}},
            content_type=_STRATEGIC_MERGE,
        )

    def resize_pod(
        self, namespace: str, name: str, containers: Sequence[Mapping[str, Any]]
    ) -> JsonDict:
        """Change container resources through ``pods/resize`` (strategic merge by name).

        Args:
            namespace: Pod namespace.
            name: Pod name.
            containers: ``[{"name": "main", "resources": {"requests": {...}, "limits":
                {...}}}]``; only CPU and memory, and the QoS class must not change.

        Returns:
            The pod after the resize.

        Raises:
            errors.InvalidError: the resize is not allowed (QoS change, removed request...).
            errors.ApiError: any other failure.
        """
        res = RESOURCES["pods"]
        return self._request_json(
            "PATCH",
            res.path(namespace=namespace, name=name, subresource="resize"),
            body={"spec": {"containers": [dict(c) for c in containers]}},
            content_type=_STRATEGIC_MERGE,
        )

    def patch_pod_metadata(
        self,
        namespace: str,
        name: str,
        *,
        labels: Mapping[str, str | None] | None = None,
        annotations: Mapping[str, str | None] | None = None,
    ) -> JsonDict:
        """Set (or, with a ``None`` value, remove) pod labels and annotations (merge patch).

        Returns:
            The patched pod.

        Raises:
            ValueError: neither labels nor annotations were given.
            errors.ApiError: the patch failed.
        """
        meta: dict[str, Any] = {}
        if labels:
            meta["labels"] = dict(labels)
        if annotations:
            meta["annotations"] = dict(annotations)
        if not meta:
            raise ValueError("nothing to patch: give labels or annotations")
        res = RESOURCES["pods"]
        return self._request_json(
            "PATCH",
            res.path(namespace=namespace, name=name),
            body={"metadata": meta},
            content_type=_MERGE_PATCH,
        )

    # --- events ------------------------------------------------------------------------------

    def create_event(
        self,
        *,
        namespace: str,
        pod_name: str,
        pod_uid: str,
        reason: str,
        note: str,
        event_type: str = "Normal",
        action: str = "Scheduling",
    ) -> None:
        """Emit an ``events.k8s.io/v1`` Event about a pod; never raises.

        Cheap by design: one POST, no retries, a short timeout, and dropped (counted in
        ``events_dropped``) rather than queued when the rate limiter would make it wait more
        than ``event_max_wait_s``. Failures are logged and counted in ``events_failed``.

        Args:
            namespace: The pod's namespace (the Event lives there too).
            pod_name: The pod (``regarding``).
            pod_uid: The pod's uid.
            reason: e.g. ``Scheduled``, ``FailedScheduling`` (UpperCamelCase, <= 128 chars).
            note: Human-readable text (cut to 1 kB).
            event_type: ``Normal`` or ``Warning``.
            action: What wfsched did (``Scheduling``, ``Binding``, ``Resizing``).
        """
        try:
            self._limiter.acquire(max_wait=self._event_max_wait_s)
        except RateLimitTimeout:
            with self._counter_lock:
                self.events_dropped += 1
            return
        now = datetime.datetime.now(datetime.UTC)
        body = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": f"{pod_name}.{time.time_ns():x}", "namespace": namespace},
            "eventTime": micro_time(now),
            "reportingController": keys.REPORTING_CONTROLLER,
            "reportingInstance": self.identity[:128],
            "action": action[:128],
            "reason": reason[:128],
            "note": note[:1024],
            "type": event_type,
            "regarding": {
                "apiVersion": "v1",
                "kind": "Pod",
                "namespace": namespace,
                "name": pod_name,
                "uid": pod_uid,
            },
        }
        try:
            self._request_json(
                "POST",
                RESOURCES["events"].path(namespace=namespace),
                body=body,
                timeout=self._event_timeout,
                limiter=_UNLIMITED,
            )
        except Exception as exc:
            with self._counter_lock:
                self.events_failed += 1
            log.warning(
                "event not recorded",
                extra={
                    "pod": f"{namespace}/{pod_name}",
                    "reason": reason,
                    "error_kind": str(errors.classify(exc)),
                    "error": str(exc)[:300],
                },
            )
            return
        with self._counter_lock:
            self.events_sent += 1

    # --- config maps, version, metrics ----------------------------------------------------------

    def get_configmap(self, namespace: str, name: str) -> JsonDict | None:
        """Return a ConfigMap, or ``None`` when it does not exist.

        Raises:
            errors.ApiError: any failure other than 404.
        """
        return self.get_object("configmaps", name, namespace=namespace)

    def server_version(self) -> str:
        """Return the API server's ``gitVersion`` (e.g. ``v1.36.3``).

        Raises:
            errors.ApiError: the call failed.
        """
        return str(self._get_json("/version").get("gitVersion", ""))

    def node_metrics(self) -> list[JsonDict] | None:
        """Return metrics.k8s.io ``NodeMetrics`` items, or ``None`` when unavailable.

        ``None`` (never an exception) when the API is not registered (404), its backend is
        down (503), or the server cannot be reached; the data is then *unknown*, not zero.
        """
        return self._metrics_items(f"{self._metrics_api_path}/nodes")

    def pod_metrics(
        self, namespace: str | None = None, *, label_selector: str | None = None
    ) -> list[JsonDict] | None:
        """Return metrics.k8s.io ``PodMetrics`` items (one namespace or all), or ``None``.

        Same unavailability contract as ``node_metrics``.
        """
        base = self._metrics_api_path
        path = f"{base}/namespaces/{_quote(namespace)}/pods" if namespace else f"{base}/pods"
        return self._metrics_items(path, label_selector=label_selector)

    def _metrics_items(
        self, path: str, *, label_selector: str | None = None
    ) -> list[JsonDict] | None:
        try:
            body = self._get_json(path, query={"labelSelector": label_selector})
        except errors.ApiError as exc:
            expected = exc.kind in (
                errors.ApiErrorKind.NOT_FOUND,
                errors.ApiErrorKind.SERVER_ERROR,
                errors.ApiErrorKind.CONNECTION,
                errors.ApiErrorKind.TIMEOUT,
                errors.ApiErrorKind.TOO_MANY_REQUESTS,
            )
            (log.debug if expected else log.warning)(
                "metrics unavailable",
                extra={"path": path, "error_kind": str(exc.kind), "status": exc.http_status},
            )
            return None
        items = body.get("items")
        return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []

    # --- leases (leader election) ----------------------------------------------------------------

    def get_lease(self, namespace: str, name: str) -> JsonDict | None:
        """Return a ``coordination.k8s.io/v1`` Lease, or ``None`` when absent.

        Uses the leader-election bucket, not the shared one.

        Raises:
            errors.ApiError: any failure other than 404.
        """
        path = RESOURCES["leases"].path(namespace=namespace, name=name)
        try:
            return self._request_json("GET", path, limiter=self._lease_limiter)
        except errors.NotFoundError:
            return None

    def create_lease(self, namespace: str, body: Mapping[str, Any]) -> JsonDict:
        """Create a Lease.

        Raises:
            errors.AlreadyExistsError: another elector created it first.
            errors.ApiError: any other failure.
        """
        return self._request_json(
            "POST",
            RESOURCES["leases"].path(namespace=namespace),
            body=dict(body),
            limiter=self._lease_limiter,
        )

    def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> JsonDict:
        """Replace a Lease (PUT); ``metadata.resourceVersion`` makes it a compare-and-swap.

        Raises:
            errors.ConflictError: the Lease changed since it was read.
            errors.ApiError: any other failure.
        """
        return self._request_json(
            "PUT",
            RESOURCES["leases"].path(namespace=namespace, name=name),
            body=dict(body),
            limiter=self._lease_limiter,
        )


_UNLIMITED = TokenBucket(0, 1)
"""A bucket that never blocks (for calls that already took a token)."""


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
