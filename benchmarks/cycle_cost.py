"""Cost of one scheduling cycle (``run_cycle``) over a grid of queue sizes and node counts.

Each cell builds a synthetic cluster (16 CPU / 64 GiB / 110 pods per node, 0-60 % already
requested by other pods, 5 % of the nodes tainted, half of them labelled ``disk=ssd``) and a
queue of pending tasks from 20 workflow runs of 8 chained steps, with 8 request shapes,
10 % of the tasks selecting ``disk=ssd`` and 5 % tolerating the taint. It then times one full
cycle: snapshot -> node arrays -> ranking -> placement walk -> decisions (best of the repeats).

Prints a table (milliseconds per cycle, binds per cycle) and the growth exponents from a
least-squares fit of log(time) = c + a*log(tasks) + b*log(nodes).

    .venv/bin/python benchmarks/cycle_cost.py            # 4 x 4 grid, about a minute
    .venv/bin/python benchmarks/cycle_cost.py --quick    # tiny grid, seconds
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np

from scheduler import registry
from scheduler.core import (
    cluster,
    constraints,
    context,
    cycle,
    queue,
    resources,
    workflow,
)

GIB = 2**30
SHAPES = [(500, 1), (1000, 2), (1000, 4), (2000, 4), (2000, 8), (4000, 8), (4000, 16), (8000, 32)]
SSD = constraints.Constraints.of(node_selector={"disk": "ssd"})
TOLERANT = constraints.Constraints.of(
    tolerations=[
        constraints.Toleration(key="dedicated", operator=constraints.TolerationOperator.EXISTS)
    ]
)


def make_snapshot(nodes: int, rng: random.Random) -> cluster.ClusterSnapshot:
    infos = []
    pods = []
    for i in range(nodes):
        name = f"node-{i:05d}"
        taints = (constraints.Taint(key="dedicated", value="batch"),) if rng.random() < 0.05 else ()
        infos.append(
            cluster.NodeInfo(
                name=name,
                allocatable=resources.Resources(cpu_millis=16000, memory_bytes=64 * GIB, pods=110),
                labels={"disk": "ssd" if i % 2 else "hdd"},
                taints=taints,
            )
        )
        share = rng.uniform(0.0, 0.6)
        pods.append(
            cluster.PodInfo(
                uid=f"existing-{i}",
                node_name=name,
                request=resources.Resources(
                    cpu_millis=int(16000 * share), memory_bytes=int(64 * GIB * share), pods=10
                ),
            )
        )
    return cluster.ClusterSnapshot.build(infos, pods)


def make_queue(
    tasks: int, rng: random.Random
) -> tuple[queue.SchedulingQueue, dict[workflow.RunId, workflow.WorkflowDag]]:
    dags: dict[workflow.RunId, workflow.WorkflowDag] = {}
    for r in range(20):
        dag = workflow.WorkflowDag(workflow.RunId(f"run-{r}"))
        dag.add_step_edges((f"s{k}", f"s{k + 1}") for k in range(7))
        dags[dag.run] = dag
    pending = queue.SchedulingQueue()
    for n in range(tasks):
        run = workflow.RunId(f"run-{n % 20}")
        step = rng.randrange(8)
        cpu, mem = SHAPES[(step + n % 3) % len(SHAPES)]
        roll = rng.random()
        pod_constraints = (
            SSD if roll < 0.10 else TOLERANT if roll < 0.15 else constraints.Constraints()
        )
        pending.add(
            workflow.Task(
                key=workflow.TaskKey(run, f"t{n}"),
                step=workflow.StepName(f"s{step}"),
                submission=n,
                request=resources.Resources(cpu_millis=cpu, memory_bytes=mem * GIB, pods=1),
                input_size=rng.randrange(1, 10**9),
                constraints=pod_constraints,
            )
        )
    return pending, dags


def time_cell(tasks: int, nodes: int, strategy: str, repeats: int) -> tuple[float, int]:
    rng = random.Random(tasks * 7919 + nodes)
    snapshot = make_snapshot(nodes, rng)
    pending, dags = make_queue(tasks, rng)
    spec = registry.parse_strategy(strategy)
    best = float("inf")
    binds = 0
    for rep in range(repeats):
        policies = spec.build()
        ctx = context.CycleContext(cycle_id=rep + 1, now=0.0, rng=random.Random(rep))
        start = time.perf_counter()
        result = cycle.run_cycle(
            snapshot=snapshot, queue=pending, dags=dags, policies=policies, ctx=ctx
        )
        best = min(best, time.perf_counter() - start)
        binds = len(result.binds)
    return best, binds


def fit_exponents(cells: list[tuple[int, int, float]]) -> tuple[float, float]:
    design = np.array([[1.0, np.log(t), np.log(n)] for t, n, _ in cells])
    target = np.array([np.log(s) for _, _, s in cells])
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    return float(coef[1]), float(coef[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny grid for a smoke run")
    parser.add_argument("--strategy", default="rank_min-roundrobin", help="policy to time")
    parser.add_argument("--repeats", type=int, default=3, help="best of N (default 3)")
    args = parser.parse_args()
    task_grid = [500, 1000, 2000] if args.quick else [1000, 5000, 10000, 20000]
    node_grid = [50, 100, 200] if args.quick else [100, 500, 1000, 5000]
    print(f"strategy {args.strategy}; best of {args.repeats}; ms per cycle (binds)")
    print(f"{'tasks/nodes':>14s}" + "".join(f"{n:>16d}" for n in node_grid))
    cells: list[tuple[int, int, float]] = []
    for tasks in task_grid:
        row = f"{tasks:>14d}"
        for nodes in node_grid:
            seconds, binds = time_cell(tasks, nodes, args.strategy, args.repeats)
            cells.append((tasks, nodes, seconds))
            row += f"{seconds * 1000:>9.1f} ({binds:>5d})"
        print(row, flush=True)
    a, b = fit_exponents(cells)
    print(f"growth exponents (log-log least squares): tasks {a:.2f}, nodes {b:.2f}")


if __name__ == "__main__":
    main()
