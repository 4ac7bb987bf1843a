"""Machinery of the reliability suite: control planes, fault-tolerant drivers, invariants, report.

Every scenario ends with the same verdict (``verify``), computed from the API server and the
daemon's own logs, never from the daemon's opinion of itself:

* **bound exactly once**: at most one ``Scheduled`` Event per pod *and* at most one ``bound``
  log line per pod across every process that ran (restarts append to the same log), and no
  pod seen on two nodes by the capacity monitor;
* **no node over its allocatable**: ``CapacityMonitor`` samples every bound, non-terminal pod
  of every scheduler from the API server while the scenario runs;
* **nothing lost**: every pod the scenario expects reached ``Succeeded`` (or, for pods that
  run forever, got a node);
* **the daemon alive** at the end.

Scheduled Events are best effort in wfsched (one POST, no retry, dropped rather than delayed
when the Event backlog or the Events' rate limiter is full): a SIGKILL between a successful
Binding and its Event, or an API-server outage, can lose the Event. A pod bound with no Event
is therefore counted separately (``missing_events``); the bound-once invariant is "never more
than one".

Measured outcomes go to ``$WFSCHED_RELIABILITY_REPORT`` (default ``build/reliability.json``)
through ``record``; ``tests/reliability/report.py`` renders ``docs/reliability.md`` from it.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import platform
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client

from scheduler.devtools import devcluster
from tests.support import controlplane

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
WFINSTANCES = DATA / "wfinstances"
SCHED = "workflow-scheduler"
T = TypeVar("T")
REQUEST_TIMEOUT = (5, 20)
"""Connect and read timeouts of every test-side API call (an outage must not hang a test)."""


# --- control planes ---------------------------------------------------------------------------


@dataclass
class ControlPlane:
    """A ``DevCluster`` with the test-side clients."""

    cluster: devcluster.DevCluster
    api_client: client.ApiClient
    core_v1: client.CoreV1Api

    @classmethod
    def start(cls, workdir: Path, **options: Any) -> ControlPlane:
        options.setdefault("metrics_server", False)
        cluster = controlplane.start_cluster(workdir, **options)
        api_client = controlplane.api_client(cluster, retries=0)
        return cls(cluster=cluster, api_client=api_client, core_v1=client.CoreV1Api(api_client))

    def stop(self) -> None:
        self.api_client.close()
        self.cluster.stop()

    def namespace(self, prefix: str = "r") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.core_v1.create_namespace(
            {"metadata": {"name": name}}, _request_timeout=REQUEST_TIMEOUT
        )
        return name

    def nodes(self, count: int, **kwargs: Any) -> list[str]:
        prefix = kwargs.pop("prefix", f"n{uuid.uuid4().hex[:5]}-")
        kwargs.setdefault("wait_ready_s", 300)
        return self.cluster.create_nodes(count, prefix=prefix, **kwargs)

    def restart(self, *components: str, sig: signal.Signals = signal.SIGTERM, down_s: float = 5.0):
        """Stop the components (in reverse order), wait ``down_s``, start them again in order.

        Returns the seconds the first component was down (stop to last start ready).
        """
        started = time.monotonic()
        for name in reversed(components):
            self.cluster.stop_component(name, sig=sig)
        time.sleep(down_s)
        for name in components:
            start_component_retrying(self.cluster, name)
        return time.monotonic() - started


def start_component_retrying(cluster: devcluster.DevCluster, name: str) -> None:
    """Start a component on its old port, retrying while the port is briefly taken.

    While a component is down, any loopback connection on this busy machine may get its port
    as an ephemeral source port for a moment; the listener then fails with EADDRINUSE.
    """
    for attempt in range(20):
        try:
            cluster.start_component(name)
            return
        except devcluster.DevClusterError as exc:
            if "address already in use" not in str(exc) or attempt == 19:
                raise
            time.sleep(1.0)


STARTED: list[devcluster.LocalDaemon] = []
"""Every daemon a test started (``start_daemon``); the conftest stops them after each test."""


def make_daemon(
    plane: ControlPlane, workdir: Path, namespace: str, **settings: Any
) -> devcluster.LocalDaemon:
    """A ``wfsched run`` process limited to ``namespace`` (not started)."""
    settings.setdefault("namespaces", [namespace])
    settings.setdefault("lease", {"enabled": False})
    return devcluster.LocalDaemon(plane.cluster.kubeconfig, workdir, **settings)


def start_daemon(daemon: devcluster.LocalDaemon, *, wait_ready_s: float = 90) -> None:
    if daemon not in STARTED:
        STARTED.append(daemon)
    try:
        daemon.start(wait_ready_s=wait_ready_s)
    except devcluster.DevClusterError as exc:
        pytest.fail(str(exc), pytrace=False)


def alive(daemon: devcluster.LocalDaemon) -> bool:
    """The process runs and answers ``/healthz``."""
    if daemon.proc is None or daemon.proc.poll() is not None:
        return False
    try:
        return daemon.get("/healthz").strip() == "ok"
    except OSError:
        return False


def peak_rss_bytes(pid: int) -> int:
    """``VmHWM`` (peak resident set) of a process, in bytes."""
    return devcluster.process_memory_bytes(pid, "VmHWM")


# --- pods -------------------------------------------------------------------------------------


class PatientPodApi:
    """``devtools.replay.PodApi`` that rides out API-server outages (retries for a while)."""

    def __init__(self, core_v1: client.CoreV1Api, *, patience_s: float = 180) -> None:
        self.core_v1 = core_v1
        self.patience_s = patience_s
        self.retries = 0

    def _call(self, fn: Callable[[], Any]) -> Any:
        deadline = time.monotonic() + self.patience_s
        while True:
            try:
                return fn()
            except client.ApiException as exc:
                if exc.status in (409,):
                    return None
                if exc.status and exc.status < 500 and exc.status != 429:
                    raise
                last: Exception = exc
            except Exception as exc:  # connection refused/reset while the server is down
                last = exc
            self.retries += 1
            if time.monotonic() > deadline:
                raise TimeoutError(f"API unavailable for {self.patience_s}s: {last}")
            time.sleep(0.5)

    def create_pod(self, namespace: str, manifest: Mapping[str, Any]) -> None:
        self._call(
            lambda: self.core_v1.create_namespaced_pod(
                namespace, dict(manifest), _preload_content=False, _request_timeout=REQUEST_TIMEOUT
            )
        )

    def list_pods(self, namespace: str, label_selector: str = "") -> list[dict[str, Any]]:
        return list_pods(self.core_v1, namespace, label_selector, call=self._call)


def list_pods(
    core_v1: client.CoreV1Api,
    namespace: str | None,
    label_selector: str = "",
    *,
    field_selector: str = "",
    call: Callable[[Callable[[], Any]], Any] = lambda fn: fn(),
) -> list[dict[str, Any]]:
    """Every pod of a namespace (``None``: all namespaces) as dicts, paged.

    Each page is requested *and read* inside ``call``: a server restarted while the body is on
    its way cuts it short (``IncompleteRead``, a reset), and a patient ``call`` retries that
    like a refused connection.
    """
    items: list[dict[str, Any]] = []
    token = None
    while True:
        kwargs: dict[str, Any] = {
            "label_selector": label_selector,
            "field_selector": field_selector,
            "limit": 2000,
            "_preload_content": False,
            "_request_timeout": (5, 60),
        }
        if token:
            kwargs["_continue"] = token

        def fetch(kw: dict[str, Any] = kwargs) -> dict[str, Any]:
            if namespace is None:
                resp = core_v1.list_pod_for_all_namespaces(**kw)
            else:
                resp = core_v1.list_namespaced_pod(namespace, **kw)
            page: dict[str, Any] = json.loads(resp.data)
            return page

        page = call(fetch)
        items.extend(page["items"])
        token = page["metadata"].get("continue")
        if not token:
            return items


def count_bound(core_v1: client.CoreV1Api, namespace: str) -> int:
    """How many pods of the namespace have a node (terminal ones included)."""
    return len(list_pods(core_v1, namespace, field_selector="spec.nodeName!="))


def count_succeeded(core_v1: client.CoreV1Api, namespace: str) -> int:
    """How many pods of the namespace have succeeded."""
    return sum(p["status"].get("phase") == "Succeeded" for p in list_pods(core_v1, namespace))


def pod_manifest(
    name: str,
    *,
    cpu: str = "100m",
    memory: str = "64Mi",
    runtime: str | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    scheduler_name: str = SCHED,
) -> dict[str, Any]:
    notes = dict(annotations or {})
    if runtime is not None:
        notes[devcluster.RUNTIME_ANNOTATION] = runtime
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": dict(labels or {}), "annotations": notes},
        "spec": {
            "schedulerName": scheduler_name,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "main",
                    "image": "busybox",
                    "resources": {"requests": {"cpu": cpu, "memory": memory}},
                }
            ],
        },
    }


def wait_until(
    predicate: Callable[[], Any], *, timeout_s: float, what: str, interval_s: float = 0.5
) -> Any:
    """Poll until truthy; fail the test on timeout. Exceptions count as "not yet"."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while True:
        try:
            value = predicate()
        except Exception as exc:  # the API may be briefly away in fault scenarios
            value, last = None, exc
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what} (last error: {last})")
        time.sleep(interval_s)


def patiently(
    fn: Callable[[], T], *, patience_s: float = 60, on_error: Callable[[], None] | None = None
) -> T:
    """``fn()``, retried every 0.5 s on any exception until ``patience_s`` has passed."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return fn()
        except Exception:
            if on_error is not None:
                on_error()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


# --- capacity -------------------------------------------------------------------------------


def _quantity(value: str) -> float:
    from scheduler.core import resources

    return float(resources.parse_quantity(value))


class CapacityMonitor:
    """Samples bound, non-terminal pods of every scheduler and namespace on ``nodes``.

    Records every node found above its allocatable (cpu, memory, pods) and every pod seen on
    two different nodes. Sampling errors (API outages) are counted, never raised.
    """

    def __init__(
        self, core_v1: client.CoreV1Api, nodes: Iterable[str], *, interval_s: float = 0.5
    ) -> None:
        self.core_v1 = core_v1
        self.nodes = set(nodes)
        self.interval_s = interval_s
        self.violations: list[str] = []
        self.overcommitted_nodes: set[str] = set()
        self.node_of: dict[str, str] = {}
        self.moved: list[str] = []
        self.samples = 0
        self.errors = 0
        self._alloc: dict[str, dict[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capacity-monitor", daemon=True)

    def __enter__(self) -> CapacityMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)
        # After an API-server restart the client's pool may still hold a socket to the old
        # process, and the first request on it is reset: ride that out.
        patiently(self.check_once, on_error=self._count_error)

    def _count_error(self) -> None:
        self.errors += 1

    def _allocatable(self) -> dict[str, dict[str, float]]:
        resp = self.core_v1.list_node(_preload_content=False, _request_timeout=(5, 60))
        alloc = {}
        for node in json.loads(resp.data)["items"]:
            name = node["metadata"]["name"]
            if name in self.nodes:
                raw = node["status"]["allocatable"]
                alloc[name] = {r: _quantity(raw[r]) for r in ("cpu", "memory", "pods")}
        return alloc

    def check_once(self) -> None:
        if not self._alloc or len(self._alloc) < len(self.nodes):
            self._alloc = self._allocatable()
        pods = list_pods(
            self.core_v1,
            None,
            field_selector="spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed",
        )
        used: dict[str, dict[str, float]] = {}
        for pod in pods:
            node = pod["spec"].get("nodeName")
            if node not in self._alloc:
                continue
            uid = pod["metadata"]["uid"]
            previous = self.node_of.setdefault(uid, node)
            if previous != node:
                self.moved.append(f"{pod['metadata']['name']}: {previous} -> {node}")
            slot = used.setdefault(node, {"cpu": 0.0, "memory": 0.0, "pods": 0.0})
            slot["pods"] += 1
            for container in pod["spec"]["containers"]:
                requests = (container.get("resources") or {}).get("requests") or {}
                for res in ("cpu", "memory"):
                    if res in requests:
                        slot[res] += _quantity(requests[res])
        for node, slot in used.items():
            for res, amount in slot.items():
                if amount > self._alloc[node][res] + 1e-9:
                    self.overcommitted_nodes.add(node)
                    if len(self.violations) < 100:
                        self.violations.append(f"{node}: {res} {amount} > {self._alloc[node][res]}")
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check_once()
            except Exception:  # an outage is not a finding; the next sample retries
                self.errors += 1
            self._stop.wait(self.interval_s)


# --- evidence of bindings ---------------------------------------------------------------------


def _posix(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def scheduled_events(core_v1: client.CoreV1Api, namespace: str) -> dict[str, list[float]]:
    """Pod name -> ``eventTime`` (POSIX) of each ``Scheduled`` Event in the namespace."""
    times: dict[str, list[float]] = {}
    token = None
    while True:
        kwargs: dict[str, Any] = {
            "field_selector": "reason=Scheduled",
            "limit": 2000,
            "_preload_content": False,
            "_request_timeout": (5, 60),
        }
        if token:
            kwargs["_continue"] = token
        page = json.loads(core_v1.list_namespaced_event(namespace, **kwargs).data)
        for event in page["items"]:
            if event.get("reason") == "Scheduled":
                stamp = event.get("eventTime") or event.get("lastTimestamp") or ""
                name = event["involvedObject"]["name"]
                times.setdefault(name, []).append(_posix(stamp) if stamp else 0.0)
        token = page["metadata"].get("continue")
        if not token:
            return times


def events_by_reason(core_v1: client.CoreV1Api, namespace: str, reason: str) -> list[dict]:
    resp = core_v1.list_namespaced_event(
        namespace,
        field_selector=f"reason={reason}",
        _preload_content=False,
        _request_timeout=(5, 60),
    )
    return [e for e in json.loads(resp.data)["items"] if e.get("reason") == reason]


def log_records(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    """Every JSON record of the daemons' logs (non-JSON lines, e.g. tracebacks, skipped)."""
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("{"):
                try:
                    yield json.loads(line)
                except ValueError:
                    continue


def bound_log_lines(paths: Iterable[Path], namespace: str) -> dict[str, list[float]]:
    """Pod name -> timestamps of its ``bound`` records (successful Binding calls) in the logs."""
    out: dict[str, list[float]] = {}
    prefix = f"{namespace}/"
    for record in log_records(paths):
        pod = str(record.get("pod", ""))
        if record.get("event") == "bound" and pod.startswith(prefix):
            out.setdefault(pod[len(prefix) :], []).append(_posix(record["timestamp"]))
    return out


def bound_timestamps(paths: Iterable[Path]) -> list[float]:
    """POSIX times of every ``bound`` record in the logs, sorted."""
    out = []
    for record in log_records(paths):
        if record.get("event") == "bound" and "timestamp" in record:
            out.append(_posix(record["timestamp"]))
    return sorted(out)


def count_log_events(paths: Iterable[Path], event: str) -> int:
    return sum(1 for r in log_records(paths) if r.get("event") == event)


# --- metrics ------------------------------------------------------------------------------------


def metric(text: str, name: str, labels: str = "") -> float:
    """Value of one sample (``labels`` as exposed, e.g. ``'reason="conflict"'``), 0 if absent."""
    return devcluster.metric_sample(text, f"{name}{{{labels}}}" if labels else name, default=0.0)


def metric_sum(text: str, name: str) -> float:
    """Sum of every sample of a labelled family."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.split()[-1])
    return total


def labelled(text: str, name: str, label: str) -> dict[str, float]:
    """``{label value: sample}`` of one labelled family, summed over its other labels."""
    out: dict[str, float] = {}
    pattern = re.compile(rf"^{re.escape(name)}\{{(.*)\}} (\S+)$")
    for line in text.splitlines():
        match = pattern.match(line)
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if label in labels:
            out[labels[label]] = out.get(labels[label], 0.0) + float(match.group(2))
    return out


@dataclass
class HistogramSummary:
    count: int
    mean_s: float
    max_bucket_s: float | None
    """Upper bound of the highest non-empty bucket (``None``: above the largest bound)."""
    p50_bucket_s: float | None
    p99_bucket_s: float | None


def histogram(text: str, name: str) -> HistogramSummary:
    buckets: list[tuple[float, float]] = []
    for line in text.splitlines():
        if line.startswith(f'{name}_bucket{{le="'):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(bound), float(line.split()[-1])))
    count = int(metric(text, f"{name}_count"))
    total = metric(text, f"{name}_sum")
    buckets.sort()

    def quantile(q: float) -> float | None:
        for bound, cumulative in buckets:
            if cumulative >= q * count:
                return None if bound == float("inf") else bound
        return None

    return HistogramSummary(
        count=count,
        mean_s=total / count if count else 0.0,
        max_bucket_s=quantile(1.0) if count else 0.0,
        p50_bucket_s=quantile(0.5) if count else 0.0,
        p99_bucket_s=quantile(0.99) if count else 0.0,
    )


# --- the verdict ---------------------------------------------------------------------------------


@dataclass
class Verdict:
    """What a scenario measured against the invariants.

    ``double_bound``: more than one Scheduled Event or ``bound`` log record, or seen on two
    nodes. ``missing_events``: bound without a Scheduled Event (Events are best effort).
    ``unattested``: bound with neither an Event nor a ``bound`` record, which only a SIGKILL
    right after the Binding call can explain. ``event_lag``: Event time minus log time.
    """

    pods: int
    succeeded: int
    bound: int
    lost: list[str] = field(default_factory=list)
    double_bound: list[str] = field(default_factory=list)
    missing_events: list[str] = field(default_factory=list)
    unattested: list[str] = field(default_factory=list)
    overcommitted_nodes: list[str] = field(default_factory=list)
    capacity_violations: list[str] = field(default_factory=list)
    capacity_samples: int = 0
    capacity_sample_errors: int = 0
    event_lag_p50_s: float | None = None
    event_lag_max_s: float | None = None

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("lost", "double_bound", "missing_events", "unattested", "overcommitted_nodes"):
            data[f"{key}_count"] = len(data[key])
            data[key] = data[key][:20]
        data["capacity_violations"] = data["capacity_violations"][:10]
        return data


def verify(
    core_v1: client.CoreV1Api,
    namespace: str,
    expected: Sequence[str],
    monitor: CapacityMonitor,
    logs: Iterable[Path],
    *,
    must_succeed: bool = True,
) -> Verdict:
    """Check the invariants for the pods named ``expected`` (see the module docstring)."""
    pods = {p["metadata"]["name"]: p for p in patiently(lambda: list_pods(core_v1, namespace))}
    events = patiently(lambda: scheduled_events(core_v1, namespace))
    lines = bound_log_lines(list(logs), namespace)
    verdict = Verdict(pods=len(expected), succeeded=0, bound=0)
    moved = {m.split(":", 1)[0] for m in monitor.moved}
    lags = []
    for name in expected:
        pod = pods.get(name)
        node = pod["spec"].get("nodeName") if pod else None
        phase = pod["status"].get("phase") if pod else None
        n_events, n_lines = len(events.get(name, ())), len(lines.get(name, ()))
        verdict.bound += bool(node)
        verdict.succeeded += phase == "Succeeded"
        if not node or (must_succeed and phase != "Succeeded"):
            verdict.lost.append(f"{name}: node={node} phase={phase}")
        if n_events > 1 or n_lines > 1 or name in moved:
            verdict.double_bound.append(f"{name}: events={n_events} log={n_lines}")
        if node and n_events == 0:
            verdict.missing_events.append(name)
            if n_lines == 0:
                verdict.unattested.append(name)
        if n_events == 1 and n_lines == 1:
            lags.append(events[name][0] - lines[name][0])
    if lags:
        lags.sort()
        verdict.event_lag_p50_s = round(lags[len(lags) // 2], 3)
        verdict.event_lag_max_s = round(lags[-1], 3)
    verdict.overcommitted_nodes = sorted(monitor.overcommitted_nodes)
    verdict.capacity_violations = list(monitor.violations)
    verdict.capacity_samples = monitor.samples
    verdict.capacity_sample_errors = monitor.errors
    return verdict


def assert_invariants(
    verdict: Verdict, *, max_unattested: int = 0, max_missing_events: int | None = 0
) -> None:
    """Fail on a lost pod, a double binding, an overcommitted node, or missing evidence.

    ``max_missing_events=None`` only reports pods without a Scheduled Event (scenarios whose
    faults can legitimately lose best-effort Events).
    """
    assert verdict.lost == [], f"{len(verdict.lost)} pods lost: {verdict.lost[:10]}"
    assert verdict.double_bound == [], f"bound more than once: {verdict.double_bound[:10]}"
    assert verdict.overcommitted_nodes == [], verdict.capacity_violations[:10]
    assert verdict.capacity_samples >= 3, "the capacity monitor barely sampled"
    assert len(verdict.unattested) <= max_unattested, (
        f"{len(verdict.unattested)} pods bound with neither a Scheduled Event nor a bound "
        f"record (allowed {max_unattested}): {verdict.unattested[:10]}"
    )
    if max_missing_events is not None:
        assert len(verdict.missing_events) <= max_missing_events, (
            f"{len(verdict.missing_events)} bound pods without a Scheduled Event "
            f"(allowed {max_missing_events}): {verdict.missing_events[:10]}"
        )


# --- the report ----------------------------------------------------------------------------------


def report_path() -> Path:
    raw = os.environ.get("WFSCHED_RELIABILITY_REPORT")
    return Path(raw) if raw else REPO / "build" / "reliability.json"


def _machine() -> dict[str, Any]:
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "control_plane": devcluster.read_versions(),
    }


def _update_report(change: Callable[[dict[str, Any], str], None]) -> None:
    """Read-modify-write the report file under a lock; ``change(data, now)`` edits it."""
    path = report_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with open(path.with_suffix(path.suffix + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
        change(data, now)
        data["updated_at"] = now
        data["machine"] = _machine()
        path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def record(scenario: str, outcome: Mapping[str, Any]) -> None:
    """Merge one scenario's measured outcome into the report file."""

    def change(data: dict[str, Any], now: str) -> None:
        data.setdefault("scenarios", {})[scenario] = {**outcome, "recorded_at": now}

    _update_report(change)


def record_tests(
    outcomes: Mapping[str, Mapping[str, str]],
    *,
    wall_s: float,
    args: list[str],
    known: Iterable[str] = (),
    files: Iterable[str] = (),
) -> None:
    """Merge test outcomes, and the run's wall time keyed by its arguments, into the report.

    Entries of the collected ``files`` that are no longer ``known`` (renamed or removed tests)
    are dropped.
    """
    known, files = set(known), set(files)

    def change(data: dict[str, Any], now: str) -> None:
        tests = data.setdefault("tests", {})
        for nodeid in list(tests):
            if nodeid.split("::", 1)[0] in files and nodeid not in known:
                del tests[nodeid]
        tests.update({k: dict(v) for k, v in outcomes.items()})
        data.setdefault("runs", {})[" ".join(args)] = {
            "finished_at": now,
            "wall_s": round(wall_s, 1),
            "tests_run": len(outcomes),
            "args": args,
        }

    _update_report(change)
