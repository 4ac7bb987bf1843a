"""Makespan of real workflows: wfsched strategies versus kube-scheduler on one KWOK cluster.

    .venv/bin/python benchmarks/makespan.py [INSTANCE ...] [--time-scale 0.02]
        [--nodes 2 --node-cpu 4 --node-memory 16Gi] [--strategies fifo,rank_min,...]
        [--max-work-s 600]

Every instance (default: each WfFormat instance under ../shared/data/wfinstances whose scaled
total work fits ``--max-work-s``) is replayed with ``wfsched replay``'s driver on the same
small KWOK cluster (sized so tasks queue), once per wfsched strategy (a fresh daemon each
time) and once under kube-scheduler. Prints the makespans and their ratio to kube-scheduler's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import uuid
from pathlib import Path

from scheduler.cli import replay as replay_cli
from scheduler.devtools import devcluster, replay, simulate

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "wfinstances"
DEFAULT_STRATEGIES = (
    "fifo-roundrobin",
    "rank_min-roundrobin",
    "rank_max-roundrobin",
    "critical_path-roundrobin",
    "critical_path-binpack",
)


def _replay(
    cluster: devcluster.DevCluster,
    api: replay.PodApi,
    instance: simulate.Instance,
    scheduler: str,
    time_scale: float,
) -> float:
    namespace = f"mk-{uuid.uuid4().hex[:8]}"
    cluster.admin().apply(
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
    )
    plan = replay.ReplayPlan.from_instance(
        instance, scheduler_name=scheduler, time_scale=time_scale
    )
    progress = replay_cli.run_replay(plan, api, namespace=namespace, timeout_s=3600, quiet=True)
    assert progress.makespan_s is not None
    return progress.makespan_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("instances", nargs="*", type=Path)
    parser.add_argument("--time-scale", type=float, default=0.02)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--node-cpu", default="4")
    parser.add_argument("--node-memory", default="16Gi")
    parser.add_argument("--strategies", default=",".join(DEFAULT_STRATEGIES))
    parser.add_argument("--max-work-s", type=float, default=600.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    paths = args.instances or sorted(DATA.glob("*.json"))
    instances = []
    for path in paths:
        instance = simulate.load_instance(path)
        work = sum(max(1.0, t.runtime_s * args.time_scale) for t in instance.tasks)
        if work <= args.max_work_s * int(args.node_cpu) * args.nodes:
            instances.append(instance)
        else:
            print(f"skipping {instance.name}: {work:.0f} scaled task-seconds", file=sys.stderr)
    strategies = [s for s in args.strategies.split(",") if s]
    rows = []
    with tempfile.TemporaryDirectory(prefix="wfsched-makespan-") as scratch:
        workdir = Path(scratch)
        cluster = devcluster.DevCluster(
            workdir / "cluster",
            devcluster.ClusterOptions(metrics_server=False, kube_scheduler=True),
        )
        cluster.start(build_missing=True)
        try:
            cluster.create_nodes(args.nodes, cpu=args.node_cpu, memory=args.node_memory)
            from scheduler.kube import client

            api = client.KubeClient.connect(
                str(cluster.kubeconfig), qps=100, burst=200, pool_size=4
            )
            for instance in instances:
                row = {"instance": instance.name, "tasks": len(instance.tasks)}
                row["kube-scheduler"] = _replay(
                    cluster, api, instance, "default-scheduler", args.time_scale
                )
                for strategy in strategies:
                    daemon = devcluster.LocalDaemon(
                        cluster.kubeconfig, workdir, policy=strategy, lease={"enabled": False}
                    )
                    daemon.start()
                    try:
                        row[strategy] = _replay(
                            cluster, api, instance, "workflow-scheduler", args.time_scale
                        )
                    finally:
                        daemon.stop()
                rows.append(row)
                base = float(row["kube-scheduler"])
                cells = "  ".join(f"{s}={float(row[s]) / base:.2f}" for s in strategies)
                print(f"{instance.name:<45} kube={base:6.1f}s  {cells}", flush=True)
        finally:
            cluster.stop()
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
