"""``KubeClient``: every API call wfsched makes, as plain JSON dicts.

The decision loop, the bind workers, the informers, the metrics poller and the leader elector
share one ``KubeClient``. How requests are sent (auth, pool, rate limit, error
classification, read retries) lives in ``transport``; where objects live in ``resources``;
how a watch is read in ``watchstream``. This module is the catalogue of calls:

=====================  ====================================================================
call                   contract
=====================  ====================================================================
``list_objects``       paged LIST → (items, list resourceVersion); restarts on expired token
``open_watch``         WATCH from a version, bookmarks on, server + client timeouts
``bind``               POST pods/binding with uid precondition; never retried
``set_pod_condition``  strategic merge into ``status.conditions`` (pods/status)
``resize_pod``         strategic merge of container resources (pods/resize)
``patch_pod_metadata`` merge patch of labels/annotations (``None`` removes)
``create_event``       events.k8s.io/v1 Event; best effort, never raises
``get_configmap``      ConfigMap or ``None``
``node_metrics``,      metrics.k8s.io items, or ``None`` when the API is absent or down
``pod_metrics``
``server_version``     ``gitVersion``
``*_lease``            Lease get/create/compare-and-swap for leader election
=====================  ====================================================================

Leader-election calls use a small token bucket of their own, so a burst of binds can never
delay a lease renewal (kube-scheduler gives leader election a separate client for the same
reason); every other call takes a token from the shared bucket (``qps``/``burst``).
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from kubernetes import client as k8s_client

from scheduler.kube import errors, keys, resources, transport, watchstream
from scheduler.kube.ratelimit import RateLimitTimeout, TokenBucket
from scheduler.kube.resources import JsonDict
from scheduler.kube.transport import Timeout

log = logging.getLogger(__name__)

# Re-exported for callers that only import this module.
RESOURCES = resources.RESOURCES
Resource = resources.Resource
WatchStream = watchstream.WatchStream
METRICS_API_PATH = resources.METRICS_API_PATH


def binding_body(namespace: str, name: str, uid: str, node: str) -> bytes:
    """The JSON of a ``v1`` Binding of pod ``namespace/name`` (uid precondition if set) to ``node``.

    Built from a template (names JSON-escaped), not through dicts and ``json.dumps``: it is
    sent once per bound pod.
    """
    dumps = json.dumps
    uid_part = f',"uid":{dumps(uid)}' if uid else ""
    return (
        '{"apiVersion":"v1","kind":"Binding","metadata":{"name":'
        f'{dumps(name)},"namespace":{dumps(namespace)}{uid_part}}},'
        f'"target":{{"apiVersion":"v1","kind":"Node","name":{dumps(node)}}}}}'
    ).encode()


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
        event_limiter: TokenBucket | None = None,
        identity: str = "",
        request_timeout: Timeout = (5.0, 30.0),
        list_timeout: Timeout = (5.0, 120.0),
        event_timeout: Timeout = (3.0, 10.0),
        lease_timeout: Timeout = (3.0, 5.0),
        event_max_wait_s: float = 1.0,
        max_read_retries: int = 3,
        max_retry_after_s: float = 10.0,
        metrics_api_path: str = resources.METRICS_API_PATH,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Wrap a configured ``ApiClient``.

        Args:
            api_client: The official client, used only for configuration, auth and its pool.
            qps: Shared rate limit (requests per second; ``<= 0`` unlimited).
            burst: Shared burst.
            limiter: Use this bucket instead of creating one from ``qps``/``burst``.
            event_limiter: The Events' own bucket (default: a new one from ``qps``/``burst``).
            identity: ``reportingInstance`` of emitted Events (default: host name + pid).
            request_timeout: (connect, read) timeout of ordinary calls, binds included.
            list_timeout: (connect, read) timeout of each LIST page.
            event_timeout: (connect, read) timeout of Event creation.
            lease_timeout: (connect, read) timeout of Lease calls; keep it below the
                elector's renew deadline so one hung call cannot outlive it.
            event_max_wait_s: Drop an Event instead of waiting longer than this for a token.
            max_read_retries: Retries of an idempotent read on 429 (and 5xx + Retry-After).
            max_retry_after_s: Cap on one retry sleep.
            metrics_api_path: Base path of the resource metrics API.
            sleep: Sleep function for read retries (tests inject a fake).
        """
        self._t = transport.Transport(
            api_client,
            limiter=limiter or TokenBucket(qps, burst),
            request_timeout=request_timeout,
            max_read_retries=max_read_retries,
            max_retry_after_s=max_retry_after_s,
            sleep=sleep,
        )
        self._lease_limiter = TokenBucket(5.0, 10)
        # Events have a bucket of their own (kube-scheduler uses a separate client for them):
        # a burst of Scheduled Events never delays a Binding, and binds never starve Events.
        self._event_limiter = event_limiter or TokenBucket(qps, burst)
        self._unlimited = TokenBucket(0, 1)
        self.identity = identity or f"{os.uname().nodename}-{os.getpid()}"
        self._list_timeout = list_timeout
        self._event_timeout = event_timeout
        self._lease_timeout = lease_timeout
        self._event_max_wait_s = event_max_wait_s
        self._metrics_api_path = metrics_api_path.rstrip("/")
        self._counter_lock = threading.Lock()
        self.write_guard: Callable[[], bool] | None = None
        """Checked right before each Binding and ``pods/resize`` request, after the rate
        limiter: when it returns False the request is not sent (``errors.NotSentError``).
        The daemon sets it to "this replica still leads"."""
        self.events_sent = 0
        """Events created."""
        self.events_failed = 0
        """Events the server rejected or that failed in transport."""
        self.events_dropped = 0
        """Events dropped because the rate limiter would have made them wait."""

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
            kubeconfig: Path of a kubeconfig; ``None`` uses the in-cluster configuration,
                falling back to the default kubeconfig outside a cluster.
            qps: Shared client-side rate limit.
            burst: Shared client-side burst.
            pool_size: Connections for concurrent short requests: the bind concurrency
                (bind workers) plus a few for events and status writes.
            context: kubeconfig context (default: current context).
            stream_slots: Extra pooled connections for long-running watch streams.
            **kwargs: Passed to ``KubeClient.__init__``.

        Returns:
            A ready client (no request has been sent yet).
        """
        api_client = transport.api_client_from_config(
            kubeconfig, pool_size=pool_size, context=context, stream_slots=stream_slots
        )
        return cls(api_client, qps=qps, burst=burst, **kwargs)

    def close(self) -> None:
        """Close pooled connections."""
        self._t.close()

    @property
    def limiter(self) -> TokenBucket:
        """The shared token bucket (for metrics and tests)."""
        return self._t.limiter

    @property
    def requests_total(self) -> int:
        """Requests sent so far (each LIST page and each retry counts)."""
        return self._t.requests_total

    @property
    def read_retries(self) -> int:
        """Reads retried after 429 / 5xx + Retry-After."""
        return self._t.read_retries

    # --- generic reads -----------------------------------------------------------------------

    def list_objects(
        self,
        kind: str | resources.Resource,
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
        res = resources.resource_for(kind)
        path = res.path(namespace=namespace)
        restarts = 0
        while True:
            items: list[JsonDict] = []
            token: str | None = None
            try:
                while True:
                    page = self._t.get_json(
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
        self, kind: str | resources.Resource, name: str, *, namespace: str | None = None
    ) -> JsonDict | None:
        """GET one object; ``None`` when it does not exist.

        Raises:
            errors.ApiError: any failure other than 404.
        """
        res = resources.resource_for(kind)
        try:
            return self._t.get_json(res.path(namespace=namespace, name=name))
        except errors.NotFoundError:
            return None

    def open_watch(
        self,
        kind: str | resources.Resource,
        *,
        resource_version: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> watchstream.WatchStream:
        """Start a WATCH and return the open stream (see ``WatchStream``).

        The server ends the stream after ``timeout_seconds`` (a clean end: watch again from
        the last resourceVersion seen); the client read timeout is ``timeout_seconds + 30``,
        so a dead connection is noticed. Bookmarks are requested.

        Raises:
            errors.ApiError: the request failed (``GoneError`` when the version is too old
                and the server said so with HTTP 410 rather than an ERROR event).
        """
        res = resources.resource_for(kind)
        response = self._t.send(
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
            timeout=(self._t.request_timeout[0], float(timeout_seconds) + 30.0),
        )
        what = f"{res.plural}@{namespace or '*'}"
        return watchstream.WatchStream(response, what=what)

    def watch_objects(
        self,
        kind: str | resources.Resource,
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
            errors.NotSentError: ``write_guard`` refused it; nothing was sent.
            errors.ConflictError: 409.
            errors.NotFoundError: 404 (the pod is gone).
            errors.ApiError: any other failure, classified.
        """
        res = resources.RESOURCES["pods"]
        self._t.send_prepared(
            "POST",
            res.path(namespace=namespace, name=name, subresource="binding"),
            binding_body(namespace, name, uid, node),
            guard=self.write_guard,
        )

    def set_pod_condition(self, namespace: str, name: str, condition: Mapping[str, Any]) -> None:
        """Merge one condition into ``status.conditions`` (strategic merge on ``pods/status``).

        Conditions merge by ``type``. ``lastTransitionTime`` is set to now when absent.
        Example: ``{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/3 nodes are available: ..."}``.

        Raises:
            errors.ApiError: the patch failed (404 when the pod is gone).
        """
        cond = dict(condition)
        cond.setdefault("lastTransitionTime", resources.rfc3339())
        res = resources.RESOURCES["pods"]
        self._t.request_json(
            "PATCH",
            res.path(namespace=namespace, name=name, subresource="status"),
            body={"status": {"conditions": [cond]}},
            content_type=transport.STRATEGIC_MERGE,
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
            errors.NotSentError: ``write_guard`` refused it; nothing was sent.
            errors.InvalidError: the resize is not allowed (QoS change, removed request...).
            errors.ApiError: any other failure.
        """
        res = resources.RESOURCES["pods"]
        return self._t.request_json(
            "PATCH",
            res.path(namespace=namespace, name=name, subresource="resize"),
            body={"spec": {"containers": [dict(c) for c in containers]}},
            content_type=transport.STRATEGIC_MERGE,
            guard=self.write_guard,
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
        res = resources.RESOURCES["pods"]
        return self._t.request_json(
            "PATCH",
            res.path(namespace=namespace, name=name),
            body={"metadata": meta},
            content_type=transport.MERGE_PATCH,
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
        regarding_kind: str = "Pod",
    ) -> str:
        """Emit an ``events.k8s.io/v1`` Event about a pod (or another object); never raises.

        Cheap by design: one POST, no retries, a short timeout, and dropped (counted in
        ``events_dropped``) rather than queued when the Event rate limiter (a bucket of its
        own, sized like the client's) would make it wait more than ``event_max_wait_s``.
        Failures are logged and counted in ``events_failed``. Returns the outcome:
        ``sent``, ``failed`` or ``dropped``.

        Args:
            namespace: The pod's namespace (the Event lives there too).
            pod_name: The pod (``regarding``).
            pod_uid: The pod's uid.
            reason: e.g. ``Scheduled``, ``FailedScheduling`` (UpperCamelCase, <= 128 chars).
            note: Human-readable text (cut to 1 kB).
            event_type: ``Normal`` or ``Warning``.
            action: What wfsched did (``Scheduling``, ``Binding``, ``Resizing``).
            regarding_kind: The kind of the object named ``pod_name`` (a core/v1 kind, e.g.
                ``ConfigMap`` for a refused DAG document); ``pod_uid`` may then be empty.
        """
        try:
            self._event_limiter.acquire(max_wait=self._event_max_wait_s)
        except RateLimitTimeout:
            with self._counter_lock:
                self.events_dropped += 1
            return "dropped"
        now = datetime.datetime.now(datetime.UTC)
        body = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": f"{pod_name}.{time.time_ns():x}", "namespace": namespace},
            "eventTime": resources.micro_time(now),
            "reportingController": keys.REPORTING_CONTROLLER,
            "reportingInstance": self.identity[:128],
            "action": action[:128],
            "reason": reason[:128],
            "note": note[:1024],
            "type": event_type,
            "regarding": {
                "apiVersion": "v1",
                "kind": regarding_kind,
                "namespace": namespace,
                "name": pod_name,
                **({"uid": pod_uid} if pod_uid else {}),
            },
        }
        try:
            self._t.request_json(
                "POST",
                resources.RESOURCES["events"].path(namespace=namespace),
                body=body,
                timeout=self._event_timeout,
                limiter=self._unlimited,
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
            return "failed"
        with self._counter_lock:
            self.events_sent += 1
        return "sent"

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
        return str(self._t.get_json("/version").get("gitVersion", ""))

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
        path = (
            f"{base}/namespaces/{resources.quote_segment(namespace)}/pods"
            if namespace
            else f"{base}/pods"
        )
        return self._metrics_items(path, label_selector=label_selector)

    def _metrics_items(
        self, path: str, *, label_selector: str | None = None
    ) -> list[JsonDict] | None:
        try:
            body = self._t.get_json(path, query={"labelSelector": label_selector})
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
        path = resources.RESOURCES["leases"].path(namespace=namespace, name=name)
        try:
            return self._t.request_json(
                "GET", path, limiter=self._lease_limiter, timeout=self._lease_timeout
            )
        except errors.NotFoundError:
            return None

    def create_lease(self, namespace: str, body: Mapping[str, Any]) -> JsonDict:
        """Create a Lease.

        Raises:
            errors.AlreadyExistsError: another elector created it first.
            errors.ApiError: any other failure.
        """
        return self._t.request_json(
            "POST",
            resources.RESOURCES["leases"].path(namespace=namespace),
            body=dict(body),
            limiter=self._lease_limiter,
            timeout=self._lease_timeout,
        )

    def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> JsonDict:
        """Replace a Lease (PUT); ``metadata.resourceVersion`` makes it a compare-and-swap.

        Raises:
            errors.ConflictError: the Lease changed since it was read.
            errors.ApiError: any other failure.
        """
        return self._t.request_json(
            "PUT",
            resources.RESOURCES["leases"].path(namespace=namespace, name=name),
            body=dict(body),
            limiter=self._lease_limiter,
            timeout=self._lease_timeout,
        )

    def create_pod(self, namespace: str, manifest: Mapping[str, Any]) -> JsonDict | None:
        """Create a pod; ``None`` when one with that name already exists (idempotent).

        Used by ``wfsched replay`` to submit workflow tasks.

        Raises:
            errors.ApiError: any failure other than AlreadyExists.
        """
        try:
            return self._t.request_json(
                "POST", resources.RESOURCES["pods"].path(namespace=namespace), body=dict(manifest)
            )
        except errors.AlreadyExistsError:
            return None

    def list_pods(self, namespace: str, label_selector: str) -> list[JsonDict]:
        """List the pods of a namespace matching ``label_selector``."""
        items, _ = self.list_objects("pods", namespace=namespace, label_selector=label_selector)
        return items

    # --- wfsched's own state ---------------------------------------------------------------

    def put_configmap(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, str],
        *,
        labels: Mapping[str, str],
        annotations: Mapping[str, str] | None = None,
        binary_data: Mapping[str, bytes] | None = None,
        field_manager: str = keys.FIELD_MANAGER,
    ) -> JsonDict:
        """Create or update a ConfigMap with ``data`` (server-side apply as ``field_manager``).

        ``binary_data`` values are sent base64-encoded (``binaryData``). Keys another field
        manager applied are left alone; keys this manager applied before and left out now are
        removed.

        Raises:
            errors.ApiError: the apply failed.
        """
        metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(labels)}
        if annotations:
            metadata["annotations"] = dict(annotations)
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata,
            "data": dict(data),
        }
        if binary_data:
            body["binaryData"] = {
                key: base64.b64encode(value).decode("ascii") for key, value in binary_data.items()
            }
        return self._t.request_json(
            "PATCH",
            resources.RESOURCES["configmaps"].path(namespace=namespace, name=name),
            query={"fieldManager": field_manager, "force": True},
            body=body,
            content_type="application/apply-patch+yaml",
        )

    def delete_configmap(self, namespace: str, name: str) -> bool:
        """Delete a ConfigMap; ``False`` when it did not exist.

        Raises:
            errors.ApiError: any failure other than 404.
        """
        try:
            self._t.request_json(
                "DELETE", resources.RESOURCES["configmaps"].path(namespace=namespace, name=name)
            )
        except errors.NotFoundError:
            return False
        return True

    # --- gangs -------------------------------------------------------------------------------

    def delete_pod(self, namespace: str, name: str, uid: str) -> bool:
        """Delete one pod at once, only if it still has ``uid`` (undoing a gang's partial bind).

        Returns ``False`` when it is already gone (404) or is another pod now (409).

        Raises:
            errors.NotSentError: ``write_guard`` refused it; nothing was sent.
            errors.ApiError: any other failure.
        """
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": uid},
        }
        try:
            self._t.request_json(
                "DELETE",
                resources.RESOURCES["pods"].path(namespace=namespace, name=name),
                body=body,
                guard=self.write_guard,
            )
        except (errors.NotFoundError, errors.ConflictError):
            return False
        return True

    def serves(self, kind: str | resources.Resource) -> bool:
        """True when the API server serves the collection (e.g. ``podgroups`` behind a gate).

        Raises:
            errors.ApiError: discovery failed for another reason than 404.
        """
        res = resources.resource_for(kind)
        base = f"/api/{res.version}" if not res.group else f"/apis/{res.group}/{res.version}"
        try:
            listing = self._t.get_json(base)
        except errors.NotFoundError:
            return False
        return any(r.get("name") == res.plural for r in listing.get("resources") or ())
