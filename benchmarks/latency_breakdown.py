"""Where a task's time goes: per-stage latency of wfsched and kube-scheduler in one run.

    .venv/bin/python benchmarks/latency_breakdown.py [INSTANCE ...] [--time-scale 0.1]
        [--nodes 2 --node-cpu 4 --node-memory 16Gi] [--strategy fifo-roundrobin]
        [--rounds 2] [--json]

Each WfFormat instance (default: ``nextflow-rnaseq``) is replayed with ``wfsched replay``'s
driver on one small KWOK cluster, once under kube-scheduler and once under a fresh wfsched
daemon per round, alternating which goes first. The same observer measures both: a watch over
the run's namespace stamps, with one local wall clock, when each pod was first seen created,
bound, running and finished. From those stamps, per task:

- ``engine``: the last parent seen finished to the task's pod seen created (the replay driver
  polls every 0.25 s: the workflow engine's share, the same for both schedulers);
- ``created->bound``: what the scheduler adds (including waiting for room on a node);
- ``placement (room free)``: ``created->bound`` of the pods that, when seen created, had no
  earlier pod still waiting and fitted on some node by the observer's own accounting (requests
  of pods seen bound and not yet seen finished): the scheduler's pure overhead, no queueing;
- ``bound->running`` and ``run overrun`` (running to finished minus the nominal runtime): the
  fake kubelet's share;
- ``refill``: a pod seen finished while other pods waited, to the next pod seen bound (how
  fast freed room is used again).

For wfsched, the daemon's garbage-collection pauses (``wfsched_gc_pause_seconds``) and its own
per-stage histograms (``wfsched_pod_stage_duration_seconds``,
scraped from its ``/metrics`` at the end of each run) split ``created->bound`` further: watch
delivery, event queue, queue wait, cycle, bind pool wait, rate-limiter wait, bind call, bind
report. Quantiles from histograms are interpolated within buckets, as ``histogram_quantile``.

``--arrival 20,200`` measures the latency tail instead (issue 18's figure): on
``--arrival-nodes`` large nodes, ``--arrival-pods`` single pods are created at each rate (eight
creating threads keep the pace) while one scheduler runs, both schedulers alternating with the
same client budget (``--qps``/``--burst``; kube-scheduler's raised through its configuration);
the latency is each create call's return to the observer seeing the pod bound, and for wfsched
the daemon's stage histograms show where its tail comes from.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import parser as prom_parser

from scheduler.core import resources as core_resources
from scheduler.devtools import devcluster, replay, simulate

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "wfinstances"
DEFAULT_INSTANCES = ("nextflow-rnaseq.json",)
STAGE_METRIC = "wfsched_pod_stage_duration_seconds"
GC_METRIC = "wfsched_gc_pause_seconds"
EXTERNAL_STAGES = (
    "engine",
    "created->bound",
    "placement (room free)",
    "bound->running",
    "run overrun",
    "refill",
)


@dataclass
class PodTimes:
    """Wall-clock times the observer first saw each state of one pod."""

    created: float = math.nan
    bound: float = math.nan
    running: float = math.nan
    finished: float = math.nan
    node: str = ""


@dataclass
class RunRecord:
    """One replay under one scheduler."""

    scheduler: str
    instance: str
    makespan_s: float
    stages: dict[str, list[float]]
    daemon_stages: dict[str, dict[str, float]] = field(default_factory=dict)


class PodObserver:
    """Stamp when each pod of a namespace is first seen created, bound, running, finished."""

    def __init__(self, kube: Any, namespace: str) -> None:
        self.pods: dict[str, PodTimes] = {}
        self._kube = kube
        self._namespace = namespace
        self._stop = threading.Event()
        self._stream: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.close()
        self._thread.join(5)

    def _run(self) -> None:
        resource_version = ""
        while not self._stop.is_set():
            try:
                if not resource_version:
                    _, resource_version = self._kube.list_objects("pods", namespace=self._namespace)
                self._stream = self._kube.open_watch(
                    "pods", namespace=self._namespace, resource_version=resource_version
                )
                for event in self._stream:
                    obj = event.get("object") or {}
                    self._observe(obj, time.time())
                    resource_version = (obj.get("metadata") or {}).get(
                        "resourceVersion", resource_version
                    )
            except Exception:  # a dropped watch is reopened from the last version seen
                if self._stop.is_set():
                    return
                time.sleep(0.1)

    def _observe(self, obj: Mapping[str, Any], now: float) -> None:
        name = str((obj.get("metadata") or {}).get("name") or "")
        if not name:
            return
        times = self.pods.setdefault(name, PodTimes())
        if math.isnan(times.created):
            times.created = now
        node = (obj.get("spec") or {}).get("nodeName")
        if node and math.isnan(times.bound):
            times.bound, times.node = now, str(node)
        phase = (obj.get("status") or {}).get("phase")
        if phase == "Running" and math.isnan(times.running):
            times.running = now
        if phase in ("Succeeded", "Failed") and math.isnan(times.finished):
            times.finished = now
            if math.isnan(times.running):
                times.running = now


def task_stages(
    plan: replay.ReplayPlan,
    pods: Mapping[str, PodTimes],
    node_room: tuple[int, int] | None = None,
) -> dict[str, list[float]]:
    """The observer's per-task stages (see the module docstring) for one finished replay.

    ``node_room`` is every node's (CPU millis, memory bytes); without it the ``placement (room
    free)`` stage stays empty.
    """
    by_id = {task.id: task for task in plan.tasks}
    stages: dict[str, list[float]] = {name: [] for name in EXTERNAL_STAGES}
    for task in plan.tasks:
        times = pods.get(task.pod_name)
        if times is None:
            continue
        if task.parents:
            ready = max(pods[by_id[p].pod_name].finished for p in task.parents)
            stages["engine"].append(times.created - ready)
        stages["created->bound"].append(times.bound - times.created)
        stages["bound->running"].append(times.running - times.bound)
        stages["run overrun"].append(times.finished - times.running - task.runtime_s)
    if node_room is not None:
        stages["placement (room free)"] = _placement_with_room(plan, pods, node_room)
    binds = sorted(t.bound for t in pods.values())
    for times in pods.values():
        finished = times.finished
        waiting = any(p.created <= finished < p.bound for p in pods.values())
        later = [b for b in binds if b > finished]
        if waiting and later:
            stages["refill"].append(later[0] - finished)
    return {name: [v for v in values if math.isfinite(v)] for name, values in stages.items()}


def _placement_with_room(
    plan: replay.ReplayPlan, pods: Mapping[str, PodTimes], node_room: tuple[int, int]
) -> list[float]:
    """``created->bound`` of pods that found no queue and room on a node when created."""
    tasks = [t for t in plan.tasks if t.pod_name in pods]
    found: list[float] = []
    for task in tasks:
        mine = pods[task.pod_name]
        at = mine.created
        if any(
            pods[o.pod_name].created < at <= pods[o.pod_name].bound for o in tasks if o is not task
        ):
            continue  # an earlier pod was still waiting: this one queued behind it
        used: dict[str, list[int]] = {}
        for other in tasks:
            times = pods[other.pod_name]
            if times.bound <= at < times.finished and times.node:
                room = used.setdefault(times.node, [0, 0])
                room[0] += other.cpu_millis
                room[1] += other.memory_bytes
        nodes = {t.node for t in pods.values() if t.node}
        if any(
            used.get(n, [0, 0])[0] + task.cpu_millis <= node_room[0]
            and used.get(n, [0, 0])[1] + task.memory_bytes <= node_room[1]
            for n in nodes
        ):
            found.append(mine.bound - at)
    return found


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank); NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def histogram_quantiles(
    text: str, metric: str, label: str, qs: Sequence[float]
) -> dict[str, dict[str, float]]:
    """Quantiles per ``label`` value of a histogram in an exposition (bucket interpolation)."""
    buckets: dict[str, list[tuple[float, float]]] = {}
    for family in prom_parser.text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == metric + "_bucket":
                buckets.setdefault(sample.labels[label], []).append(
                    (float(sample.labels["le"]), sample.value)
                )
    result: dict[str, dict[str, float]] = {}
    for value, points in buckets.items():
        points.sort()
        total = points[-1][1]
        row: dict[str, float] = {"count": total}
        for q in qs:
            row[f"p{round(q * 100)}"] = _bucket_quantile(points, q * total) if total else math.nan
        result[value] = row
    return result


def _bucket_quantile(points: Sequence[tuple[float, float]], rank: float) -> float:
    lower, below = 0.0, 0.0
    for upper, count in points:
        if count >= rank:
            if math.isinf(upper):
                return lower
            share = (rank - below) / (count - below) if count > below else 1.0
            return lower + (upper - lower) * share
        lower, below = upper, count
    return lower


def replay_once(
    cluster: devcluster.DevCluster,
    kube: Any,
    instance: simulate.Instance,
    scheduler_name: str,
    time_scale: float,
    node_room: tuple[int, int],
) -> tuple[float, dict[str, list[float]]]:
    """Replay ``instance`` in a fresh namespace; return the makespan and the observed stages."""
    namespace = f"lat-{uuid.uuid4().hex[:8]}"
    cluster.admin().apply(
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
    )
    plan = replay.ReplayPlan.from_instance(
        instance, scheduler_name=scheduler_name, time_scale=time_scale
    )
    observer = PodObserver(kube, namespace)
    observer.start()
    time.sleep(0.5)
    try:
        progress = replay.Replayer(plan, kube, namespace=namespace).run(timeout_s=3600)
        time.sleep(0.5)
    finally:
        observer.stop()
    assert progress.makespan_s is not None
    return progress.makespan_s, task_stages(plan, observer.pods, node_room)


def _print_table(records: Sequence[RunRecord]) -> None:
    by_scheduler: dict[str, dict[str, list[float]]] = {}
    for record in records:
        merged = by_scheduler.setdefault(record.scheduler, {})
        for stage, values in record.stages.items():
            merged.setdefault(stage, []).extend(values)
    print(f"\n{'stage (observer, ms)':<22}" + "".join(f"{s:>30}" for s in by_scheduler))
    print(" " * 22 + "".join(f"{'p50 / p90 / p99':>30}" for _ in by_scheduler))
    for stage in EXTERNAL_STAGES:
        cells = []
        for merged in by_scheduler.values():
            values = merged.get(stage, [])
            cells.append(
                " / ".join(f"{quantile(values, q) * 1000:.0f}" for q in (0.5, 0.9, 0.99))
                + f" (n={len(values)})"
            )
        print(f"{stage:<22}" + "".join(f"{c:>30}" for c in cells))
    daemon = [r for r in records if r.daemon_stages]
    if daemon:
        header = "".join(f"{k:>10}" for k in ("p50", "p90", "p99"))
        print(f"\n{'wfsched stage (ms)':<22}{header}{'count':>8}  (per run)")
        for record in daemon:
            for stage, row in record.daemon_stages.items():
                print(
                    f"{stage:<22}"
                    + "".join(f"{row[k] * 1000:>10.2f}" for k in ("p50", "p90", "p99"))
                    + f"{row['count']:>8.0f}"
                )
            print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("instances", nargs="*", type=Path)
    parser.add_argument("--time-scale", type=float, default=0.1)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--node-cpu", default="4")
    parser.add_argument("--node-memory", default="16Gi")
    parser.add_argument("--strategy", default="fifo-roundrobin")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print one JSON document at the end")
    parser.add_argument("--arrival", default="", help="pods/s rates, e.g. 20,200: the tail mode")
    parser.add_argument("--arrival-pods", type=int, default=1000)
    parser.add_argument("--arrival-nodes", type=int, default=100)
    parser.add_argument("--qps", type=int, default=500, help="client QPS of both (tail mode)")
    parser.add_argument("--burst", type=int, default=1000, help="client burst of both (tail mode)")
    parser.add_argument("--bind-workers", type=int, default=16, help="wfsched's (tail mode)")
    parser.add_argument(
        "--arrival-schedulers",
        default="kube-scheduler,wfsched",
        help=(
            "tail mode: which, in order (wfsched:N runs wfsched with N bind workers; "
            "wfsched@DIR runs the wfsched source tree in DIR, e.g. an export of an older "
            "commit, so two versions are compared in one run)"
        ),
    )
    args = parser.parse_args(argv)
    # The observer's own collections would delay its stamps (seen up to a second on a busy
    # machine): keep the start-up heap out of them and collect the young generation rarely.
    gc.freeze()
    gc.set_threshold(50_000, 50, 50)
    if args.arrival:
        return arrival_main(args)
    paths = args.instances or [DATA / name for name in DEFAULT_INSTANCES]
    instances = [simulate.load_instance(path) for path in paths]
    records: list[RunRecord] = []
    from scheduler.kube import client

    with tempfile.TemporaryDirectory(prefix="wfsched-latency-") as scratch:
        workdir = Path(scratch)
        cluster = devcluster.DevCluster(
            workdir / "cluster",
            devcluster.ClusterOptions(metrics_server=False, kube_scheduler=True),
        )
        cluster.start(build_missing=True)
        try:
            cluster.create_nodes(args.nodes, cpu=args.node_cpu, memory=args.node_memory)
            kube = client.KubeClient.connect(
                str(cluster.kubeconfig), qps=100, burst=200, pool_size=4
            )
            for instance in instances:
                for round_no in range(args.rounds):
                    order = ["kube-scheduler", "wfsched"]
                    if round_no % 2:
                        order.reverse()
                    for label in order:
                        record = _run(cluster, kube, workdir, instance, label, args)
                        records.append(record)
                        print(
                            f"round {round_no + 1} {instance.name} {label:<15} "
                            f"makespan {record.makespan_s:6.1f}s",
                            flush=True,
                        )
        finally:
            cluster.stop()
    _print_table(records)
    if args.json:
        print(json.dumps(_summary(records)))
    return 0


def _single_pod(name: str, scheduler_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": {devcluster.RUNTIME_ANNOTATION: "2s"}},
        "spec": {
            "schedulerName": scheduler_name,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "c",
                    "image": "busybox",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                }
            ],
        },
    }


def arrival_run(
    cluster: devcluster.DevCluster, kube: Any, scheduler_name: str, pods: int, rate: float
) -> list[float]:
    """Create ``pods`` pods at ``rate`` per second; return each one's create-to-bound seconds."""
    namespace = f"arr-{uuid.uuid4().hex[:8]}"
    cluster.admin().apply(
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
    )
    observer = PodObserver(kube, namespace)
    observer.start()
    time.sleep(0.5)
    created: dict[str, float] = {}
    began = time.time() + 0.2

    def create(i: int) -> None:
        delay = began + i / rate - time.time()
        if delay > 0:
            time.sleep(delay)
        name = f"p{i:05d}"
        kube.create_pod(namespace, _single_pod(name, scheduler_name))
        created[name] = time.time()

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(create, range(pods)))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if all(math.isfinite(observer.pods.get(n, PodTimes()).bound) for n in created):
                break
            time.sleep(0.2)
    finally:
        observer.stop()
    return [
        max(0.0, observer.pods[n].bound - t)
        for n, t in created.items()
        if n in observer.pods and math.isfinite(observer.pods[n].bound)
    ]


def arrival_main(args: argparse.Namespace) -> int:
    """The latency tail at each ``--arrival`` rate, both schedulers (see the module docstring)."""
    from scheduler.kube import client

    rates = [float(r) for r in args.arrival.split(",") if r]
    rows: list[dict[str, Any]] = []
    labels = [s for s in args.arrival_schedulers.split(",") if s]
    with tempfile.TemporaryDirectory(prefix="wfsched-latency-") as scratch:
        workdir = Path(scratch)
        cluster = devcluster.DevCluster(
            workdir / "cluster",
            devcluster.ClusterOptions(
                metrics_server=False,
                kube_scheduler=True,
                kube_scheduler_qps=args.qps,
                kube_scheduler_burst=args.burst,
            ),
        )
        cluster.start(build_missing=True)
        try:
            cluster.create_nodes(args.arrival_nodes, cpu="32", memory="256Gi", pods=110)
            cluster.stop_component("kube-scheduler")
            kube = client.KubeClient.connect(
                str(cluster.kubeconfig), qps=2000, burst=4000, pool_size=16
            )
            for round_no in range(args.rounds):
                for rate in rates:
                    order = list(labels)
                    if round_no % 2:
                        order.reverse()
                    for label in order:
                        row = _arrival_one(cluster, kube, workdir, label, rate, args)
                        rows.append(row | {"round": round_no + 1})
                        lat = row["latencies"]
                        print(
                            f"round {round_no + 1} {rate:g} pods/s {label:<15} n={len(lat)} "
                            f"p50 {quantile(lat, 0.5) * 1000:.0f} ms "
                            f"p90 {quantile(lat, 0.9) * 1000:.0f} ms "
                            f"p99 {quantile(lat, 0.99) * 1000:.0f} ms",
                            flush=True,
                        )
                        for stage, q in row["daemon_stages"].items():
                            print(
                                f"    {stage:<22}"
                                + " ".join(f"{k} {q[k] * 1000:8.2f}" for k in ("p50", "p99"))
                            )
        finally:
            cluster.stop()
    if args.json:
        print(
            json.dumps(
                [
                    {k: v for k, v in r.items() if k != "latencies"}
                    | {f"p{p}": quantile(r["latencies"], p / 100) for p in (50, 90, 99)}
                    for r in rows
                ]
            )
        )
    return 0


def _arrival_one(
    cluster: devcluster.DevCluster,
    kube: Any,
    workdir: Path,
    label: str,
    rate: float,
    args: argparse.Namespace,
) -> dict[str, Any]:
    row: dict[str, Any] = {"scheduler": label, "rate": rate, "daemon_stages": {}}
    if label == "kube-scheduler":
        cluster.start_component("kube-scheduler")
        try:
            row["latencies"] = arrival_run(
                cluster, kube, "default-scheduler", args.arrival_pods, rate
            )
        finally:
            cluster.stop_component("kube-scheduler")
        return row
    name, _, source = label.partition("@")
    daemon = devcluster.LocalDaemon(
        cluster.kubeconfig,
        workdir,
        policy=args.strategy,
        qps=args.qps,
        burst=args.burst,
        bind_workers=int(name.partition(":")[2] or args.bind_workers),
        lease={"enabled": False},
        log_level="warning",
    )
    if source:
        daemon.env = source_tree_environment(source)
    try:
        daemon.start(wait_ready_s=120)  # a loaded machine and a long first LIST
        row["latencies"] = arrival_run(cluster, kube, "workflow-scheduler", args.arrival_pods, rate)
        with urllib.request.urlopen(f"http://127.0.0.1:{daemon.port}/metrics", timeout=10) as r:
            text = r.read().decode()
    finally:
        daemon.stop()
    row["daemon_stages"] = histogram_quantiles(text, STAGE_METRIC, "stage", (0.5, 0.9, 0.99))
    for generation, q in histogram_quantiles(
        text, GC_METRIC, "generation", (0.5, 0.9, 0.99)
    ).items():
        row["daemon_stages"][f"gc pause gen{generation}"] = q
    return row


def source_tree_environment(source: str) -> dict[str, str]:
    """The daemon's environment when it should import ``scheduler`` from the tree ``source``.

    ``python -m`` puts the working directory first on ``sys.path``; ``PYTHONSAFEPATH`` turns
    that off, so ``PYTHONPATH`` decides which tree runs.
    """
    root = Path(source).resolve()
    if not (root / "scheduler" / "__init__.py").is_file():
        raise SystemExit(f"--arrival-schedulers: {root} holds no scheduler package")
    env = devcluster.daemon_environment()
    env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONSAFEPATH"] = "1"
    return env


def _room(args: argparse.Namespace) -> tuple[int, int]:
    return (
        core_resources.cpu_millis(args.node_cpu),
        core_resources.integer_value(args.node_memory),
    )


def _summary(records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """Makespans and per-stage p50/p90/p99 of every run (seconds), for ``--json``."""
    return [
        {
            "scheduler": r.scheduler,
            "instance": r.instance,
            "makespan_s": r.makespan_s,
            "stages": {
                stage: {f"p{round(q * 100)}": quantile(v, q) for q in (0.5, 0.9, 0.99)}
                | {"count": len(v)}
                for stage, v in r.stages.items()
            },
            "daemon_stages": r.daemon_stages,
        }
        for r in records
    ]


def _run(
    cluster: devcluster.DevCluster,
    kube: Any,
    workdir: Path,
    instance: simulate.Instance,
    label: str,
    args: argparse.Namespace,
) -> RunRecord:
    if label == "kube-scheduler":
        makespan, stages = replay_once(
            cluster, kube, instance, "default-scheduler", args.time_scale, _room(args)
        )
        return RunRecord(label, instance.name, makespan, stages)
    daemon = devcluster.LocalDaemon(
        cluster.kubeconfig, workdir, policy=args.strategy, lease={"enabled": False}
    )
    try:
        daemon.start(wait_ready_s=120)  # a loaded machine and a long first LIST
        makespan, stages = replay_once(
            cluster, kube, instance, "workflow-scheduler", args.time_scale, _room(args)
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{daemon.port}/metrics", timeout=10) as r:
            text = r.read().decode()
    finally:
        daemon.stop()
    daemon_stages = histogram_quantiles(text, STAGE_METRIC, "stage", (0.5, 0.9, 0.99))
    for generation, row in histogram_quantiles(
        text, GC_METRIC, "generation", (0.5, 0.9, 0.99)
    ).items():
        daemon_stages[f"gc pause gen{generation}"] = row
    return RunRecord(f"wfsched {args.strategy}", instance.name, makespan, stages, daemon_stages)


if __name__ == "__main__":
    raise SystemExit(main())
