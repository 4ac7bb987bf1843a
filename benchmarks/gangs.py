"""Gang scheduling: wfsched versus kube-scheduler's GangScheduling plugin on the same cluster.

    .venv/bin/python benchmarks/gangs.py [--nodes 4] [--node-cpu 4] [--gangs 16] [--rounds 2]

Starts the local control plane with the gang API on (``GenericWorkload`` and ``GangScheduling``
feature gates, ``scheduling.k8s.io/v1alpha2``) and kube-scheduler. Each run uses a fresh
namespace with one ``PodGroup`` (gang policy, ``minCount`` = its size) per gang; gang sizes
cycle through ``--sizes`` (one CPU per pod), so together they need several times the cluster.
The pods of all gangs are created interleaved (pod 0 of every gang, then pod 1, ...), the
case a pod-by-pod scheduler finds hardest; every pod names its PodGroup in
``spec.schedulingGroup`` and runs ``--runtime`` on its KWOK node. Only the scheduler under
test runs; the order alternates per round.

Measured with one local monotonic clock from a watch on the namespace:

- time to place: from the creation of a gang's last pod to its last member being bound
  (median and max over gangs), and the makespan: from the first create call to the last gang
  being bound;
- partial placements: gangs seen with 0 < bound members < minCount for longer than
  ``--settle`` seconds (a gang's Bindings take a few milliseconds to go out one by one), and
  the bind spread: the longest time from a gang's first member bound to its last;
- gangs left unplaced at the time limit;
- with ``--singles N``: N one-pod tasks (no gang, one CPU, the same runtime) created after
  the gangs' pods, and the median time from their creation to their binding; they show
  whether small tasks backfill past waiting gangs and whether gangs still get their turn.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

from scheduler.devtools import devcluster


@dataclass
class GangRun:
    """What one run observed."""

    scheduler: str
    sizes: dict[str, int]
    created: dict[str, float] = field(default_factory=dict)
    """gang → time its last pod was created."""
    bound: dict[str, dict[str, float]] = field(default_factory=dict)
    """gang → pod → time first seen bound."""
    partial_since: dict[str, float] = field(default_factory=dict)
    partial: set[str] = field(default_factory=set)
    started: float = 0.0
    singles_created: dict[str, float] = field(default_factory=dict)
    singles_bound: dict[str, float] = field(default_factory=dict)

    def placed(self, gang: str) -> bool:
        return len(self.bound.get(gang, {})) >= self.sizes[gang]

    def check(self, settle_s: float) -> None:
        now = time.monotonic()
        for gang, size in self.sizes.items():
            count = len(self.bound.get(gang, {}))
            if 0 < count < size:
                since = self.partial_since.setdefault(gang, now)
                if now - since > settle_s:
                    self.partial.add(gang)
            else:
                self.partial_since.pop(gang, None)

    def figures(self) -> dict[str, Any]:
        placed = [g for g in self.sizes if self.placed(g)]
        times = sorted(max(self.bound[g].values()) - self.created[g] for g in placed)
        done = [max(self.bound[g].values()) for g in placed]
        waits = sorted(
            self.singles_bound[n] - self.singles_created[n]
            for n in self.singles_bound
            if n in self.singles_created
        )
        return {
            "scheduler": self.scheduler,
            "singles_bound": len(self.singles_bound),
            "single_p50_s": statistics.median(waits) if waits else None,
            "gangs": len(self.sizes),
            "placed": len(placed),
            "partial": len(self.partial),
            "place_p50_s": statistics.median(times) if times else None,
            "bind_spread_max_s": max(
                (max(self.bound[g].values()) - min(self.bound[g].values()) for g in placed),
                default=None,
            ),
            "place_max_s": times[-1] if times else None,
            "makespan_s": max(done) - self.started if len(placed) == len(self.sizes) else None,
        }


def _pod(name: str, scheduler: str, group: str | None, runtime: str) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"gang": group} if group else {},
            "annotations": {devcluster.RUNTIME_ANNOTATION: runtime},
        },
        "spec": {
            "schedulerName": scheduler,
            "schedulingGroup": {"podGroupName": group},
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "c",
                    "image": "busybox",
                    "resources": {"requests": {"cpu": "1", "memory": "64Mi"}},
                }
            ],
        },
    }
    if group is None:
        del pod["spec"]["schedulingGroup"]
    return pod


def gang_run(
    api: client.ApiClient,
    scheduler: str,
    sizes: dict[str, int],
    *,
    runtime: str,
    settle_s: float,
    limit_s: float,
    singles: int = 0,
    start: Callable[[], None],
    stop: Callable[[], None],
) -> GangRun:
    """Start the scheduler, create the gangs interleaved, and watch until all are placed."""
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    namespace = f"gang-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": namespace}})
    for gang, size in sizes.items():
        custom.create_namespaced_custom_object(
            "scheduling.k8s.io",
            "v1alpha2",
            namespace,
            "podgroups",
            {
                "apiVersion": "scheduling.k8s.io/v1alpha2",
                "kind": "PodGroup",
                "metadata": {"name": gang},
                "spec": {"schedulingPolicy": {"gang": {"minCount": size}}},
            },
        )
    run = GangRun(scheduler=scheduler, sizes=sizes)
    lock = threading.Lock()
    w = watch.Watch()

    def observe() -> None:
        try:
            for event in w.stream(core.list_namespaced_pod, namespace, timeout_seconds=900):
                pod = event["object"]
                gang = (pod.metadata.labels or {}).get("gang")
                if not gang and pod.spec.node_name:
                    with lock:
                        run.singles_bound.setdefault(pod.metadata.name, time.monotonic())
                elif gang and pod.spec.node_name:
                    with lock:
                        run.bound.setdefault(gang, {}).setdefault(
                            pod.metadata.name, time.monotonic()
                        )
                        run.check(settle_s)
        except Exception:  # the stream ends with an error when stopped
            return

    threading.Thread(target=observe, daemon=True).start()
    time.sleep(0.5)
    start()
    try:
        run.started = time.monotonic()
        for i in range(max(sizes.values())):
            for gang, size in sizes.items():
                if i < size:
                    core.create_namespaced_pod(
                        namespace,
                        _pod(f"{gang}-{i}", scheduler, gang, runtime),
                        _preload_content=False,
                    )
                    if i == size - 1:
                        run.created[gang] = time.monotonic()
        for i in range(singles):
            name = f"single-{i:03d}"
            core.create_namespaced_pod(
                namespace, _pod(name, scheduler, None, runtime), _preload_content=False
            )
            run.singles_created[name] = time.monotonic()
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            with lock:
                run.check(settle_s)
                if all(run.placed(g) for g in sizes) and len(run.singles_bound) >= singles:
                    break
            time.sleep(0.1)
    finally:
        w.stop()
        stop()
        core.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--node-cpu", type=int, default=4)
    parser.add_argument("--gangs", type=int, default=16)
    parser.add_argument("--sizes", default="2,3,4,6,8", help="gang sizes, cycled")
    parser.add_argument("--runtime", default="5s", help="how long each pod runs (Go duration)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--settle", type=float, default=1.0)
    parser.add_argument("--limit", type=float, default=240.0, help="seconds per run at most")
    parser.add_argument("--policy", default="fifo-binpack")
    parser.add_argument("--singles", type=int, default=0, help="one-pod tasks after the gangs")
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    args = parser.parse_args(argv)
    cycle = [int(s) for s in args.sizes.split(",")]
    sizes = {f"g{i:02d}": cycle[i % len(cycle)] for i in range(args.gangs)}
    if max(sizes.values()) > args.nodes * args.node_cpu:
        parser.error("a gang is larger than the cluster")

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="wfsched-bench-") as scratch:
        workdir = Path(scratch)
        cluster = devcluster.DevCluster(
            workdir / "cluster",
            devcluster.ClusterOptions(metrics_server=False, kube_scheduler=True),
        )
        cluster.start(build_missing=True)
        try:
            cluster.create_nodes(
                args.nodes, cpu=str(args.node_cpu), memory="64Gi", pods=110, prefix="gang-"
            )
            cfg = client.Configuration()
            config.load_kube_config(str(cluster.kubeconfig), client_configuration=cfg)
            api = client.ApiClient(cfg)
            daemon = devcluster.LocalDaemon(
                str(cluster.kubeconfig),
                workdir,
                policy=args.policy,
                lease={"enabled": False},
                cycle_interval_s=1.0,
                log_level="warning",
            )
            cluster.stop_component("kube-scheduler")
            runners = {
                "wfsched": ("workflow-scheduler", daemon.start, daemon.stop),
                "kube-scheduler": (
                    "default-scheduler",
                    lambda: cluster.start_component("kube-scheduler"),
                    lambda: cluster.stop_component("kube-scheduler"),
                ),
            }
            for round_no in range(args.rounds):
                order = ["wfsched", "kube-scheduler"]
                if round_no % 2:
                    order.reverse()
                for label in order:
                    name, start, stop = runners[label]
                    run = gang_run(
                        api,
                        name,
                        sizes,
                        runtime=args.runtime,
                        settle_s=args.settle,
                        limit_s=args.limit,
                        singles=args.singles,
                        start=start,
                        stop=stop,
                    )
                    figures = {"round": round_no + 1, **run.figures(), "scheduler": label}
                    results.append(figures)
                    print(json.dumps(figures), flush=True)
        finally:
            cluster.stop()
    print(
        "| round | scheduler | gangs placed | partial | time to place p50 | max | makespan "
        "| bind spread max | single pods: wait p50 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:

        def fmt(value: float | None, digits: int = 1) -> str:
            return "-" if value is None else f"{value:.{digits}f} s"

        print(
            f"| {r['round']} | {r['scheduler']} | {r['placed']}/{r['gangs']} | {r['partial']} | "
            f"{fmt(r['place_p50_s'])} | {fmt(r['place_max_s'])} | {fmt(r['makespan_s'])} | "
            f"{fmt(r['bind_spread_max_s'], 3)} | {fmt(r['single_p50_s'])} |"
        )
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
