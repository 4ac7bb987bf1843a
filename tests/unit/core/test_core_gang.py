"""Gangs in the scheduling cycle: all or nothing, ranked as one task, reservation, timeout."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

from scheduler import registry
from scheduler.core import cluster, context, cycle, decisions, gang, interfaces, workflow
from scheduler.core.queue import SchedulingQueue
from scheduler.core.resources import Resources
from tests.unit.core import core_builders as b


def member(task_id: str, ref: workflow.GangRef, **kwargs: object) -> workflow.Task:
    return dataclasses.replace(b.task(task_id, **kwargs), gang=ref)  # type: ignore[arg-type]


def gang_of(
    name: str, size: int, *, min_count: int | None = None, first: int = 0, **kwargs: object
) -> list[workflow.Task]:
    ref = workflow.GangRef(key=f"podgroup:ns/{name}", min_count=min_count or size)
    return [member(f"{name}-{i}", ref, submission=first + i, **kwargs) for i in range(size)]


def run(
    nodes: list[cluster.NodeInfo] | cluster.ClusterSnapshot,
    tasks: list[workflow.Task] | SchedulingQueue,
    *,
    board: gang.GangBoard | None = None,
    now: float = 0.0,
    strategy: str = "fifo-binpack",
    max_binds: int | None = None,
) -> decisions.CycleResult:
    snap = nodes if isinstance(nodes, cluster.ClusterSnapshot) else b.snapshot(nodes)
    pending = tasks if isinstance(tasks, SchedulingQueue) else b.queue_of(tasks)
    ctx = context.CycleContext(
        cycle_id=1,
        now=now,
        rng=random.Random(0),
        settings=context.CycleSettings(max_binds=max_binds),
    )
    return cycle.run_cycle(
        snapshot=snap,
        queue=pending,
        dags={},
        policies=registry.parse_strategy(strategy).build(),
        ctx=ctx,
        gangs=board,
    )


def bound_tasks(result: decisions.CycleResult) -> set[str]:
    return {bind.task.task for bind in result.binds}


def test_gang_that_fits_is_bound_whole_across_nodes() -> None:
    result = run([b.node("a", cpu="2"), b.node("b", cpu="2")], gang_of("g", 4, cpu="1"))
    assert bound_tasks(result) == {"g-0", "g-1", "g-2", "g-3"}
    assert {bind.node for bind in result.binds} == {"a", "b"}


def test_gang_that_does_not_fit_binds_nothing_and_leaves_room_for_others() -> None:
    tasks = [*gang_of("g", 5, cpu="1"), b.task("small", cpu="1", submission=10)]
    result = run([b.node("a", cpu="2"), b.node("b", cpu="2")], tasks)
    assert bound_tasks(result) == {"small"}  # backfilled: the gang took nothing
    rejected = {r.task.task for r in result.rejects}
    assert rejected == {f"g-{i}" for i in range(5)}
    assert all("4 of 5 pods have a place at once" in r.reason for r in result.rejects)
    assert not [d for d in result.decisions if isinstance(d, decisions.MarkUnschedulable)]


def test_min_count_below_size_binds_every_member_that_fits() -> None:
    result = run([b.node("a", cpu="3")], gang_of("g", 4, min_count=2, cpu="1"))
    assert bound_tasks(result) == {"g-0", "g-1", "g-2"}
    assert [r.task.task for r in result.rejects] == ["g-3"]


def test_bound_members_count_toward_min_count() -> None:
    board = gang.GangBoard(bound={"podgroup:ns/g": 3})
    tasks = gang_of("g", 4, cpu="1")[3:]
    result = run([b.node("a", cpu="1")], tasks, board=board)
    assert bound_tasks(result) == {"g-3"}


def test_gang_waits_for_min_count_pods_and_for_its_pod_group() -> None:
    result = run([b.node("a", cpu="8")], gang_of("g", 2, min_count=3))
    assert bound_tasks(result) == set()
    assert "2 of 3 are ready" in result.rejects[0].reason
    unknown = workflow.GangRef(key="podgroup:ns/missing", min_count=0)
    result = run([b.node("a", cpu="8")], [member("x", unknown)])
    assert result.rejects[0].reason == "waiting for PodGroup ns/missing to appear"


def test_gated_members_do_not_count() -> None:
    tasks = gang_of("g", 3)
    tasks[1] = dataclasses.replace(tasks[1], scheduling_gates=("hold",))
    assert bound_tasks(run([b.node("a", cpu="8")], tasks)) == set()


class LargestMemoryFirst:
    """A ranking that reads the request: the gang must be seen with its summed request."""

    name = "largest_memory"
    seen: tuple[workflow.Task, ...] = ()

    def rank(
        self, tasks: Sequence[workflow.Task], view: object, ctx: object
    ) -> list[workflow.Task]:
        self.seen = tuple(tasks)
        return sorted(tasks, key=lambda t: -t.request.memory_bytes)


def test_gang_is_ranked_as_one_task_with_the_summed_request() -> None:
    tasks = [
        b.task("big", memory="4Gi", submission=0),
        *gang_of("g", 3, first=1, memory="2Gi", cpu="100m"),
    ]
    ranking = LargestMemoryFirst()
    policies = interfaces.Policies(
        ranking=ranking, assignment=registry.parse_strategy("fifo-binpack").build().assignment
    )
    result = cycle.run_cycle(
        snapshot=b.snapshot([b.node("a", cpu="8", memory="7Gi")]),
        queue=b.queue_of(tasks),
        dags={},
        policies=policies,
        ctx=b.ctx(),
    )
    assert [t.key.task for t in ranking.seen] == ["big", "g-0"]
    assert ranking.seen[1].request.memory_bytes == 6 * 2**30
    assert bound_tasks(result) == {"g-0", "g-1", "g-2"}
    assert result.order[:3] == tuple(t.key for t in tasks[1:])
    assert [r.task.task for r in result.rejects] == ["big"]


def test_two_gangs_competing_for_the_same_room_never_place_partially() -> None:
    tasks = gang_of("g1", 3, cpu="1") + gang_of("g2", 3, cpu="1", first=10)
    result = run([b.node("a", cpu="2"), b.node("b", cpu="2")], tasks)
    assert bound_tasks(result) == {"g1-0", "g1-1", "g1-2"}
    assert {r.task.task for r in result.rejects} == {"g2-0", "g2-1", "g2-2"}


def test_failed_gang_leaves_working_nodes_untouched() -> None:
    tasks = gang_of("g", 3, cpu="2") + [b.task("t", cpu="2", submission=9)] * 1
    result = run([b.node("a", cpu="2"), b.node("b", cpu="2")], tasks)
    # the gang needs 6 cpu of 4: nothing of it counts, so "t" finds a whole node
    assert bound_tasks(result) == {"t"}


def test_reservation_blocks_lower_ranked_tasks_only_after_the_wait() -> None:
    snap = b.snapshot(
        [b.node("a", cpu="4")],
        [cluster.PodInfo(uid="running", node_name="a", request=Resources(cpu_millis=2000, pods=1))],
    )
    tasks = [*gang_of("g", 2, cpu="2"), b.task("small", cpu="1", submission=10)]
    settings = gang.GangSettings(timeout_s=100, reserve_after_s=30, reserve_for_s=60)
    board = gang.GangBoard(settings=settings, waiting_since={"podgroup:ns/g": 0.0})
    assert bound_tasks(run(snap, tasks, board=board, now=10)) == {"small"}
    reserving = run(snap, tasks, board=board, now=40)
    assert bound_tasks(reserving) == set()
    assert "reserving" in reserving.rejects[0].reason
    # the reservation ends after reserve_for_s: a backfill window follows
    assert bound_tasks(run(snap, tasks, board=board, now=95)) == {"small"}
    assert bound_tasks(run(snap, tasks, board=board, now=125)) == set()


def test_gang_that_can_never_fit_never_reserves() -> None:
    tasks = [*gang_of("g", 3, cpu="3"), b.task("small", cpu="1", submission=10)]
    board = gang.GangBoard(
        settings=gang.GangSettings(reserve_after_s=0), waiting_since={"podgroup:ns/g": 0.0}
    )
    # 9 cpu on 2 x 4: never, whatever finishes
    result = run([b.node("a", cpu="4"), b.node("b", cpu="4")], tasks, board=board, now=50)
    assert bound_tasks(result) == {"small"}


def test_timeout_marks_members_unschedulable_once() -> None:
    tasks = gang_of("g", 3, cpu="3")
    board = gang.GangBoard(
        settings=gang.GangSettings(timeout_s=60), waiting_since={"podgroup:ns/g": 0.0}
    )
    nodes = [b.node("a", cpu="4")]
    assert not [
        d for d in run(nodes, tasks, board=board, now=59).decisions
        if isinstance(d, decisions.MarkUnschedulable)
    ]  # fmt: skip
    pending = b.queue_of(tasks)
    result = run(nodes, pending, board=board, now=61)
    marks = [d for d in result.decisions if isinstance(d, decisions.MarkUnschedulable)]
    assert len(marks) == 3
    assert marks[0].reason.startswith(gang.TIMEOUT_PREFIX)
    pending.apply(result)
    again = run(nodes, pending, board=board, now=70)
    assert not [d for d in again.decisions if isinstance(d, decisions.MarkUnschedulable)]


def test_board_clock_starts_and_stops_with_queued_members() -> None:
    board = gang.GangBoard()
    tasks = gang_of("g", 2)
    board.after_cycle(tasks, now=5)
    board.after_cycle(tasks, now=9)
    assert board.waiting_since == {"podgroup:ns/g": 5}
    board.after_cycle([], now=10)
    assert board.waiting_since == {}


def test_max_binds_never_splits_a_gang() -> None:
    tasks = [b.task("first", cpu="1"), *gang_of("g", 3, cpu="1", first=1)]
    result = run([b.node("a", cpu="8")], tasks, max_binds=1)
    assert bound_tasks(result) == {"first"}
    result = run([b.node("a", cpu="8")], tasks, max_binds=2)
    assert bound_tasks(result) == {"first", "g-0", "g-1", "g-2"}


def test_permutation_check_and_order_cover_every_member() -> None:
    tasks = [*gang_of("g", 3), b.task("t", submission=5)]
    result = run([b.node("a", cpu="1")], tasks)
    assert sorted(k.task for k in result.order) == ["g-0", "g-1", "g-2", "t"]


def test_queue_counts_gang_members_through_add_replace_and_remove() -> None:
    members = gang_of("g", 2)
    q = b.queue_of([b.task("solo"), *members])
    assert q.gang_member_count == 2
    q.add(dataclasses.replace(members[0], gang=None))  # the PodGroup went away
    assert q.gang_member_count == 1
    q.add(members[0])
    q.remove(members[1].key)
    q.remove(members[1].key)  # absent: nothing changes
    assert q.gang_member_count == 1
    q.remove(members[0].key)
    assert q.gang_member_count == 0
