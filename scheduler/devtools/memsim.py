"""A fake kubelet memory model for KWOK nodes: usage that grows, and OOM kills at the limit.

KWOK runs pods without processes, so nothing uses memory and nothing is ever OOM-killed.
:class:`MemorySimulator` adds both for pods that carry the simulation annotations, so that memory
right-sizing and grow-in-place can be tested against a real API server:

- ``sim.wfsched.io/peak-memory-bytes: "<int>"``: the task's true peak (bytes);
- ``sim.wfsched.io/peak-at: "<0..1>"`` (optional, default ``0.5``): the fraction of the runtime
  at which the peak is reached;
- ``kwok.wfsched.io/runtime`` (the existing KWOK stage annotation): the runtime, counted from
  the container start (the message of the pod condition ``kwok.wfsched.io/started-at-ms``, which
  the ``wfsched-pod-ready-resizable`` stage writes to the millisecond, else
  ``status.containerStatuses[0].state.running.startedAt``).

Usage grows linearly from a small base (16 MiB, or the peak when that is smaller) to the peak
at ``peak-at * runtime``, then stays at the peak (:class:`MemoryProfile`). The default ``peak-at``
is the midpoint because traces record a task's peak but not when it happens: the midpoint
bounds the error in the time of an OOM kill to half the runtime, and leaves a grow policy half
the runtime to react.

While a pod runs, the simulator keeps ``kwok.x-k8s.io/usage-memory`` current (KWOK reports it
to metrics-server), patching each pod at most every ``usage_interval_s`` and only when the
value moved. When usage would exceed the container's memory limit, it sets
``kwok.wfsched.io/oom-kill`` at the moment usage crosses the limit; the ``wfsched-pod-oom`` KWOK
stage then ends the pod as the kubelet does: phase ``Failed``, the container terminated with
exit code 137 and reason ``OOMKilled`` (and the ``wfsched-pod-finish`` stage stops matching, so
KWOK does not overwrite it).

Pods with the peak annotation are *resizable* on the local control plane: KWOK reports their
container resources, so ``pods/resize`` is accepted while they run (docs/control-plane.md).
The limit is the one the kubelet enforces: ``status.containerStatuses[].resources.limits`` when
the node reports it (the ``wfsched-pod-ready-resizable`` stage does when the pod starts, and
``wfsched-pod-resources`` after an accepted ``pods/resize``), else
``spec.containers[].resources.limits``. A pod with no memory limit is never killed. The model
applies to the pod's first container.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scheduler.core import errors as core_errors
from scheduler.core import resources as core_resources
from scheduler.kube import client as kube_client
from scheduler.kube import errors as kube_errors

log = logging.getLogger(__name__)

PEAK_MEMORY_ANNOTATION = "sim.wfsched.io/peak-memory-bytes"
PEAK_AT_ANNOTATION = "sim.wfsched.io/peak-at"
RUNTIME_ANNOTATION = "kwok.wfsched.io/runtime"
USAGE_MEMORY_ANNOTATION = "kwok.x-k8s.io/usage-memory"
OOM_KILL_ANNOTATION = "kwok.wfsched.io/oom-kill"
STARTED_AT_CONDITION = "kwok.wfsched.io/started-at-ms"

DEFAULT_PEAK_AT = 0.5
BASE_MEMORY_BYTES = 16 * 2**20

_GO_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


class SimulationError(ValueError):
    """A pod's simulation annotations are malformed."""


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration string (``"90s"``, ``"1m30s"``, ``"1.5h"``, ``"250ms"``).

    Raises:
        SimulationError: not a non-negative Go duration.
    """
    rest = text.strip()
    if rest in ("0", ""):
        if rest == "":
            raise SimulationError("empty duration")
        return 0.0
    total = 0.0
    while rest:
        number_end = 0
        while number_end < len(rest) and (rest[number_end].isdigit() or rest[number_end] == "."):
            number_end += 1
        unit_end = number_end
        while unit_end < len(rest) and not (rest[unit_end].isdigit() or rest[unit_end] == "."):
            unit_end += 1
        number, unit = rest[:number_end], rest[number_end:unit_end]
        if not number or unit not in _GO_DURATION_UNITS:
            raise SimulationError(f"not a Go duration: {text!r}")
        try:
            total += float(number) * _GO_DURATION_UNITS[unit]
        except ValueError as exc:
            raise SimulationError(f"not a Go duration: {text!r}") from exc
        rest = rest[unit_end:]
    return total


@dataclass(frozen=True, slots=True)
class MemoryProfile:
    """How one task's memory usage evolves, counted in seconds from its container start."""

    peak_bytes: int
    runtime_s: float
    peak_at: float = DEFAULT_PEAK_AT
    base_bytes: int = BASE_MEMORY_BYTES

    @property
    def start_bytes(self) -> int:
        """Usage at the container start: the base, or the peak when that is smaller."""
        return min(self.base_bytes, self.peak_bytes)

    @property
    def peak_s(self) -> float:
        """Seconds after the start at which the peak is reached."""
        return self.peak_at * self.runtime_s

    def usage_at(self, elapsed_s: float) -> int:
        """Usage in bytes ``elapsed_s`` seconds after the container start."""
        start = self.start_bytes
        if elapsed_s >= self.peak_s:
            return self.peak_bytes
        fraction = max(0.0, elapsed_s) / self.peak_s
        return int(start + (self.peak_bytes - start) * fraction)

    def crossing_s(self, limit_bytes: int) -> float | None:
        """Seconds after the start at which usage first exceeds ``limit_bytes``; ``None`` if never.

        Usage exceeding the limit while the runtime has not ended is what the kernel OOM-kills.
        """
        start = self.start_bytes
        if limit_bytes >= self.peak_bytes:
            return None
        if limit_bytes < start or self.peak_s <= 0:
            return 0.0
        return (limit_bytes - start) / (self.peak_bytes - start) * self.peak_s

    @classmethod
    def from_annotations(cls, annotations: Mapping[str, str]) -> MemoryProfile | None:
        """The profile a pod's annotations describe; ``None`` when it has no peak annotation.

        Raises:
            SimulationError: an annotation is malformed (naming it).
        """
        raw_peak = annotations.get(PEAK_MEMORY_ANNOTATION)
        if raw_peak is None:
            return None
        try:
            peak = int(raw_peak)
        except ValueError as exc:
            message = f"{PEAK_MEMORY_ANNOTATION} is not an integer: {raw_peak!r}"
            raise SimulationError(message) from exc
        if peak < 0:
            raise SimulationError(f"{PEAK_MEMORY_ANNOTATION} is negative: {raw_peak!r}")
        raw_at = annotations.get(PEAK_AT_ANNOTATION)
        peak_at = DEFAULT_PEAK_AT
        if raw_at is not None:
            try:
                peak_at = float(raw_at)
            except ValueError as exc:
                raise SimulationError(f"{PEAK_AT_ANNOTATION} is not a number: {raw_at!r}") from exc
            if not 0.0 <= peak_at <= 1.0:
                raise SimulationError(f"{PEAK_AT_ANNOTATION} is outside 0..1: {raw_at!r}")
        raw_runtime = annotations.get(RUNTIME_ANNOTATION)
        if raw_runtime is None:
            raise SimulationError(f"{PEAK_MEMORY_ANNOTATION} needs {RUNTIME_ANNOTATION}")
        try:
            runtime = parse_go_duration(raw_runtime)
        except SimulationError as exc:
            raise SimulationError(f"{RUNTIME_ANNOTATION}: {exc}") from exc
        return cls(peak_bytes=peak, runtime_s=runtime, peak_at=peak_at)


def enforced_memory_limit(pod: Mapping[str, Any]) -> int | None:
    """The memory limit (bytes) the kubelet enforces on the pod's first container.

    The limit the node reports in ``status.containerStatuses[].resources`` (the actuated one,
    resized included) wins over the spec's; ``None`` when neither sets one.
    """
    containers = (pod.get("spec") or {}).get("containers") or []
    if not containers:
        return None
    name = containers[0].get("name")
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == name and status.get("resources") is not None:
            limit = ((status.get("resources") or {}).get("limits") or {}).get("memory")
            return None if limit is None else core_resources.integer_value(limit)
    limit = ((containers[0].get("resources") or {}).get("limits") or {}).get("memory")
    return None if limit is None else core_resources.integer_value(limit)


def container_started_at(pod: Mapping[str, Any]) -> float | None:
    """Unix time at which the pod's first container started running; ``None`` if not running.

    The milliseconds in the message of the ``kwok.wfsched.io/started-at-ms`` condition that the
    ``wfsched-pod-ready-resizable`` stage writes when the pod has one (the finish stage counts
    the runtime from it too), else ``startedAt`` (whole seconds).
    """
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == STARTED_AT_CONDITION:
            with contextlib.suppress(TypeError, ValueError):
                return int(condition.get("message")) / 1000.0
    containers = (pod.get("spec") or {}).get("containers") or []
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for status in statuses:
        if containers and status.get("name") != containers[0].get("name"):
            continue
        running = (status.get("state") or {}).get("running") or {}
        started = running.get("startedAt")
        if started:
            stamp = dt.datetime.fromisoformat(str(started).replace("Z", "+00:00"))
            return stamp.timestamp()
    return None


@dataclass(slots=True)
class _Tracked:
    pod: dict[str, Any]
    profile: MemoryProfile | None
    last_usage: int = -1
    last_patch_at: float = -math.inf
    killed: bool = False
    invalid: str = ""


class MemorySimulator:
    """Simulated memory usage and OOM kills for running pods on KWOK nodes.

    ``start()`` lists and watches running pods (of ``namespace``, or all) on two threads;
    ``stop()`` ends them. Also a context manager. Counters: ``usage_patches``, ``oom_kills``.

    Args:
        kube: wfsched's API client, or the path of a kubeconfig (a client is made and closed).
        namespace: Only pods of this namespace; ``None`` watches all namespaces.
        usage_interval_s: At most one usage patch per pod per this many seconds; infinite:
            none (OOM kills only).
        clock: Unix time source (the container start times are wall-clock times).
    """

    def __init__(
        self,
        kube: kube_client.KubeClient | str | Path,
        *,
        namespace: str | None = None,
        usage_interval_s: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(kube, kube_client.KubeClient):
            self._kube = kube
            self._owns_client = False
        else:
            self._kube = kube_client.KubeClient.connect(str(kube), qps=100, burst=200, pool_size=4)
            self._owns_client = True
        self.namespace = namespace
        self.usage_interval_s = usage_interval_s
        self._clock = clock
        self._pods: dict[str, _Tracked] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._stream: Any = None
        self.usage_patches = 0
        """Usage annotation patches sent."""
        self.oom_kills = 0
        """Pods marked for an OOM kill."""

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> MemorySimulator:
        """Start watching and simulating; returns ``self``."""
        self._stopping.clear()
        self._threads = [
            threading.Thread(target=self._watch_loop, name="memsim-watch", daemon=True),
            threading.Thread(target=self._tick_loop, name="memsim-tick", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop both threads (and close the client when this simulator made it)."""
        self._stopping.set()
        self._wake.set()
        stream = self._stream
        if stream is not None:
            stream.close()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads = []
        if self._owns_client:
            self._kube.close()

    def __enter__(self) -> MemorySimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- watching -----------------------------------------------------------------------------

    def _watch_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                items, version = self._kube.list_objects(
                    "pods", namespace=self.namespace, field_selector="status.phase=Running"
                )
                with self._lock:
                    seen = {self._key(p) for p in items}
                    for key in list(self._pods):
                        if key not in seen:
                            del self._pods[key]
                for pod in items:
                    self._observe("ADDED", pod)
                self._wake.set()
                while not self._stopping.is_set():
                    self._stream = self._kube.open_watch(
                        "pods",
                        namespace=self.namespace,
                        field_selector="status.phase=Running",
                        resource_version=version,
                        timeout_seconds=60,
                    )
                    for event in self._stream:
                        obj = event.get("object") or {}
                        version = (obj.get("metadata") or {}).get("resourceVersion") or version
                        if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                            self._observe(str(event["type"]), obj)
                            self._wake.set()
                    self._stream.close()
            except kube_errors.GoneError:
                continue
            except kube_errors.ApiError as exc:
                if self._stopping.is_set():
                    return
                log.warning("memsim watch failed, listing again: %s", exc)
                self._stopping.wait(1.0)

    @staticmethod
    def _key(pod: Mapping[str, Any]) -> str:
        meta = pod.get("metadata") or {}
        return f"{meta.get('namespace')}/{meta.get('name')}/{meta.get('uid')}"

    def _observe(self, kind: str, pod: dict[str, Any]) -> None:
        key = self._key(pod)
        with self._lock:
            if kind == "DELETED":
                self._pods.pop(key, None)
                return
            tracked = self._pods.get(key)
            annotations = (pod.get("metadata") or {}).get("annotations") or {}
            if tracked is None:
                profile: MemoryProfile | None = None
                invalid = ""
                try:
                    profile = MemoryProfile.from_annotations(annotations)
                except SimulationError as exc:
                    invalid = str(exc)
                    log.warning("memsim ignores pod %s: %s", key, exc)
                tracked = _Tracked(pod=pod, profile=profile, invalid=invalid)
                self._pods[key] = tracked
            else:
                tracked.pod = pod
            if OOM_KILL_ANNOTATION in annotations:
                tracked.killed = True

    # --- simulating ---------------------------------------------------------------------------

    def _tick_loop(self) -> None:
        while not self._stopping.is_set():
            wait_s = self.tick()
            self._wake.wait(timeout=wait_s)
            self._wake.clear()

    def tick(self) -> float:
        """Bring every tracked pod up to date now; return the seconds until the next change."""
        now = self._clock()
        next_wake = 5.0
        with self._lock:
            tracked = [t for t in self._pods.values() if t.profile is not None and not t.killed]
        for item in tracked:
            profile = item.profile
            assert profile is not None
            meta = item.pod.get("metadata") or {}
            started = container_started_at(item.pod)
            if started is None:
                continue
            try:
                limit = enforced_memory_limit(item.pod)
            except core_errors.QuantityError as exc:
                log.warning("memsim: bad memory limit on %s: %s", meta.get("name"), exc)
                continue
            elapsed = now - started
            crossing = None if limit is None else profile.crossing_s(limit)
            if crossing is not None and elapsed >= crossing:
                self._kill(item, crossing)
                continue
            if crossing is not None:
                next_wake = min(next_wake, crossing - elapsed)
            usage = profile.usage_at(elapsed)
            since_patch = now - item.last_patch_at
            if usage != item.last_usage and math.isfinite(self.usage_interval_s):
                if since_patch >= self.usage_interval_s:
                    self._patch_usage(item, usage, now)
                    if elapsed < profile.peak_s:
                        next_wake = min(next_wake, self.usage_interval_s)
                else:
                    next_wake = min(next_wake, self.usage_interval_s - since_patch)
        return max(0.0, next_wake)

    def _patch_usage(self, item: _Tracked, usage: int, now: float) -> None:
        meta = item.pod.get("metadata") or {}
        item.last_usage = usage
        item.last_patch_at = now
        with contextlib.suppress(kube_errors.NotFoundError):
            try:
                self._kube.patch_pod_metadata(
                    str(meta.get("namespace")),
                    str(meta.get("name")),
                    annotations={USAGE_MEMORY_ANNOTATION: str(usage)},
                )
                self.usage_patches += 1
            except kube_errors.NotFoundError:
                raise
            except kube_errors.ApiError as exc:
                log.warning("memsim: usage patch of %s failed: %s", meta.get("name"), exc)

    def _kill(self, item: _Tracked, crossing_s: float) -> None:
        meta = item.pod.get("metadata") or {}
        item.killed = True
        with contextlib.suppress(kube_errors.NotFoundError):
            try:
                limit = enforced_memory_limit(item.pod)
                self._kube.patch_pod_metadata(
                    str(meta.get("namespace")),
                    str(meta.get("name")),
                    annotations={
                        OOM_KILL_ANNOTATION: f"{crossing_s:.3f}s",
                        USAGE_MEMORY_ANNOTATION: str(limit if limit is not None else 0),
                    },
                )
                self.oom_kills += 1
                log.info("memsim: OOM kill of %s after %.1f s", meta.get("name"), crossing_s)
            except kube_errors.NotFoundError:
                raise
            except kube_errors.ApiError as exc:
                item.killed = False
                log.warning("memsim: OOM kill of %s failed: %s", meta.get("name"), exc)
