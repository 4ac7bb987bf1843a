"""Informers: one daemon thread per watched collection, feeding the decision loop's queue.

Each ``Informer`` runs the list-watch protocol explicitly (kubernetes-notes.md 4.3)::

        ┌──────── LIST (paged) ─────────┐  first time: ADDED for every object, has_synced
        │                               │  later: diff against the cache → synthetic events
        ▼                               │
      WATCH from the list's RV ──410────┘  (HTTP 410 or ERROR event with code 410)
        │   ▲
        │   └── clean end (server timeoutSeconds) → WATCH again from the last RV seen
        │        (bookmarks keep that RV fresh)
        └── other error → sleep (exponential backoff, full jitter, cap) → WATCH again
                          (LIST again if the failure was in the LIST)

Every change is pushed as ``(informer_name, event_type, obj)`` onto the caller's
``queue.Queue``; decisions never run on a watch thread. ``event_type`` is ``ADDED``,
``MODIFIED`` or ``DELETED`` and is normalised against the informer's own cache: the first
sighting of a key is ``ADDED``, later ones ``MODIFIED``, and an object that reappears under
the same ``namespace/name`` with a new uid yields ``DELETED`` (old object) then ``ADDED``
(new one). After a re-LIST, ``diff_relist`` compares the cache with the fresh list by
resourceVersion: objects that vanished during the gap get a synthetic ``DELETED`` carrying
their last known state, changed ones ``MODIFIED``, new ones ``ADDED``.

A malformed event (not an object, unknown type, no metadata) is logged, counted and
skipped; it never stops the thread. ``keep`` (optional) filters objects in Python: an
object that stops passing it is reported as ``DELETED``, like a field selector would.

Memory: ``transform`` (client-go's ``SetTransform``) trims every received object before it is
cached or emitted, e.g. to the fields the translation reads (no ``managedFields``); ``store``
shrinks what the cache keeps further, e.g. a finished pod to its identity. The cache needs only
identity and resourceVersion for the relist diff; deletions it emits carry the stored form.

``MetricsPoller`` does the same for metrics.k8s.io snapshots: every ``interval_s`` it pushes
``("node-metrics", "SNAPSHOT", items)`` (and optionally pod metrics), and degrades quietly
while metrics-server is absent.
"""

from __future__ import annotations

import logging
import math
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from scheduler.kube import errors, watchcache
from scheduler.kube.watchcache import (
    ADDED,
    DELETED,
    MODIFIED,
    apply_watch_event,
    diff_relist,
    full_jitter_backoff,
)

log = logging.getLogger(__name__)

JsonDict = dict[str, Any]
Emitted = tuple[str, str, JsonDict]
"""``(informer_name, event_type, obj)`` as pushed onto the output queue."""
StampedEmitted = tuple[str, str, JsonDict, float]
"""``(informer_name, event_type, obj, arrived)``: an informer with an ``arrival_clock``."""

BOOKMARK: Final = "BOOKMARK"
SNAPSHOT: Final = "SNAPSHOT"
_WATCH_TYPES: Final = frozenset({ADDED, MODIFIED, DELETED, BOOKMARK})


class WatchStreamLike(Protocol):
    """An open watch: iterable of raw events, closable from another thread."""

    def __iter__(self) -> Iterator[JsonDict]:
        """Yield ``{"type", "object"}`` events; raise ``ApiError`` on failure."""
        ...

    def close(self) -> None:
        """Stop the stream (iteration ends)."""
        ...


class WatchSource(Protocol):
    """What an informer needs from the client (``KubeClient`` implements it)."""

    def list_objects(
        self,
        kind: str,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> tuple[list[JsonDict], str]:
        """LIST all pages; return items and the list resourceVersion."""
        ...

    def get_object(self, kind: str, name: str, *, namespace: str | None = None) -> JsonDict | None:
        """GET one object (``None`` when absent); used only with ``refetch_on_leave``."""
        ...

    def open_watch(
        self,
        kind: str,
        *,
        resource_version: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> WatchStreamLike:
        """Start a watch from ``resource_version``."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchSpec:
    """What one informer watches.

    Attributes:
        name: Informer name; the first element of every emitted tuple.
        kind: Collection name (``pods``, ``nodes``, ...).
        namespace: One namespace, or ``None`` for all.
        label_selector: Server-side label selector.
        field_selector: Server-side field selector.
    """

    name: str
    kind: str
    namespace: str | None = None
    label_selector: str | None = None
    field_selector: str | None = None


UNBOUND_PODS: Final = WatchSpec(name="pending-pods", kind="pods", field_selector="spec.nodeName=")
"""Pods not yet bound to a node (scheduler names are matched in Python: ``keep``)."""
ACTIVE_PODS: Final = WatchSpec(
    name="pods",
    kind="pods",
    field_selector="status.phase!=Succeeded,status.phase!=Failed",
)
"""Every non-terminal pod in the cluster (node accounting; includes unbound pods). A pod that
finishes leaves this selection with a ``DELETED`` event whose object is its *last
non-terminal* state (the API server sends the previous object), so run it with
``refetch_on_leave=True`` to see ``phase: Succeeded/Failed`` on that event."""
NODES: Final = WatchSpec(name="nodes", kind="nodes")
"""Every node."""


def scheduler_name_filter(
    names: Iterable[str], *, prefixes: Iterable[str] = ()
) -> Callable[[Mapping[str, Any]], bool]:
    """Return a ``keep`` filter for pods whose ``spec.schedulerName`` is ours.

    Args:
        names: Exact scheduler names.
        prefixes: Name prefixes (CWS per-execution names ``<name>-<execution>``).
    """
    exact = frozenset(names)
    starts = tuple(prefixes)

    def keep(obj: Mapping[str, Any]) -> bool:
        spec = obj.get("spec")
        name = spec.get("schedulerName") if isinstance(spec, Mapping) else None
        if not isinstance(name, str):
            return False
        return name in exact or (bool(starts) and name.startswith(starts))

    return keep


class Informer:
    """LIST + WATCH one collection on a daemon thread; push changes onto a queue.

    Counters (read them from tests or metrics; each is only written by the informer thread):
    ``list_count`` (every LIST), ``relist_count`` (LISTs after the first, any cause),
    ``resync_count`` (re-LISTs caused by 410 Gone, each followed by a diff),
    ``watch_count`` (watch streams opened), ``error_count`` (failures that caused a
    backoff), ``malformed_count`` (events skipped), ``events_emitted``.
    """

    def __init__(
        self,
        source: WatchSource,
        spec: WatchSpec,
        events: queue.Queue[Any],
        *,
        keep: Callable[[Mapping[str, Any]], bool] | None = None,
        refetch_on_leave: bool = False,
        page_size: int = 500,
        watch_timeout_s: int = 300,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 5.0,
        rng: random.Random | None = None,
        on_restart: Callable[[str], None] | None = None,
        transform: Callable[[JsonDict], JsonDict] | None = None,
        store: watchcache.Store | None = None,
        arrival_clock: Callable[[], float] | None = None,
    ) -> None:
        """Prepare (not start) an informer.

        Args:
            source: The client (``KubeClient``).
            spec: What to watch.
            events: Output queue; receives ``(spec.name, event_type, obj)`` tuples.
            keep: Optional Python-side filter (objects failing it count as absent).
            refetch_on_leave: For field-selected watches: when an object leaves the
                selection (``DELETED``), GET it and, if it still exists with the same uid,
                emit the ``DELETED`` with its *current* state (a pod that left the
                non-terminal selection then shows ``phase: Succeeded``; one that left the
                unbound selection shows its ``nodeName``). One GET per departure.
            page_size: LIST page size.
            watch_timeout_s: Server-side watch timeout; the stream then ends cleanly.
            backoff_base_s: First backoff ceiling after an error.
            backoff_cap_s: Largest backoff ceiling. Kept short: a scheduler that reconnects
                late after an API server restart leaves pods pending, and one client retrying
                every few seconds costs the server nothing.
            rng: Random source for jitter (seed it in tests).
            on_restart: Called (on the informer thread; exceptions are logged) each time the
                watch has to be opened again, with the reason: ``expired`` (410 Gone, a
                re-LIST follows), ``error`` (any other failure) or ``timeout`` (the stream
                ended, normally at the server-side timeout).
            transform: Applied to every object received (listed, watched, refetched) before
                anything else; handlers see its result. Must not raise on malformed objects.
            store: What the cache keeps of an (already transformed) object; must keep
                ``metadata`` name, namespace, uid and resourceVersion. Default: the object.
            arrival_clock: When set, every item is ``(spec.name, event_type, obj, arrived)``
                with ``arrived`` read from this clock as the event came off the watch stream
                (NaN for the events of a LIST), so the consumer can measure how long it waited
                in the queue.
        """
        self.spec = spec
        self.name = spec.name
        self._source = source
        self._out = events
        self._keep = keep
        self._refetch = refetch_on_leave
        self._page_size = page_size
        self._watch_timeout_s = watch_timeout_s
        self._backoff_base_s = backoff_base_s
        self._backoff_cap_s = backoff_cap_s
        self._rng = rng or random.Random()
        self._on_restart = on_restart
        self._transform = transform
        self._store = store
        self._arrival_clock = arrival_clock
        self._arrived = 0.0
        self._cache: dict[str, JsonDict] = {}
        self._cache_lock = threading.Lock()
        self._resource_version = ""
        self._stop = threading.Event()
        self._stream_lock = threading.Lock()
        self._stream: WatchStreamLike | None = None
        self._thread: threading.Thread | None = None
        self.has_synced = threading.Event()
        """Set once the first LIST has been pushed onto the queue."""
        self.list_count = 0
        self.relist_count = 0
        self.resync_count = 0
        self.watch_count = 0
        self.error_count = 0
        self.malformed_count = 0
        self.events_emitted = 0
        self.refetches = 0
        self.last_error: BaseException | None = None
        """The most recent failure (for logs and tests)."""

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the daemon thread (once)."""
        if self._thread is not None:
            raise RuntimeError(f"informer {self.name} already started")
        self._thread = threading.Thread(
            target=self._run, name=f"wfsched-informer-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread: close the open watch and wait up to ``timeout`` seconds."""
        self._stop.set()
        with self._stream_lock:
            stream = self._stream
        if stream is not None:
            stream.close()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """The thread is running."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def resource_version(self) -> str:
        """The last resourceVersion seen (list, event or bookmark)."""
        return self._resource_version

    def snapshot(self) -> dict[str, JsonDict]:
        """Return a copy of the cache (``namespace/name`` → object)."""
        with self._cache_lock:
            return dict(self._cache)

    # --- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        need_list = True
        failures = 0
        consecutive_gone = 0
        while not self._stop.is_set():
            try:
                if need_list:
                    self._list()
                    need_list = False
                started = time.monotonic()
                received = self._watch()
                if not self._stop.is_set():
                    self._restarted("timeout")
                if received:
                    consecutive_gone = 0
                    failures = 0
                elif time.monotonic() - started < min(1.0, self._watch_timeout_s / 2):
                    # An empty stream that ended at once: do not spin on a sick server.
                    failures += 1
                    self._backoff(failures)
                else:
                    failures = 0
            except errors.GoneError as exc:
                self.last_error = exc
                consecutive_gone += 1
                need_list = True
                self.resync_count += 1
                self._restarted("expired")
                log.info(
                    "watch expired; listing again",
                    extra={"informer": self.name, "resource_version": self._resource_version},
                )
                if consecutive_gone > 1:  # a fresh list's RV expired at once: slow down
                    failures += 1
                    self._backoff(failures)
            except Exception as exc:  # never let the thread die
                self.last_error = exc
                if self._stop.is_set():
                    break
                failures += 1
                self.error_count += 1
                self._restarted("error")
                kind = errors.classify(exc)
                log.warning(
                    "informer error; backing off",
                    extra={
                        "informer": self.name,
                        "error_kind": str(kind),
                        "error": str(exc)[:300],
                        "failures": failures,
                    },
                )
                self._backoff(failures)
        log.debug("informer stopped", extra={"informer": self.name})

    def _restarted(self, reason: str) -> None:
        if self._on_restart is None:
            return
        try:
            self._on_restart(reason)
        except Exception:  # a metrics callback must not stop the informer
            log.warning("on_restart callback failed", exc_info=True)

    def _backoff(self, failures: int) -> None:
        delay = full_jitter_backoff(
            failures, base_s=self._backoff_base_s, cap_s=self._backoff_cap_s, rng=self._rng
        )
        self._stop.wait(delay)

    def _list(self) -> None:
        spec = self.spec
        items, resource_version = self._source.list_objects(
            spec.kind,
            namespace=spec.namespace,
            label_selector=spec.label_selector,
            field_selector=spec.field_selector,
            page_size=self._page_size,
        )
        self.list_count += 1
        self._arrived = math.nan  # a LIST's objects are state, not news: no delivery time
        first = not self.has_synced.is_set()
        if not first:
            self.relist_count += 1
        if self._transform is not None:
            items = [self._transform(item) if isinstance(item, dict) else item for item in items]
        with self._cache_lock:
            new_cache, changes = diff_relist(self._cache, items, keep=self._keep, store=self._store)
            self._cache = new_cache
        self._resource_version = resource_version
        for event_type, obj in changes:
            if not self._emit(event_type, obj):
                return
        if first:
            self.has_synced.set()
            log.info(
                "informer synced",
                extra={"informer": self.name, "objects": len(new_cache)},
            )
        elif changes:
            log.info(
                "relist diff applied",
                extra={"informer": self.name, "events": len(changes)},
            )

    def _watch(self) -> int:
        """Run one watch stream to its end; return how many events it delivered."""
        spec = self.spec
        stream = self._source.open_watch(
            spec.kind,
            resource_version=self._resource_version,
            namespace=spec.namespace,
            label_selector=spec.label_selector,
            field_selector=spec.field_selector,
            timeout_seconds=self._watch_timeout_s,
        )
        with self._stream_lock:
            self._stream = stream
        self.watch_count += 1
        received = 0
        try:
            if self._stop.is_set():
                return 0
            for event in stream:
                if self._stop.is_set():
                    break
                received += 1
                self._handle(event)
        finally:
            with self._stream_lock:
                self._stream = None
            stream.close()
        return received

    def _handle(self, event: Any) -> None:
        if self._arrival_clock is not None:
            self._arrived = self._arrival_clock()
        event_type = event.get("type") if isinstance(event, Mapping) else None
        obj = event.get("object") if isinstance(event, Mapping) else None
        if event_type not in _WATCH_TYPES or not isinstance(obj, dict):
            self._malformed(event, "unexpected event shape")
            return
        resource_version = watchcache.meta_field(obj, "resourceVersion")
        if event_type == BOOKMARK:
            if resource_version:
                self._resource_version = resource_version
            return
        try:
            if self._transform is not None:
                obj = self._transform(obj)
            with self._cache_lock:
                changes = apply_watch_event(
                    self._cache, event_type, obj, keep=self._keep, store=self._store
                )
        except ValueError as exc:
            self._malformed(event, str(exc))
            return
        if resource_version:
            self._resource_version = resource_version
        for change_type, changed in changes:
            if not self._emit(change_type, changed):
                return

    def _malformed(self, event: Any, why: str) -> None:
        self.malformed_count += 1
        log.warning(
            "malformed watch event skipped",
            extra={"informer": self.name, "why": why, "event": repr(event)[:200]},
        )

    def _current_state(self, obj: JsonDict) -> JsonDict:
        """The object as it is now, if it merely left the selection; else ``obj``."""
        meta = obj.get("metadata") or {}
        name = meta.get("name")
        if not isinstance(name, str):
            return obj
        namespace = meta.get("namespace") if isinstance(meta.get("namespace"), str) else None
        try:
            self.refetches += 1
            current = self._source.get_object(self.spec.kind, name, namespace=namespace)
        except Exception as exc:  # best effort: the watch object is still right about "gone"
            log.debug("refetch failed", extra={"informer": self.name, "error": str(exc)[:200]})
            return obj
        uid = watchcache.meta_field(obj, "uid")
        if current is None or watchcache.meta_field(current, "uid") != uid:
            return obj
        return current if self._transform is None else self._transform(current)

    def _emit(self, event_type: str, obj: JsonDict) -> bool:
        """Put one event on the queue (blocking while it is full); False once stopped."""
        if event_type == DELETED and self._refetch:
            obj = self._current_state(obj)
        item: Emitted | StampedEmitted = (
            (self.name, event_type, obj)
            if self._arrival_clock is None
            else (self.name, event_type, obj, self._arrived)
        )
        while True:
            try:
                self._out.put(item, timeout=0.5)
                self.events_emitted += 1
                return True
            except queue.Full:
                if self._stop.is_set():
                    return False


def daemon_informers(
    source: WatchSource,
    events: queue.Queue[Any],
    *,
    scheduler_names: Iterable[str],
    name_prefixes: Iterable[str] = (),
    include_unbound: bool = True,
    watch_timeout_s: int = 300,
) -> list[Informer]:
    """Build (not start) the informers the daemon runs, all feeding ``events``.

    - ``"pods"``: ``ACTIVE_PODS`` with ``refetch_on_leave`` (finished pods arrive as
      ``DELETED`` carrying their terminal phase);
    - ``"nodes"``: ``NODES``;
    - ``"pending-pods"`` (when ``include_unbound``): ``UNBOUND_PODS`` filtered to our
      scheduler names. Its ``DELETED`` means "left the unbound set" (bound *or* deleted).
      ``"pods"`` already delivers every unbound pod too; this stream is for consumers that
      want the pending set alone.
    """
    names = tuple(scheduler_names)
    informers = [
        Informer(
            source, ACTIVE_PODS, events, refetch_on_leave=True, watch_timeout_s=watch_timeout_s
        ),
        Informer(source, NODES, events, watch_timeout_s=watch_timeout_s),
    ]
    if include_unbound:
        informers.append(
            Informer(
                source,
                UNBOUND_PODS,
                events,
                keep=scheduler_name_filter(names, prefixes=name_prefixes),
                watch_timeout_s=watch_timeout_s,
            )
        )
    return informers


class MetricsSource(Protocol):
    """What ``MetricsPoller`` needs from the client (``KubeClient`` implements it)."""

    def node_metrics(self) -> list[JsonDict] | None:
        """NodeMetrics items, or ``None`` when unavailable."""
        ...

    def pod_metrics(
        self, namespace: str | None = None, *, label_selector: str | None = None
    ) -> list[JsonDict] | None:
        """PodMetrics items, or ``None`` when unavailable."""
        ...


NODE_METRICS: Final = "node-metrics"
POD_METRICS: Final = "pod-metrics"


class MetricsPoller:
    """Poll metrics.k8s.io every ``interval_s`` and push snapshots onto the queue.

    Pushes ``("node-metrics", "SNAPSHOT", [NodeMetrics, ...])`` and, when ``pods`` is set,
    ``("pod-metrics", "SNAPSHOT", [PodMetrics, ...])``. While metrics.k8s.io is unavailable
    nothing is pushed (the consumer keeps treating usage as unknown); the first failure is
    logged at WARNING, later ones at DEBUG, and recovery at INFO. After
    ``stale_after_failures`` consecutive failures one empty snapshot is pushed, so stale
    usage is not kept forever.
    """

    def __init__(
        self,
        source: MetricsSource,
        events: queue.Queue[Any],
        *,
        interval_s: float = 15.0,
        pods: bool = False,
        pod_namespace: str | None = None,
        stale_after_failures: int = 4,
    ) -> None:
        """Prepare (not start) the poller.

        Args:
            source: The client.
            events: Output queue.
            interval_s: Poll period (metrics-server scrapes every 10-15 s).
            pods: Also poll pod metrics.
            pod_namespace: Restrict pod metrics to one namespace.
            stale_after_failures: Consecutive failures after which an empty snapshot is
                pushed once.
        """
        self._source = source
        self._out = events
        self.interval_s = interval_s
        self._pods = pods
        self._pod_namespace = pod_namespace
        self._stale_after = max(1, stale_after_failures)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.polls = 0
        self.snapshots = 0
        self.failures = 0
        self._consecutive_failures = 0
        self._available: bool | None = None

    def start(self) -> None:
        """Start the daemon thread (once)."""
        if self._thread is not None:
            raise RuntimeError("metrics poller already started")
        self._thread = threading.Thread(target=self._run, name="wfsched-metrics", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling and wait for the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def poll_once(self) -> bool:
        """Poll now (on the caller's thread); return True when node metrics were read."""
        self.polls += 1
        try:
            nodes = self._source.node_metrics()
        except Exception as exc:  # the client promises None, but never trust a poller
            log.debug("node metrics failed: %s", exc)
            nodes = None
        if nodes is None:
            self._unavailable()
            return False
        self._recovered()
        self._put((NODE_METRICS, SNAPSHOT, nodes))
        if self._pods:
            try:
                pods = self._source.pod_metrics(self._pod_namespace)
            except Exception as exc:
                log.debug("pod metrics failed: %s", exc)
                pods = None
            if pods is not None:
                self._put((POD_METRICS, SNAPSHOT, pods))
        return True

    def _unavailable(self) -> None:
        self.failures += 1
        self._consecutive_failures += 1
        if self._available is not False:
            log.warning("metrics.k8s.io unavailable; node usage unknown until it returns")
        else:
            log.debug("metrics.k8s.io still unavailable")
        self._available = False
        if self._consecutive_failures == self._stale_after:
            self._put((NODE_METRICS, SNAPSHOT, []))

    def _recovered(self) -> None:
        if self._available is False:
            log.info("metrics.k8s.io available again")
        self._available = True
        self._consecutive_failures = 0

    def _put(self, item: tuple[str, str, Any]) -> None:
        while not self._stop.is_set():
            try:
                self._out.put(item, timeout=0.5)
                self.snapshots += 1
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.poll_once()
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))
