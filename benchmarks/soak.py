"""Soak: many workflow runs, one after another, through one daemon; memory and cycle time stay flat.

    .venv/bin/python benchmarks/soak.py [--runs 100] [--tasks 200] [--runtime-s 0.2]
        [--nodes 4] [--idle-s 5] [--warmup 10] [--json]

One local control plane (etcd, kube-apiserver, KWOK fake nodes) and one wfsched daemon (lease
off, memory scaling on with the ``mean`` predictor, ``finished_run_idle_s`` = ``--idle-s``).
Each run is a synthetic workflow of ``--tasks`` tasks sharing one workflow name: ``split`` fans
out to ``align`` tasks, each followed by its ``sort``, all joined by ``merge`` (two containers,
so never memory-scaled). It is driven like ``wfsched replay`` drives a real workflow: a task's
pod is created when its parents have succeeded, and runs ``--runtime-s`` on a KWOK node; every
pod reports a peak memory, so the daemon learns, resizes and binds. When a run is over, its
pods are deleted, as Nextflow's ``k8s.cleanup`` does.

After each run the daemon's RSS (``/proc/<pid>/status``), its mean cycle time during the run
(from its own histogram) and the runs it still keeps (``wfsched_workflow_runs``) are sampled
and printed. At the end: least-squares slopes of RSS (KiB per run) and of the mean cycle time
(microseconds per run) against the run index, over the runs after ``--warmup``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scheduler.devtools import devcluster, replay
from scheduler.kube import keys

MIB = 1 << 20
WORKFLOW = "soak"


class SoakPlan(replay.ReplayPlan):
    """A replay plan whose pods report their peak memory; the ``merge`` pod has a sidecar."""

    __slots__ = ()

    def manifest(self, task: replay.ReplayTask) -> dict[str, Any]:
        """The replay manifest plus a peak-memory annotation (and a second container)."""
        pod = super().manifest(task)
        pod["metadata"]["annotations"][keys.PEAK_MEMORY_ANNOTATION] = str(task.memory_bytes // 4)
        if task.step == "merge":
            extra = dict(pod["spec"]["containers"][0], name="log-shipper")
            pod["spec"]["containers"].append(extra)
        return pod


def workflow_plan(*, tasks: int, runtime_s: float, run_id: str) -> SoakPlan:
    """The synthetic workflow: split → (align → sort) x ((tasks - 2) / 2) → merge."""
    lanes = max(1, (tasks - 2) // 2)

    def task(task_id: str, step: str, parents: tuple[str, ...]) -> replay.ReplayTask:
        return replay.ReplayTask(
            id=task_id,
            pod_name=f"{run_id}-{task_id}",
            step=step,
            parents=parents,
            runtime_s=runtime_s,
            cpu_millis=50,
            memory_bytes=256 * MIB,
            input_size=1 << 20,
        )

    items = [task("split", "split", ())]
    for lane in range(lanes):
        items.append(task(f"align-{lane}", "align", ("split",)))
        items.append(task(f"sort-{lane}", "sort", (f"align-{lane}",)))
    items.append(task("merge", "merge", tuple(f"sort-{lane}" for lane in range(lanes))))
    return SoakPlan(
        workflow=WORKFLOW,
        run_id=run_id,
        tasks=tuple(items),
        scheduler_name="workflow-scheduler",
    )


@dataclass(frozen=True, slots=True)
class Sample:
    """What was measured after one run."""

    run: int
    seconds: float
    rss_bytes: int
    cycles: int
    mean_cycle_s: float
    runs_kept: int


@dataclass(slots=True)
class SoakResult:
    """Every sample and the fitted slopes (over the runs after the warm-up)."""

    samples: list[Sample] = field(default_factory=list)
    warmup: int = 0
    rss_slope_kib_per_run: float = math.nan
    cycle_slope_us_per_run: float = math.nan
    seconds: float = 0.0
    binds: int = 0
    resizes: int = 0

    def fit(self) -> None:
        """Compute both slopes by least squares over the samples after the warm-up."""
        fitted = self.samples[self.warmup :]
        if len(fitted) < 2:
            return
        runs = np.array([s.run for s in fitted], dtype=float)
        rss = np.array([s.rss_bytes / 1024 for s in fitted])
        self.rss_slope_kib_per_run = float(np.polyfit(runs, rss, 1)[0])
        timed = [s for s in fitted if s.cycles > 0]
        if len(timed) >= 2:
            self.cycle_slope_us_per_run = float(
                np.polyfit([s.run for s in timed], [s.mean_cycle_s * 1e6 for s in timed], 1)[0]
            )

    def summary(self) -> str:
        """Two lines: the slopes, with what they add up to over the fitted runs."""
        fitted = self.samples[self.warmup :]
        span = max(0, len(fitted) - 1)
        mean_rss = np.mean([s.rss_bytes for s in fitted]) / MIB if fitted else math.nan
        timed = [s.mean_cycle_s for s in fitted if s.cycles > 0]
        mean_cycle = float(np.mean(timed)) * 1e3 if timed else math.nan
        return (
            f"RSS slope {self.rss_slope_kib_per_run:+.1f} KiB/run "
            f"({self.rss_slope_kib_per_run * span / 1024:+.2f} MiB over {span} runs; "
            f"mean {mean_rss:.1f} MiB)\n"
            f"cycle-time slope {self.cycle_slope_us_per_run:+.2f} us/run "
            f"({self.cycle_slope_us_per_run * span / 1e3:+.3f} ms over {span} runs; "
            f"mean {mean_cycle:.2f} ms)"
        )


def _count(value: float) -> int:
    """A gauge as an int; -1 when the daemon does not export it."""
    return int(value) if math.isfinite(value) else -1


def run_soak(
    *,
    kubeconfig: Path,
    admin: devcluster.AdminClient,
    namespace: str,
    workdir: Path,
    runs: int,
    tasks: int = 200,
    runtime_s: float = 0.2,
    idle_s: float = 5.0,
    warmup: int = 10,
    run_timeout_s: float = 600,
    daemon_settings: Mapping[str, Any] | None = None,
    on_sample: Callable[[Sample], None] | None = None,
) -> SoakResult:
    """Run ``runs`` workflows one after another through a fresh daemon; return the samples.

    The nodes must exist already; the daemon schedules the pods of ``namespace`` only.

    Raises:
        TimeoutError: a run did not finish within ``run_timeout_s``.
        RuntimeError: a task pod failed.
    """
    from scheduler.kube import client  # the benchmark's own API calls

    api = client.KubeClient.connect(str(kubeconfig), qps=200, burst=400, pool_size=4)
    daemon = devcluster.LocalDaemon(
        kubeconfig,
        workdir,
        namespaces=[namespace],
        lease={"enabled": False},
        predictor="mean-offset=none",
        finished_run_idle_s=idle_s,
        log_level="warning",
        **dict(daemon_settings or {}),
    )
    result = SoakResult(warmup=min(warmup, max(0, runs - 2)))
    started = time.monotonic()
    daemon.start(wait_ready_s=60)
    try:
        assert daemon.proc is not None
        text = daemon.metrics()
        total = devcluster.metric_sample(text, "wfsched_scheduling_cycle_duration_seconds_sum")
        count = devcluster.metric_sample(text, "wfsched_scheduling_cycle_duration_seconds_count")
        for index in range(runs):
            run_started = time.monotonic()
            plan = workflow_plan(tasks=tasks, runtime_s=runtime_s, run_id=f"r{index:03d}")
            replay.Replayer(plan, api, namespace=namespace).run(timeout_s=run_timeout_s)
            selector = f"{keys.RUN_ID_LABEL}%3D{plan.run_id}"
            status, reply = admin.request(
                "DELETE",
                f"/api/v1/namespaces/{namespace}/pods?labelSelector={selector}"
                "&gracePeriodSeconds=0",
            )
            if status >= 300:
                raise RuntimeError(f"deleting the pods of {plan.run_id}: HTTP {status}: {reply}")
            text = daemon.metrics()
            new_total = devcluster.metric_sample(
                text, "wfsched_scheduling_cycle_duration_seconds_sum"
            )
            new_count = devcluster.metric_sample(
                text, "wfsched_scheduling_cycle_duration_seconds_count"
            )
            cycles = int(new_count - count)
            sample = Sample(
                run=index,
                seconds=time.monotonic() - run_started,
                rss_bytes=devcluster.process_memory_bytes(daemon.proc.pid),
                cycles=cycles,
                mean_cycle_s=(new_total - total) / cycles if cycles else 0.0,
                runs_kept=_count(devcluster.metric_sample(text, "wfsched_workflow_runs")),
            )
            total, count = new_total, new_count
            result.samples.append(sample)
            if on_sample is not None:
                on_sample(sample)
        result.binds = _count(
            devcluster.metric_sample(text, 'wfsched_schedule_attempts_total{result="scheduled"}')
        )
        result.resizes = _count(
            devcluster.metric_sample(text, 'wfsched_resize_requests_total{result="applied"}')
        )
    finally:
        daemon.stop()
        api.close()
    result.seconds = time.monotonic() - started
    result.fit()
    return result


def print_sample(sample: Sample, runs: int) -> None:
    """One progress line per run."""
    print(
        f"run {sample.run + 1:>3}/{runs}: {sample.seconds:5.1f} s, "
        f"rss {sample.rss_bytes / MIB:7.2f} MiB, "
        f"cycle {sample.mean_cycle_s * 1e3:6.2f} ms (mean of {sample.cycles}), "
        f"runs kept {sample.runs_kept}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--tasks", type=int, default=200, help="tasks per run")
    parser.add_argument("--runtime-s", type=float, default=0.2, help="each task's runtime")
    parser.add_argument("--nodes", type=int, default=4, help="KWOK nodes of 32 CPU, 64 GiB")
    parser.add_argument("--idle-s", type=float, default=5.0, help="finished_run_idle_s")
    parser.add_argument("--warmup", type=int, default=10, help="runs left out of the fit")
    parser.add_argument("--json", action="store_true", help="also print the samples as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wfsched-soak-") as scratch:
        workdir = Path(scratch)
        cluster = devcluster.DevCluster(
            workdir / "cluster", devcluster.ClusterOptions(metrics_server=False)
        )
        cluster.start(build_missing=False)
        try:
            cluster.create_nodes(args.nodes, cpu="32", memory="64Gi", prefix="soak-")
            namespace = f"soak-{uuid.uuid4().hex[:6]}"
            admin = cluster.admin()
            admin.apply(
                "/api/v1/namespaces",
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
            )
            print(
                f"{args.runs} runs of {args.tasks} tasks ({args.runtime_s:g} s each) on "
                f"{args.nodes} KWOK nodes; finished_run_idle_s={args.idle_s:g}",
                flush=True,
            )
            result = run_soak(
                kubeconfig=cluster.kubeconfig,
                admin=admin,
                namespace=namespace,
                workdir=workdir,
                runs=args.runs,
                tasks=args.tasks,
                runtime_s=args.runtime_s,
                idle_s=args.idle_s,
                warmup=args.warmup,
                on_sample=lambda sample: print_sample(sample, args.runs),
            )
        finally:
            cluster.stop()
    print(
        f"{args.runs} runs in {result.seconds / 60:.1f} min: {result.binds} pods bound, "
        f"{result.resizes} resized before binding; fit over runs {result.warmup + 1}.."
    )
    print(result.summary())
    if args.json:
        print(json.dumps({**asdict(result), "samples": [asdict(s) for s in result.samples]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
