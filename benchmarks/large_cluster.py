"""5,000 nodes and 30,000 pods: wfsched versus kube-scheduler on one large local cluster.

    .venv/bin/python benchmarks/large_cluster.py [--nodes 5000] [--pods 30000] [--rounds 3]
        [--qps 500] [--burst 1000] [--policy rank_min-roundrobin] [--quick]
        [--profile FILE] [--only wfsched|kube-scheduler] [--json]

Starts the local control plane sized for ``--nodes`` KWOK nodes (``ClusterOptions.for_nodes``:
node Leases off, more KWOK workers) with kube-scheduler, and creates the nodes (32 CPU,
256 GiB, 110 pods each). Each round, for each scheduler in turn (alternating which goes
first), with both schedulers stopped: create ``--pods`` pods in a fresh namespace, two thirds
in workflow runs (50 tasks in 5 steps of 10, every task naming the tasks of the step before in
``wfsched.io/depends-on``, all created up front) and one third singletons, with mixed CPU and
memory requests; then start the scheduler (wfsched: the real daemon, ``python -m scheduler
run``, as a subprocess) and watch until every pod is bound. Both schedulers get the same client
budget (``--qps``/``--burst``). Progress is printed every 10 s.

Per run: throughput (pods bound per second from the first binding to the last, as
``throughput.py`` measures it), the time from the scheduler's start to its last binding, CPU
seconds per 1,000 bindings (``utime + stime`` of the scheduler's process from
``/proc/<pid>/stat``, start to last binding), the scheduler's RSS when all pods are bound and
its peak (``VmHWM``), the API server's CPU over the run, and what the API server served
meanwhile (requests and seconds by verb and resource, from its request histogram). At the end:
the wfsched / kube-scheduler throughput ratio of every round. ``--quick`` is a small size (200
nodes, 1,000 pods) that runs in a few minutes. ``--profile FILE`` samples wfsched with py-spy
in every round (it costs the daemon a little CPU: profile in a run whose figures you do not
report).

Wall time is dominated by the API server creating and deleting pods, which the benchmark does
while no scheduler runs: on the shared 2-core build machine ~40-60 pods/s each way.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config
from prometheus_client.parser import text_string_to_metric_families

from scheduler.devtools import devcluster, hostload

RUN_TASKS = 50
"""Tasks of one workflow run: ``RUN_STEPS`` steps of ``RUN_TASKS // RUN_STEPS`` tasks."""
RUN_STEPS = 5
SCHEDULERS = ("wfsched", "kube-scheduler")
_CPU_REQUESTS = ("100m", "250m", "500m")
_MEMORY_REQUESTS = ("128Mi", "256Mi", "512Mi")


@dataclass(frozen=True, slots=True)
class Size:
    """What one benchmark run creates."""

    nodes: int
    pods: int
    rounds: int
    qps: int
    burst: int
    policy: str


@dataclass(slots=True)
class RunFigures:
    """What one scheduler did in one round."""

    scheduler: str
    round: int
    pods: int
    pods_per_s: float
    start_to_last_bind_s: float
    cpu_s: float
    cpu_s_per_1000_binds: float
    rss_bytes: int
    peak_rss_bytes: int
    apiserver_cpu_s: float
    watch_restarts: int
    apiserver_requests: list[tuple[str, int, float]]
    """What the API server served from the scheduler's start to its last binding (the
    scheduler's requests, KWOK's and this benchmark's watch): :func:`request_delta`."""


def workload(pods: int, scheduler: str) -> Iterator[dict[str, Any]]:
    """The benchmark's pods: two thirds in workflow runs of ``RUN_TASKS``, the rest singletons.

    The same ``pods`` give the same objects for both schedulers except ``schedulerName``.
    """
    in_runs = (pods * 2 // 3) // RUN_TASKS * RUN_TASKS
    per_step = RUN_TASKS // RUN_STEPS
    for i in range(pods):
        labels: dict[str, str] = {"bench": "large-cluster"}
        annotations: dict[str, str] = {}
        if i < in_runs:
            run, task = divmod(i, RUN_TASKS)
            step = task // per_step
            labels |= {
                "wfsched.io/run-id": f"run-{run}",
                "wfsched.io/workflow": "large-cluster-bench",
                "wfsched.io/step": f"step-{step}",
            }
            annotations["wfsched.io/task-id"] = f"t{task}"
            if step:
                parents = range((step - 1) * per_step, step * per_step)
                annotations["wfsched.io/depends-on"] = ",".join(f"t{p}" for p in parents)
        yield {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"p{i:06d}", "labels": labels, "annotations": annotations},
            "spec": {
                "schedulerName": scheduler,
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 0,
                "containers": [
                    {
                        "name": "c",
                        "image": "busybox",
                        "resources": {
                            "requests": {
                                "cpu": _CPU_REQUESTS[i % 3],
                                "memory": _MEMORY_REQUESTS[(i // 3) % 3],
                            }
                        },
                    }
                ],
            },
        }


RequestKey = tuple[str, str, str]
"""An API request kind as kube-apiserver counts it: verb, resource and subresource."""


def apiserver_requests(metrics_text: str) -> dict[RequestKey, tuple[float, float]]:
    """Requests served so far by kind, as (count, seconds spent), from kube-apiserver's
    ``/metrics`` text (``apiserver_request_duration_seconds``; WATCH and CONNECT are counted
    but their seconds are left at 0: they are long-lived, so their duration is not work).
    """
    totals: dict[RequestKey, list[float]] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "apiserver_request_duration_seconds":
            continue
        for sample in family.samples:
            if not sample.name.endswith(("_count", "_sum")):
                continue
            labels = sample.labels
            verb = labels.get("verb", "")
            key = (verb, labels.get("resource", ""), labels.get("subresource", ""))
            entry = totals.setdefault(key, [0.0, 0.0])
            if sample.name.endswith("_count"):
                entry[0] += sample.value
            elif verb not in ("WATCH", "CONNECT"):
                entry[1] += sample.value
    return {key: (count, seconds) for key, (count, seconds) in totals.items()}


def request_delta(
    before: dict[RequestKey, tuple[float, float]], after: dict[RequestKey, tuple[float, float]]
) -> list[tuple[str, int, float]]:
    """What the API server served between two :func:`apiserver_requests` readings: one row
    ``("VERB resource[/subresource]", requests, seconds)`` per kind that had any, the most
    seconds first."""
    rows = []
    for key, (count, seconds) in after.items():
        was_count, was_seconds = before.get(key, (0.0, 0.0))
        if count > was_count:
            verb, resource, subresource = key
            kind = f"{verb} {resource}" + (f"/{subresource}" if subresource else "")
            rows.append((kind, round(count - was_count), max(seconds - was_seconds, 0.0)))
    return sorted(rows, key=lambda row: (-row[2], -row[1], row[0]))


def served_text(rows: list[tuple[str, int, float]], top: int = 8) -> str:
    """The first ``top`` rows of :func:`request_delta` on one line."""
    return ", ".join(f"{kind} {count} ({seconds:.1f} s)" for kind, count, seconds in rows[:top])


def read_apiserver_requests(core: client.CoreV1Api) -> dict[RequestKey, tuple[float, float]]:
    """:func:`apiserver_requests` of the cluster ``core`` talks to."""
    api = core.api_client
    method, url, headers, body, _ = api.param_serialize(
        "GET", "/metrics", auth_settings=["BearerToken"]
    )
    response = api.call_api(method, url, header_params=headers, body=body, _request_timeout=60)
    response.read()
    return apiserver_requests(response.data.decode())


def create_pods(core: client.CoreV1Api, namespace: str, scheduler: str, pods: int) -> None:
    """Create the workload in ``namespace``, printing progress every 10 s."""
    created = 0
    lock = threading.Lock()
    began = last_print = time.monotonic()

    def create(body: dict[str, Any]) -> None:
        nonlocal created, last_print
        for attempt in range(5):
            try:
                core.create_namespaced_pod(namespace, body, _preload_content=False)
                break
            except client.ApiException as exc:
                if exc.status == 409 or attempt == 4 or exc.status < 429:
                    raise
                time.sleep(0.5)
        with lock:
            created += 1
            now = time.monotonic()
            if now - last_print >= 10:
                last_print = now
                print(f"    created {created}/{pods} ({created / (now - began):.0f}/s)", flush=True)

    pool = ThreadPoolExecutor(max_workers=16)
    try:
        list(pool.map(create, workload(pods, scheduler)))
    finally:  # on Ctrl-C, drop the creations not started yet
        pool.shutdown(wait=True, cancel_futures=True)
    print(f"    created {pods} pods in {time.monotonic() - began:.1f}s", flush=True)


class BindWatch:
    """Watches a namespace's bound pods (``spec.nodeName!=``) and records when each was first
    seen bound, on this process's monotonic clock. JSON lines are decoded without the client's
    models, so the observer costs little CPU beside the schedulers. When the API server ends
    the watch (it drops watchers that fall behind), the bound pods are listed (those not seen
    yet are recorded at that moment) and the watch resumes from the list; ``restarts`` counts
    how often."""

    def __init__(self, core: client.CoreV1Api, namespace: str, expected: int) -> None:
        self.bound: dict[str, float] = {}
        self.done = threading.Event()
        self.restarts = 0
        self.error: Exception | None = None
        self._core = core
        self._namespace = namespace
        self._expected = expected
        self._stopped = False
        self._response = self._open(self._list_bound())
        self._thread = threading.Thread(target=self._observe, daemon=True)
        self._thread.start()

    def _list_bound(self) -> str:
        """Record the bound pods not seen yet; return the list's resource version."""
        listing = self._core.list_namespaced_pod(
            self._namespace, field_selector="spec.nodeName!=", _preload_content=False
        )
        body = json.loads(listing.data)
        now = time.monotonic()
        for pod in body["items"]:
            self._record(pod["metadata"]["name"], now)
        return str(body["metadata"]["resourceVersion"])

    def _open(self, version: str) -> Any:
        return self._core.list_namespaced_pod(
            self._namespace,
            watch=True,
            field_selector="spec.nodeName!=",
            resource_version=version,
            timeout_seconds=3600,
            _preload_content=False,
        )

    def _record(self, name: str, when: float) -> None:
        if name not in self.bound:
            self.bound[name] = when
            if len(self.bound) >= self._expected:
                self.done.set()

    def _observe(self) -> None:
        failures = 0
        while not self.done.is_set() and not self._stopped:
            try:
                self._read_events()
                if self.done.is_set() or self._stopped:
                    return
                self.restarts += 1
                self._response = self._open(self._list_bound())
                failures = 0
            except Exception as exc:  # closed by stop(), or broken: retry a few times
                if self._stopped:
                    return
                failures += 1
                if failures > 10:
                    self.error = exc
                    self.done.set()
                    return
                time.sleep(1)
                with contextlib.suppress(Exception):
                    self._response = self._open(self._list_bound())

    def _read_events(self) -> None:
        buffer = b""
        for chunk in self._response.stream(amt=None, decode_content=False):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if not line:
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    return  # e.g. 410 Gone: list again and resume
                self._record(event["object"]["metadata"]["name"], time.monotonic())
                if self.done.is_set():
                    return

    def stop(self) -> None:
        """Close the watch."""
        self._stopped = True
        self._response.close()


def delete_pods(core: client.CoreV1Api, namespace: str) -> None:
    """Delete every pod of ``namespace`` and wait until none is left.

    The API server ends a DeleteCollection with its request timeout (1 minute, answering 504)
    and stops deleting there: at 30,000 pods that is about a third of them. So the call is sent
    again, as long as one is cut short and pods are left.
    """
    began = time.monotonic()
    complete = False
    while True:
        if not complete:
            try:
                core.delete_collection_namespaced_pod(
                    namespace, grace_period_seconds=0, _request_timeout=120
                )
                complete = True
            except client.ApiException as exc:
                if exc.status != 504:
                    raise
        listing = core.list_namespaced_pod(namespace, limit=1, _preload_content=False)
        body = json.loads(listing.data)
        if not body["items"]:
            break
        if not complete:
            left = 1 + int(body["metadata"].get("remainingItemCount") or 0)
            print(
                f"    {left} pods left after {time.monotonic() - began:.0f}s, deleting again",
                flush=True,
            )
        time.sleep(1)
    print(f"    deleted in {time.monotonic() - began:.1f}s", flush=True)


@dataclass(slots=True)
class Contender:
    """One scheduler under test: how to start and stop it and which process it is."""

    label: str
    scheduler_name: str
    start: Callable[[], None]
    stop: Callable[[], object]
    pid: Callable[[], int]


def run_once(
    core: client.CoreV1Api,
    cluster: devcluster.DevCluster,
    contender: Contender,
    pods: int,
    round_no: int,
    *,
    profile: Path | None = None,
) -> RunFigures:
    """Create the workload, start ``contender``, wait for every binding, stop it.

    With ``profile``, py-spy samples the scheduler's process into that file (collapsed
    stacks) from its start to its last binding.
    """
    namespace = f"large-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": namespace}})
    print(f"round {round_no} {contender.label}: creating {pods} pods", flush=True)
    create_pods(core, namespace, contender.scheduler_name, pods)
    watch = BindWatch(core, namespace, pods)
    apiserver = cluster.pid("kube-apiserver")
    apiserver_cpu = hostload.process_cpu_seconds(apiserver)
    requests_before = read_apiserver_requests(core)
    started = time.monotonic()
    contender.start()
    pid = contender.pid()
    profiler = _start_profiler(pid, profile) if profile is not None else None
    last_print = started
    try:
        while not watch.done.wait(timeout=1) or watch.error is not None:
            if watch.error is not None:
                raise RuntimeError(f"{contender.label}: the bind watch broke") from watch.error
            now = time.monotonic()
            if now - started > 1800:
                raise RuntimeError(f"{contender.label}: only {len(watch.bound)}/{pods} bound")
            if now - last_print >= 10:
                last_print = now
                print(
                    f"    {contender.label}: {len(watch.bound)}/{pods} bound after "
                    f"{now - started:.0f}s, RSS "
                    f"{devcluster.process_memory_bytes(pid) / 2**20:.0f} MiB",
                    flush=True,
                )
        cpu = hostload.process_cpu_seconds(pid)
        rss = devcluster.process_memory_bytes(pid)
        peak = devcluster.process_memory_bytes(pid, "VmHWM")
        apiserver_cpu = hostload.process_cpu_seconds(apiserver) - apiserver_cpu
        requests = request_delta(requests_before, read_apiserver_requests(core))
    finally:
        watch.stop()
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=60)
        contender.stop()
    first, last = min(watch.bound.values()), max(watch.bound.values())
    figures = RunFigures(
        scheduler=contender.label,
        round=round_no,
        pods=pods,
        pods_per_s=(pods - 1) / max(last - first, 1e-9),
        start_to_last_bind_s=last - started,
        cpu_s=cpu,
        cpu_s_per_1000_binds=cpu * 1000 / pods,
        rss_bytes=rss,
        peak_rss_bytes=peak,
        apiserver_cpu_s=apiserver_cpu,
        watch_restarts=watch.restarts,
        apiserver_requests=requests,
    )
    print(
        f"round {round_no} {contender.label:<15} {figures.pods_per_s:7.1f} pods/s, "
        f"last bind {figures.start_to_last_bind_s:6.1f}s after start, "
        f"{figures.cpu_s_per_1000_binds:5.2f} CPU-s/1000 binds, "
        f"RSS {rss / 2**20:6.1f} MiB (peak {peak / 2**20:6.1f}), "
        f"apiserver {apiserver_cpu:6.1f} CPU-s, watch restarts {watch.restarts}",
        flush=True,
    )
    print(f"    apiserver served: {served_text(requests)}", flush=True)
    delete_pods(core, namespace)
    return figures


def _start_profiler(pid: int, output: Path) -> subprocess.Popen[bytes]:
    """py-spy recording ``pid`` at 50 samples/s without pausing it, idle threads left out."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        raise RuntimeError("--profile needs py-spy (pip install py-spy)")
    return subprocess.Popen(
        [
            *(py_spy, "record", "--pid", str(pid), "--rate", "50", "--nonblocking"),
            *("--format", "raw", "--output", str(output)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def profile_summary(collapsed: list[Path], top: int = 15) -> dict[str, list[tuple[str, float]]]:
    """The share of samples per function from py-spy's collapsed stacks (outermost frame
    first): where the time is spent (``self``: the innermost frame) and what it is spent under
    (``inclusive``, each function counted once per sample)."""
    own: Counter[str] = Counter()
    under: Counter[str] = Counter()
    busy_under: Counter[str] = Counter()
    total = busy = 0
    lines = [line for path in collapsed for line in path.read_text().splitlines()]
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_frame_name(f) for f in stack.split(";")]
        own[frames[-1]] += count
        for frame in set(frames):
            under[frame] += count
        if not frames[-1].startswith(_WAITING_FRAMES):
            busy += count
            for frame in set(frames):
                busy_under[frame] += count
    return {
        "self": [(f, n / max(total, 1)) for f, n in own.most_common(top)],
        "inclusive": [(f, n / max(total, 1)) for f, n in under.most_common(top * 3)],
        "busy_inclusive": [(f, n / max(busy, 1)) for f, n in busy_under.most_common(top * 3)],
        "samples": [("all", float(total)), ("busy", float(busy))],
    }


_WAITING_FRAMES = (
    "SSLSocket.read",
    "SSLSocket.recv_into",
    "SSLSocket.send",
    "Condition.wait",
    "poll_wait_for_socket",
)
"""Innermost frames of a thread waiting on a socket or a lock, not computing: left out of
``busy_inclusive``."""


def _frame_name(frame: str) -> str:
    """``func (path/to/module.py:12)`` -> ``func (module.py)``: lines merged."""
    name, _, where = frame.partition(" (")
    module = where.rsplit(":", 1)[0].rsplit("/", 2)
    return f"{name} ({'/'.join(module[-2:])})"


def run_rounds(
    cluster: devcluster.DevCluster,
    workdir: Path,
    size: Size,
    *,
    extra_settings: dict[str, Any] | None = None,
    profile: Path | None = None,
    schedulers: tuple[str, ...] = SCHEDULERS,
) -> dict[str, Any]:
    """Run ``size.rounds`` alternating rounds on a started ``cluster`` (with kube-scheduler
    configured at ``size.qps``/``size.burst``, stopped or not) whose nodes exist; return the
    summary (every run's figures and the per-round throughput ratios).

    With ``profile`` (``DIR/NAME.txt``), py-spy samples wfsched in every round (50 Hz,
    without pausing it: ``NAME-round<N>.txt``) and the summary gets the top frames of all.
    ``schedulers`` may leave one out (then there are no ratios): e.g. wfsched's memory at a
    size too slow to run both.
    """
    cfg = client.Configuration()
    config.load_kube_config(str(cluster.kubeconfig), client_configuration=cfg)
    cfg.connection_pool_maxsize = 32
    core = client.CoreV1Api(client.ApiClient(cfg))
    settings: dict[str, Any] = {
        "policy": size.policy,
        "qps": size.qps,
        "burst": size.burst,
        "lease": {"enabled": False},
        "log_level": "warning",
        **(extra_settings or {}),
    }
    daemon = devcluster.LocalDaemon(str(cluster.kubeconfig), workdir, **settings)

    def daemon_pid() -> int:
        assert daemon.proc is not None
        return daemon.proc.pid

    contenders = {
        "wfsched": Contender(
            "wfsched",
            "workflow-scheduler",
            lambda: daemon.start(wait_ready_s=600),
            daemon.stop,
            daemon_pid,
        ),
        "kube-scheduler": Contender(
            "kube-scheduler",
            "default-scheduler",
            lambda: cluster.start_component("kube-scheduler"),
            lambda: cluster.stop_component("kube-scheduler"),
            lambda: cluster.pid("kube-scheduler"),
        ),
    }
    cluster.stop_component("kube-scheduler")
    runs: list[RunFigures] = []
    profiles: list[Path] = []
    for round_no in range(1, size.rounds + 1):
        order = ["wfsched", "kube-scheduler"] if round_no % 2 else ["kube-scheduler", "wfsched"]
        for label in (name for name in order if name in schedulers):
            sampled = None
            if profile is not None and label == "wfsched":
                sampled = profile.with_name(f"{profile.stem}-round{round_no}{profile.suffix}")
                profiles.append(sampled)
            runs.append(
                run_once(core, cluster, contenders[label], size.pods, round_no, profile=sampled)
            )
    profiled: dict[str, Any] = {}
    if profiles:
        profiled = {"profile": profile_summary(profiles), "profiles": [str(p) for p in profiles]}
    by_round = {
        r: {f.scheduler: f for f in runs if f.round == r} for r in range(1, size.rounds + 1)
    }
    ratios = [
        by_round[r]["wfsched"].pods_per_s / by_round[r]["kube-scheduler"].pods_per_s
        for r in sorted(by_round)
        if len(by_round[r]) == len(SCHEDULERS)
    ]
    return {
        **asdict(size),
        "commit": _commit(),
        "runs": [asdict(f) for f in runs],
        "throughput_ratios": ratios,
        "throughput_ratio_median": statistics.median(ratios) if ratios else None,
        **profiled,
    }


def _commit() -> str:
    out = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parent,
    )
    return out.stdout.strip() or "unknown"


def print_table(summary: dict[str, Any]) -> None:
    """The per-round table of docs/benchmarks.md, as Markdown."""
    print(
        f"\n{summary['nodes']} nodes, {summary['pods']} pods, QPS {summary['qps']} burst "
        f"{summary['burst']}, wfsched {summary['policy']}, commit {summary['commit']}\n"
    )
    print(
        "| round | scheduler | pods/s | start to last bind | CPU-s / 1000 binds "
        "| RSS at end (peak) | API server CPU-s |"
    )
    print("|---|---|---|---|---|---|---|")
    for run in summary["runs"]:
        print(
            f"| {run['round']} | {run['scheduler']} | {run['pods_per_s']:.1f} "
            f"| {run['start_to_last_bind_s']:.1f} s | {run['cpu_s_per_1000_binds']:.2f} "
            f"| {run['rss_bytes'] / 2**20:.0f} MiB ({run['peak_rss_bytes'] / 2**20:.0f} MiB) "
            f"| {run['apiserver_cpu_s']:.1f} |"
        )
    print(
        "\nWhat the API server served in each run (requests, seconds spent), most seconds first:\n"
    )
    for run in summary["runs"]:
        print(
            f"- round {run['round']} {run['scheduler']}: {served_text(run['apiserver_requests'])}"
        )
    if summary["throughput_ratios"]:
        ratios = ", ".join(f"{r:.2f}" for r in summary["throughput_ratios"])
        print(f"\nthroughput wfsched / kube-scheduler per round: {ratios}")
    if "profile" in summary:
        profile = summary["profile"]
        print(f"\nwfsched profile, {profile['samples'][0][1]:.0f} samples; innermost frames:")
        for frame, share in profile["self"]:
            print(f"  {share:6.1%}  {frame}")
        print("frames the time is spent under:")
        for frame, share in profile["inclusive"]:
            print(f"  {share:6.1%}  {frame}")
        print(f"the same over the {profile['samples'][1][1]:.0f} samples not waiting on I/O:")
        for frame, share in profile["busy_inclusive"]:
            print(f"  {share:6.1%}  {frame}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--pods", type=int, default=30000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--qps", type=int, default=500)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--policy", default="rank_min-roundrobin", help="wfsched's strategy")
    parser.add_argument("--quick", action="store_true", help="200 nodes, 1,000 pods")
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy samples wfsched in each round; collapsed stacks in PROFILE-round<N>",
    )
    parser.add_argument(
        "--only",
        choices=SCHEDULERS,
        help="run one scheduler alone (its memory and CPU at a size too slow to run both)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    args = parser.parse_args(argv)
    if args.quick:
        args.nodes, args.pods = 200, 1000
    if args.nodes < 1 or args.pods < 1 or args.rounds < 1:
        parser.error("--nodes, --pods and --rounds must be at least 1")
    size = Size(args.nodes, args.pods, args.rounds, args.qps, args.burst, args.policy)
    # A benchmark started in the background ignores SIGINT: SIGTERM stops it cleanly instead.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="wfsched-large-") as scratch:
        workdir = Path(scratch)
        cluster = devcluster.DevCluster(
            workdir / "cluster",
            devcluster.ClusterOptions.for_nodes(
                size.nodes,
                metrics_server=False,
                kube_scheduler=True,
                kube_scheduler_qps=size.qps,
                kube_scheduler_burst=size.burst,
            ),
        )
        cluster.start(build_missing=True)
        try:
            started = time.monotonic()
            cluster.create_nodes(size.nodes, cpu="32", memory="256Gi", pods=110)
            print(
                f"{size.nodes} nodes ready in {time.monotonic() - started:.1f}s; "
                f"etcd RSS {devcluster.process_memory_bytes(cluster.pid('etcd')) / 2**20:.0f} MiB,"
                f" kube-apiserver RSS "
                f"{devcluster.process_memory_bytes(cluster.pid('kube-apiserver')) / 2**20:.0f} MiB",
                flush=True,
            )
            summary = run_rounds(
                cluster,
                workdir,
                size,
                profile=args.profile,
                schedulers=(args.only,) if args.only else SCHEDULERS,
            )
            summary["cluster_rss_bytes"] = {
                name: devcluster.process_memory_bytes(pid)
                for name, pid in cluster.running_components().items()
            }
        finally:
            cluster.stop()
    summary["wall_s"] = time.monotonic() - began
    print_table(summary)
    print(f"whole benchmark: {summary['wall_s'] / 60:.1f} min", file=sys.stderr)
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
