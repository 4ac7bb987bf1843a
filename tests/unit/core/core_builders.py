"""Small builders for core unit tests (imported as ``tests.unit.core.core_builders``)."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping

from scheduler import registry
from scheduler.core import (
    cluster,
    constraints,
    context,
    cycle,
    decisions,
    interfaces,
    queue,
    resources,
    workflow,
)

RUN = workflow.RunId("run")


def node(
    name: str,
    *,
    cpu: str | int = "4",
    memory: str | int = "8Gi",
    pods: int = 110,
    extended: Mapping[str, str | int] | None = None,
    labels: Mapping[str, str] | None = None,
    taints: Iterable[constraints.Taint] = (),
    ready: bool = True,
    unschedulable: bool = False,
    usage: resources.Resources | None = None,
) -> cluster.NodeInfo:
    quantities: dict[str, str | int] = {"cpu": cpu, "memory": memory, "pods": pods}
    quantities.update(extended or {})
    return cluster.NodeInfo(
        name=name,
        allocatable=resources.Resources.from_quantities(quantities),
        labels=dict(labels or {}),
        taints=tuple(taints),
        ready=ready,
        unschedulable=unschedulable,
        usage=usage,
    )


def task(
    task_id: str,
    *,
    step: str = "s",
    run: str = RUN,
    submission: int = 0,
    cpu: str | int = "1",
    memory: str | int = "1Gi",
    extended: Mapping[str, str | int] | None = None,
    size: int = 0,
    attempt: int = 0,
    pod_constraints: constraints.Constraints | None = None,
    gates: tuple[str, ...] = (),
) -> workflow.Task:
    quantities: dict[str, str | int] = {"cpu": cpu, "memory": memory, "pods": 1}
    quantities.update(extended or {})
    return workflow.Task(
        key=workflow.TaskKey(workflow.RunId(run), task_id),
        step=workflow.StepName(step),
        submission=submission,
        request=resources.Resources.from_quantities(quantities),
        input_size=size,
        attempt=attempt,
        constraints=pod_constraints or constraints.Constraints(),
        scheduling_gates=gates,
        pod=cluster.PodRef(uid=f"uid-{task_id}", namespace="ns", name=task_id),
    )


def queue_of(tasks: Iterable[workflow.Task]) -> queue.SchedulingQueue:
    pending = queue.SchedulingQueue()
    for t in tasks:
        pending.add(t)
    return pending


def ctx(
    cycle_id: int = 1,
    *,
    now: float = 0.0,
    seed: int = 0,
    max_binds: int | None = None,
    report_interval_s: float = 0.0,
) -> context.CycleContext:
    return context.CycleContext(
        cycle_id=cycle_id,
        now=now,
        rng=random.Random(seed),
        settings=context.CycleSettings(
            max_binds=max_binds, unschedulable_report_interval_s=report_interval_s
        ),
    )


def snapshot(
    nodes: Iterable[cluster.NodeInfo], pods: Iterable[cluster.PodInfo] = ()
) -> cluster.ClusterSnapshot:
    return cluster.ClusterSnapshot.build(nodes, pods)


def run(
    nodes: Iterable[cluster.NodeInfo] | cluster.ClusterSnapshot,
    tasks: Iterable[workflow.Task] | queue.SchedulingQueue,
    *,
    strategy: str = "fifo",
    policies: interfaces.Policies | None = None,
    dags: Mapping[workflow.RunId, workflow.WorkflowDag] | None = None,
    context_: context.CycleContext | None = None,
    planner: interfaces.MemoryPlanner | None = None,
) -> decisions.CycleResult:
    snap = nodes if isinstance(nodes, cluster.ClusterSnapshot) else snapshot(nodes)
    pending = tasks if isinstance(tasks, queue.SchedulingQueue) else queue_of(tasks)
    chosen = policies or registry.parse_strategy(strategy).build(memory_planner=planner)
    return cycle.run_cycle(
        snapshot=snap, queue=pending, dags=dags or {}, policies=chosen, ctx=context_ or ctx()
    )


def placements(result: decisions.CycleResult) -> dict[str, str]:
    return {b.task.task: b.node for b in result.binds}


def reasons(result: decisions.CycleResult) -> dict[str, str]:
    return {r.task.task: r.reason for r in result.rejects}
