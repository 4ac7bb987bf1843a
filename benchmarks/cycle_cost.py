"""Cost of one scheduling cycle: the full re-rank (``cycle.run_cycle``) against the incremental
scheduler (``incremental.IncrementalScheduler``), cold and in steady state, over a grid of queue
sizes and node counts.

Each cell builds a synthetic cluster (16 CPU / 64 GiB / 110 pods per node, 0-60 % already
requested by other pods, 5 % of the nodes tainted, half of them labelled ``disk=ssd``) and a
queue of pending tasks from 20 workflow runs of 8 chained steps, with 8 request shapes,
10 % of the tasks selecting ``disk=ssd`` and 5 % tolerating the taint. Two identical worlds
(cluster cache, queue, DAGs, policies) go through the same steps side by side:

- **cold**: the first cycle over the whole queue (snapshot -> node arrays -> ranking ->
  placement walk -> decisions -> ``queue.apply``), best of ``--repeats``; the cluster fills up
  and thousands of tasks stay pending;
- **steady**: once the cold cycle's binds are all confirmed and one (untimed) cycle has
  absorbed that, ``--rounds`` rounds of a few events (``--events`` bound pods finish, as many
  binds are confirmed, as many new tasks arrive, one step instance finishes so F changes) and
  then one cycle; every round's time is printed, and the median is used for the fit.

Times are the process's CPU time (``time.process_time``): the cycle is single-threaded Python
and numpy, and CPU time leaves out the waiting for a core that other work on a shared machine
adds to wall time.
Prints milliseconds per cycle (binds, tasks tried by the incremental cycle, the CPU time of
full garbage collections inside each steady round) and the growth
exponents from a least-squares fit of log(time) = c + a*log(tasks) + b*log(nodes).

    .venv/bin/python benchmarks/cycle_cost.py            # 3 x 2 grid up to 30k x 5k, minutes
    .venv/bin/python benchmarks/cycle_cost.py --quick    # tiny grid, seconds
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import math
import random
import statistics
import time
from collections.abc import Callable

import numpy as np

from scheduler import registry
from scheduler.core import (
    cluster,
    constraints,
    context,
    cycle,
    decisions,
    incremental,
    interfaces,
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


class GcClock:
    """CPU seconds spent in the garbage collector's full (generation 2) passes, as they happen."""

    def __init__(self) -> None:
        self.spent = 0.0
        self._start = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._start = time.process_time()
        else:
            self.spent += time.process_time() - self._start


GC = GcClock()


@dataclasses.dataclass
class World:
    """One scheduler's state; ``run`` is ``cycle.run_cycle`` or an incremental scheduler's."""

    run: Callable[..., decisions.CycleResult]
    cache: cluster.ClusterCache
    queue: queue.SchedulingQueue
    dags: dict[workflow.RunId, workflow.WorkflowDag]
    policies: interfaces.Policies
    bound: list[str] = dataclasses.field(default_factory=list)
    binding: list[decisions.Bind] = dataclasses.field(default_factory=list)
    cycle_id: int = 0

    gc_spent: float = 0.0

    def cycle(self) -> tuple[float, decisions.CycleResult]:
        """Run and apply one cycle; return its CPU time in seconds and its result.

        ``gc_spent`` is set to the part of that time spent in full garbage collections.
        """
        self.cycle_id += 1
        gc_before = GC.spent
        ctx = context.CycleContext(cycle_id=self.cycle_id, now=0.0, rng=random.Random(1))
        start = time.process_time()
        result = self.run(
            snapshot=self.cache.snapshot(),
            queue=self.queue,
            dags=self.dags,
            policies=self.policies,
            ctx=ctx,
        )
        self.queue.apply(result)
        elapsed = time.process_time() - start
        self.gc_spent = GC.spent - gc_before
        for bind in result.binds:
            self.cache.assume(
                cluster.PodInfo(uid=str(bind.task), node_name=bind.node, request=bind.request)
            )
            self.binding.append(bind)
        return elapsed, result


def make_world(
    tasks: int, nodes: int, strategy: str, run: Callable[..., decisions.CycleResult]
) -> World:
    rng = random.Random(tasks * 7919 + nodes)
    snapshot = make_snapshot(nodes, rng)
    pending, dags = make_queue(tasks, rng)
    cache = cluster.ClusterCache()
    for node in snapshot.nodes:
        cache.upsert_node(node)
    for name, requested in snapshot.requested.items():
        cache.upsert_pod(cluster.PodInfo(uid=f"existing-{name}", node_name=name, request=requested))
    policies = registry.parse_strategy(strategy).build()
    return World(run=run, cache=cache, queue=pending, dags=dags, policies=policies)


def events(world: World, n: int, round_: int, serial: int) -> None:
    """A few events: bound pods finish, binds are confirmed, tasks arrive, F changes.

    ``round_ < 0`` only confirms binds (``n`` of them).
    """
    for _ in range(min(n, len(world.bound))):
        world.cache.remove_pod(world.bound.pop(0))
    for bind in world.binding[:n]:
        world.queue.bind_succeeded(bind.task)
        world.cache.upsert_pod(
            cluster.PodInfo(uid=str(bind.task), node_name=bind.node, request=bind.request)
        )
        world.bound.append(str(bind.task))
    del world.binding[:n]
    rng = random.Random(serial)
    for k in range(n if round_ >= 0 else 0):
        run = workflow.RunId(f"run-{(serial + k) % 20}")
        step = rng.randrange(8)
        cpu, mem = SHAPES[(step + k) % len(SHAPES)]
        world.queue.add(
            workflow.Task(
                key=workflow.TaskKey(run, f"new-{serial}-{k}"),
                step=workflow.StepName(f"s{step}"),
                submission=10**9 + serial * 1000 + k,
                request=resources.Resources(cpu_millis=cpu, memory_bytes=mem * GIB, pods=1),
                input_size=rng.randrange(1, 10**9),
            )
        )
    if round_ < 0:
        return
    world.dags[workflow.RunId(f"run-{round_ % 20}")].record_finished(
        f"s{round_ % 8}", success=True, runtime_s=10.0
    )


@dataclasses.dataclass
class Cell:
    tasks: int
    nodes: int
    cold: dict[str, float]
    steady: dict[str, list[float]]
    steady_gc: dict[str, list[float]]
    cold_binds: int
    steady_binds: list[int]
    tried: list[int]


def time_cell(
    tasks: int,
    nodes: int,
    strategy: str,
    repeats: int,
    rounds: int,
    n_events: int,
    freeze_gc: bool = False,
) -> Cell:
    incremental_scheduler = incremental.IncrementalScheduler()
    worlds = {
        "full": make_world(tasks, nodes, strategy, cycle.run_cycle),
        "incremental": make_world(tasks, nodes, strategy, incremental_scheduler.run_cycle),
    }
    cold: dict[str, float] = {}
    binds = 0
    for name, world in worlds.items():
        best = math.inf
        for _ in range(repeats - 1):  # measured without applying: the queue stays cold
            probe = (
                incremental.IncrementalScheduler().run_cycle if name != "full" else cycle.run_cycle
            )
            ctx = context.CycleContext(cycle_id=0, now=0.0, rng=random.Random(1))
            start = time.process_time()
            probe(
                snapshot=world.cache.snapshot(),
                queue=world.queue,
                dags=world.dags,
                policies=registry.parse_strategy(strategy).build(),
                ctx=ctx,
            )
            best = min(best, time.process_time() - start)
        world.queue.track_changes()  # a probe may have restarted the journal
        incremental_scheduler.reset()
        elapsed, result = world.cycle()
        cold[name] = min(best, elapsed)
        binds = len(result.binds)
    for world in worlds.values():  # settle: the cold binds are confirmed, one cycle absorbs it
        events(world, len(world.binding), -1, serial=0)
        world.cycle()
    if freeze_gc:
        gc.freeze()  # what survived so far is left out of later full collections
    steady: dict[str, list[float]] = {name: [] for name in worlds}
    steady_gc: dict[str, list[float]] = {name: [] for name in worlds}
    steady_binds: list[int] = []
    tried: list[int] = []
    for round_ in range(rounds):
        binds_this_round = set()
        for name, world in worlds.items():
            events(world, n_events, round_, serial=round_ + 1)
            elapsed, result = world.cycle()
            steady[name].append(elapsed)
            steady_gc[name].append(world.gc_spent)
            binds_this_round.add(len(result.binds))
        tried.append(incremental_scheduler.last_tried)
        steady_binds.append(max(binds_this_round))
    return Cell(tasks, nodes, cold, steady, steady_gc, binds, steady_binds, tried)


def fit_exponents(cells: list[tuple[int, int, float]]) -> tuple[float, float]:
    design = np.array([[1.0, np.log(t), np.log(n)] for t, n, _ in cells])
    target = np.array([np.log(s) for _, _, s in cells])
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    return float(coef[1]), float(coef[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny grid for a smoke run")
    parser.add_argument("--strategy", default="rank_min-roundrobin", help="policy to time")
    parser.add_argument("--repeats", type=int, default=2, help="cold: best of N (default 2)")
    parser.add_argument("--rounds", type=int, default=5, help="steady rounds (default 5)")
    parser.add_argument("--events", type=int, default=5, help="events of each kind per round")
    parser.add_argument(
        "--freeze-gc", action="store_true", help="gc.freeze() before the steady rounds"
    )
    parser.add_argument("--tasks", help="comma-separated queue sizes (default 2500,10000,30000)")
    parser.add_argument("--nodes", help="comma-separated node counts (default 1000,5000)")
    args = parser.parse_args()
    task_grid = [500, 1000, 2000] if args.quick else [2500, 10000, 30000]
    node_grid = [50, 200] if args.quick else [1000, 5000]
    if args.tasks:
        task_grid = [int(v) for v in args.tasks.split(",")]
    if args.nodes:
        node_grid = [int(v) for v in args.nodes.split(",")]
    print(
        f"strategy {args.strategy}; cold best of {args.repeats}; {args.rounds} steady rounds of "
        f"{args.events} finished pods + {args.events} confirmed binds + {args.events} new tasks "
        "+ 1 finished step instance; CPU ms per cycle (queue.apply included)"
    )
    fits: dict[str, list[tuple[int, int, float]]] = {}
    for tasks in task_grid:
        for nodes in node_grid:
            cell = time_cell(
                tasks,
                nodes,
                args.strategy,
                args.repeats,
                args.rounds,
                args.events,
                freeze_gc=args.freeze_gc,
            )
            print(f"{tasks:>6d} tasks x {nodes:>5d} nodes", flush=True)
            for name in ("full", "incremental"):
                rounds = " ".join(f"{t * 1000:.1f}" for t in cell.steady[name])
                in_gc = " ".join(f"{t * 1000:.1f}" for t in cell.steady_gc[name])
                median = statistics.median(cell.steady[name])
                print(
                    f"  {name:<12s} cold {cell.cold[name] * 1000:8.1f} ms ({cell.cold_binds} binds)"
                    f"   steady median {median * 1000:7.1f} ms, rounds: {rounds}"
                    f" (of which full GC passes: {in_gc})",
                    flush=True,
                )
                fits.setdefault(f"{name} cold", []).append((tasks, nodes, cell.cold[name]))
                fits.setdefault(f"{name} steady", []).append((tasks, nodes, median))
            print(
                f"  steady binds per round {cell.steady_binds}; "
                f"tasks tried by the incremental cycle {cell.tried}",
                flush=True,
            )
    if len(task_grid) > 1 and len(node_grid) > 1:
        for label, cells in fits.items():
            a, b = fit_exponents(cells)
            print(f"growth exponents, {label:<18s}: tasks {a:.2f}, nodes {b:.2f}")


if __name__ == "__main__":
    main()
