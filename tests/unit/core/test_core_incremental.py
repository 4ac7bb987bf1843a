"""Incremental cycles against full re-ranks, over random event sequences.

Two schedulers live side by side through the same events (tasks added, replaced, removed;
steps finishing; DAG edges added; binds confirmed, failed or abandoned; pods finishing; nodes
added, cordoned, removed; time passing; the incremental state reset, so a cold cycle starts
over a queue with a persistent order and tasks being bound): one runs ``cycle.run_cycle`` (a
full re-rank and a walk over the whole queue), the other ``incremental.IncrementalScheduler``.
After every cycle the queue order, the binds and the resizes must be identical, for every
registered ranking and assignment, with and without a memory planner.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler import registry
from scheduler.core import (
    cluster,
    context,
    cycle,
    decisions,
    incremental,
    interfaces,
    resources,
    workflow,
)
from scheduler.core import constraints as cs
from scheduler.core.queue import SchedulingQueue
from tests.unit.core import core_builders as b

# Hundreds of generated event sequences, each cycle run twice: beyond the unit tier's 20 s on a
# busy machine.
pytestmark = pytest.mark.timeout(120)

MI = 2**20
RUNS = [workflow.RunId("ra"), workflow.RunId("rb")]
STEPS = ["s0", "s1", "s2", "s3"]
ZONE_A = cs.Constraints.of(node_selector={"zone": "a"})
TOLERANT = cs.Constraints.of(
    tolerations=[cs.Toleration(key="dedicated", operator=cs.TolerationOperator.EXISTS)]
)


class HalfMemory:
    """A deterministic planner: half the request for steps s0 and s2."""

    def plan(self, task: workflow.Task) -> int | None:
        return task.request.memory_bytes // 2 if task.step in ("s0", "s2") else None


@dataclasses.dataclass
class World:
    """One scheduler's state: cluster cache, queue, DAGs, policies, random generator."""

    run: Callable[..., decisions.CycleResult]
    policies: interfaces.Policies
    cache: cluster.ClusterCache = dataclasses.field(default_factory=cluster.ClusterCache)
    queue: SchedulingQueue = dataclasses.field(default_factory=SchedulingQueue)
    dags: dict[workflow.RunId, workflow.WorkflowDag] = dataclasses.field(default_factory=dict)
    rng: random.Random = dataclasses.field(default_factory=lambda: random.Random(7))
    binding: dict[workflow.TaskKey, decisions.Bind] = dataclasses.field(default_factory=dict)
    running: list[str] = dataclasses.field(default_factory=list)


def make_task(data: st.DataObject, n: int) -> workflow.Task:
    return b.task(
        f"t{n}",
        run=data.draw(st.sampled_from(RUNS)),
        step=data.draw(st.sampled_from(STEPS)),
        submission=n,
        cpu=f"{data.draw(st.sampled_from([0, 500, 1000, 2500, 5000]))}m",
        memory=data.draw(st.sampled_from([0, 512, 2048, 6144])) * MI,
        size=data.draw(st.sampled_from([0, 0, 0, 1, 3])),
        attempt=data.draw(st.sampled_from([0, 0, 1])),
        pod_constraints=data.draw(st.sampled_from([cs.Constraints(), ZONE_A, TOLERANT])),
        gates=data.draw(st.sampled_from([(), (), (), (), (), ("gate",)])),
    )


def make_node(data: st.DataObject, name: str) -> cluster.NodeInfo:
    return b.node(
        name,
        cpu=data.draw(st.sampled_from(["2", "4", "8", "16"])),
        memory=data.draw(st.sampled_from(["4Gi", "8Gi", "16Gi"])),
        pods=data.draw(st.sampled_from([4, 110, 110])),
        labels={"zone": data.draw(st.sampled_from(["a", "b"]))},
        taints=data.draw(st.sampled_from([(), (), (cs.Taint(key="dedicated", value="x"),)])),
        unschedulable=data.draw(st.integers(0, 7)) == 0,
    )


EVENTS = (
    ["add"] * 4
    + ["replace", "remove", "finish_step", "finish_step", "edge"]
    + ["bind_ok"] * 3
    + ["bind_failed", "bind_abandoned"]
    + ["pod_done"] * 3
    + ["node", "usage", "time", "restart"]
    + ["cycle"] * 5
)
NODE_EVENTS = ["node_add", "node_change", "node_remove"]


@settings(max_examples=120, deadline=None)
@given(
    data=st.data(),
    ranking=st.sampled_from(sorted(registry.RANKINGS)),
    assignment=st.sampled_from(sorted(registry.ASSIGNMENTS)),
    planner=st.booleans(),
)
def test_incremental_cycles_match_full_reranks(
    data: st.DataObject, ranking: str, assignment: str, planner: bool
) -> None:
    drive(data, ranking, assignment, planner=planner, max_nodes=5)


@settings(max_examples=120, deadline=None)
@given(data=st.data(), ranking=st.sampled_from(sorted(registry.RANKINGS)))
def test_incremental_order_matches_full_rerank_on_a_full_cluster(
    data: st.DataObject, ranking: str
) -> None:
    """Nothing fits, so every task stays queued and keys change under many ties."""
    drive(data, ranking, "roundrobin", planner=False, max_nodes=0)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), ranking=st.sampled_from(sorted(registry.RANKINGS)))
def test_batched_updates_and_compaction_match_full_reranks(
    data: st.DataObject, ranking: str
) -> None:
    """The one-pass list updates and the class compaction give the same results."""
    saved = incremental.BATCH, incremental.CLASS_SLACK
    incremental.BATCH = incremental.CLASS_SLACK = 0
    try:
        drive(data, ranking, "roundrobin", planner=False, max_nodes=5)
    finally:
        incremental.BATCH, incremental.CLASS_SLACK = saved


def drive(
    data: st.DataObject, ranking: str, assignment: str, *, planner: bool, max_nodes: int
) -> None:
    """Run one random event sequence through both schedulers, comparing every cycle."""
    spec = registry.parse_strategy(f"{ranking}-{assignment}")
    inc = incremental.IncrementalScheduler()

    def world(run: Callable[..., decisions.CycleResult]) -> World:
        policies = spec.build()
        if planner:
            policies = dataclasses.replace(policies, memory_planner=HalfMemory())
        return World(run=run, policies=policies)

    worlds = (world(cycle.run_cycle), world(inc.run_cycle))
    now = 0.0
    nodes = [make_node(data, f"n{i}") for i in range(data.draw(st.integers(0, max_nodes)))]
    for w in worlds:
        for node in nodes:
            w.cache.upsert_node(node)
        for run in RUNS:
            w.dags[run] = workflow.WorkflowDag(run)
            w.dags[run].add_step_edges([("s0", "s1"), ("s1", "s2")])
    counter = 0
    cycle_id = 0
    for _ in range(data.draw(st.integers(5, 60))):
        event = data.draw(st.sampled_from(EVENTS))
        if event == "node":
            event = data.draw(st.sampled_from(NODE_EVENTS))
        queued = [task.key for task, _, _ in worlds[0].queue.states()]
        binding = sorted(worlds[0].binding)
        if event == "add":
            counter += 1
            task = make_task(data, counter)
            for w in worlds:
                w.queue.add(task)
        elif event == "replace" and queued:
            key = data.draw(st.sampled_from(queued))
            old = worlds[0].queue.get(key)
            assert old is not None
            new = dataclasses.replace(
                old,
                input_size=data.draw(st.sampled_from([0, 0, 1, 3])),
                scheduling_gates=data.draw(st.sampled_from([(), ("gate",)])),
            )
            for w in worlds:
                w.queue.add(new)
        elif event == "remove" and queued:
            key = data.draw(st.sampled_from(queued))
            for w in worlds:
                w.queue.remove(key)
                w.binding.pop(key, None)
        elif event == "finish_step":
            run, step = data.draw(st.sampled_from(RUNS)), data.draw(st.sampled_from(STEPS))
            runtime = data.draw(st.sampled_from([1.0, 5.0, 30.0]))
            for w in worlds:
                w.dags[run].record_finished(step, success=True, runtime_s=runtime)
        elif event == "edge":
            run = data.draw(st.sampled_from(RUNS))
            for w in worlds:
                w.dags[run].add_step_edges([("s2", "s3")])
        elif event.startswith("bind_") and binding:
            key = data.draw(st.sampled_from(binding))
            for w in worlds:
                bind = w.binding.pop(key)
                uid = f"pod-{key}"
                if event == "bind_ok":
                    w.queue.bind_succeeded(key)
                    w.cache.upsert_pod(
                        cluster.PodInfo(uid=uid, node_name=bind.node, request=bind.request)
                    )
                    w.running.append(uid)
                elif event == "bind_failed":
                    w.cache.forget(uid)
                    w.queue.bind_failed(key, now=now)
                else:
                    w.cache.forget(uid)
                    w.queue.bind_abandoned(key)
        elif event == "pod_done" and worlds[0].running:
            index = data.draw(st.integers(0, len(worlds[0].running) - 1))
            for w in worlds:
                w.cache.remove_pod(w.running.pop(index))
        elif event == "node_add" and max_nodes:
            node = make_node(data, f"n{len(nodes) + data.draw(st.integers(0, 3))}")
            nodes.append(node)
            for w in worlds:
                w.cache.upsert_node(node)
        elif event == "node_change" and nodes:
            node = data.draw(st.sampled_from(nodes))
            changed = dataclasses.replace(node, unschedulable=not node.unschedulable)
            for w in worlds:
                w.cache.upsert_node(changed)
        elif event == "node_remove" and nodes:
            node = data.draw(st.sampled_from(nodes))
            for w in worlds:
                w.cache.remove_node(node.name)
        elif event == "usage" and nodes:
            node = data.draw(st.sampled_from(nodes))
            usage = resources.Resources(cpu_millis=data.draw(st.integers(0, 4000)))
            for w in worlds:
                w.cache.upsert_node(dataclasses.replace(node, usage=usage))
        elif event == "time":
            now += data.draw(st.sampled_from([0.5, 1.0, 5.0]))
        elif event == "restart":  # the next cycle is cold over tasks being bound and an order
            inc.reset()
        elif event == "cycle":
            cycle_id += 1
            max_binds = data.draw(st.sampled_from([None, None, 1, 3]))
            results = [run_one(w, cycle_id, now, max_binds) for w in worlds]
            full, fast = results
            assert fast.order == full.order
            assert fast.binds == full.binds
            assert _resizes(fast) == _resizes(full)
            assert {r.task for r in fast.rejects} <= {r.task for r in full.rejects}


def run_one(w: World, cycle_id: int, now: float, max_binds: int | None) -> decisions.CycleResult:
    ctx = context.CycleContext(
        cycle_id=cycle_id,
        now=now,
        rng=w.rng,
        settings=context.CycleSettings(max_binds=max_binds),
    )
    result = w.run(
        snapshot=w.cache.snapshot(), queue=w.queue, dags=w.dags, policies=w.policies, ctx=ctx
    )
    w.queue.apply(result)
    for bind in result.binds:
        w.cache.assume(
            cluster.PodInfo(uid=f"pod-{bind.task}", node_name=bind.node, request=bind.request)
        )
        w.binding[bind.task] = bind
    return result


def _resizes(result: decisions.CycleResult) -> list[decisions.Decision]:
    return [d for d in result.decisions if isinstance(d, decisions.Resize)]


def test_classes_woken_by_a_new_node_stay_awake_when_max_binds_stops_the_walk() -> None:
    """Tasks parked on an empty cluster, a node added, a cycle stopped after one bind: the
    next cycle still tries the rest of the class (found by the property test)."""
    spec = registry.parse_strategy("rank_min-roundrobin")
    inc = incremental.IncrementalScheduler()
    worlds = (
        World(run=cycle.run_cycle, policies=spec.build()),
        World(run=inc.run_cycle, policies=spec.build()),
    )
    tasks = [
        b.task(f"t{n}", run=RUNS[0], step="s0", submission=n, cpu="0m", memory=0) for n in range(5)
    ]
    node = b.node("n0", cpu="2", memory="4Gi", pods=4)
    for w in worlds:
        w.dags[RUNS[0]] = workflow.WorkflowDag(RUNS[0])
        for task in tasks:
            w.queue.add(task)
    assert [run_one(w, 1, 0.0, None).binds for w in worlds] == [(), ()]
    for w in worlds:
        w.cache.upsert_node(node)
    first = [run_one(w, 2, 0.0, 1) for w in worlds]
    assert len(first[0].binds) == 1 and first[1].binds == first[0].binds
    second = [run_one(w, 3, 0.0, None) for w in worlds]
    assert len(second[0].binds) == 3  # pods=4: the rest of the room
    assert second[1].binds == second[0].binds
    assert second[1].order == second[0].order


def test_walk_cut_short_by_max_binds_leaves_no_woken_task_parked() -> None:
    """Regression (issue 18): t1, t2 park on an empty cluster; a node wakes their class; a
    cycle with ``max_binds=1`` binds t1 and stops before t2. Nothing grows afterwards (t1's
    bind only shrinks the node), so t2 must still be tried: it binds before t3."""
    spec = registry.parse_strategy("critical_path-balanced")
    inc = incremental.IncrementalScheduler()
    worlds = [World(run=run, policies=spec.build()) for run in (cycle.run_cycle, inc.run_cycle)]
    for w in worlds:
        w.dags[RUNS[0]] = workflow.WorkflowDag(RUNS[0])

    def add(n: int) -> None:
        task = b.task(f"t{n}", run="ra", step="s0", submission=n, cpu="0m", memory=0)
        for w in worlds:
            w.queue.add(task)

    def cycle_both(cycle_id: int, max_binds: int | None) -> list[decisions.Bind]:
        full, fast = (run_one(w, cycle_id, 0.0, max_binds) for w in worlds)
        assert fast.order == full.order
        assert fast.binds == full.binds
        return list(fast.binds)

    add(1)
    add(2)
    assert cycle_both(1, None) == []
    add(3)
    add(4)
    node = b.node("n0", cpu="2", memory="4Gi", pods=4, labels={"zone": "a"})
    for w in worlds:
        w.cache.upsert_node(node)
    assert [bind.task.task for bind in cycle_both(2, 1)] == ["t1"]
    for w in worlds:
        bind = w.binding.pop(workflow.TaskKey(RUNS[0], "t1"))
        w.queue.bind_succeeded(bind.task)
        w.cache.upsert_pod(cluster.PodInfo(uid="pod-t1", node_name="n0", request=bind.request))
    add(5)
    assert [bind.task.task for bind in cycle_both(3, None)][:1] == ["t2"]
