import math
from dataclasses import dataclass

import numpy as np
import pytest

from policies.ranking import fifo
from scheduler.core import cluster, decisions, errors, interfaces, nodetable, workflow
from scheduler.core import constraints as cs
from scheduler.core.resources import Resources
from tests.unit.core import core_builders as b

GI = 2**30
MI = 2**20


def test_kube_style_reason_counts_sorted() -> None:
    nodes = [b.node(f"small-{i}", memory="2Gi") for i in range(8)]
    nodes += [
        b.node(f"tainted-{i}", memory="16Gi", taints=[cs.Taint(key="key", value="value")])
        for i in range(4)
    ]
    result = b.run(nodes, [b.task("t", memory="4Gi")])
    assert result.binds == ()
    (reject,) = result.rejects
    assert (
        reject.reason == "0/12 nodes are available: 8 Insufficient memory, "
        "4 node(s) had untolerated taint {key: value}."
    )
    assert reject.code is decisions.RejectCode.UNRESOLVABLE  # no node could ever take it


def test_unschedulable_while_full_but_resolvable() -> None:
    snap = b.snapshot(
        [b.node("n", cpu="2")],
        [cluster.PodInfo(uid="other", node_name="n", request=Resources(cpu_millis=1500, pods=1))],
    )
    (reject,) = b.run(snap, [b.task("t", cpu="1")]).rejects
    assert reject.reason == "0/1 nodes are available: 1 Insufficient cpu."
    assert reject.code is decisions.RejectCode.UNSCHEDULABLE


@pytest.mark.parametrize(
    ("node", "task", "placed", "reason"),
    [
        (
            b.node("n", unschedulable=True),
            b.task("t"),
            False,
            "0/1 nodes are available: 1 node(s) were unschedulable.",
        ),
        (
            b.node("n", ready=False),
            b.task("t"),
            False,
            "0/1 nodes are available: 1 node(s) were not ready.",
        ),
        (
            b.node("n", taints=[cs.Taint(key="k", value="v")]),
            b.task("t"),
            False,
            "0/1 nodes are available: 1 node(s) had untolerated taint {k: v}.",
        ),
        (
            b.node("n", taints=[cs.Taint(key="k", effect=cs.TaintEffect.NO_EXECUTE)]),
            b.task("t"),
            False,
            "0/1 nodes are available: 1 node(s) had untolerated taint {k: }.",
        ),
        (
            b.node("n", taints=[cs.Taint(key="k", effect=cs.TaintEffect.PREFER_NO_SCHEDULE)]),
            b.task("t"),
            True,
            None,
        ),
        (
            b.node("n", taints=[cs.Taint(key="k", value="v")]),
            b.task(
                "t",
                pod_constraints=cs.Constraints.of(tolerations=[cs.Toleration(key="k", value="v")]),
            ),
            True,
            None,
        ),
        (
            b.node("n", labels={"disk": "ssd"}),
            b.task("t", pod_constraints=cs.Constraints.of(node_selector={"disk": "ssd"})),
            True,
            None,
        ),
        (
            b.node("n", labels={"disk": "hdd"}),
            b.task("t", pod_constraints=cs.Constraints.of(node_selector={"disk": "ssd"})),
            False,
            "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.",
        ),
        (
            b.node("n", labels={"zone": "b"}),
            b.task(
                "t",
                pod_constraints=cs.Constraints.of(
                    required_terms=[
                        cs.NodeSelectorTerm(
                            match_expressions=(
                                cs.NodeSelectorRequirement(
                                    key="zone", operator=cs.SelectorOperator.IN, values=("a",)
                                ),
                            )
                        )
                    ]
                ),
            ),
            False,
            "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.",
        ),
        (b.node("n", pods=0), b.task("t"), False, "0/1 nodes are available: 1 Too many pods."),
        (
            b.node("n"),
            b.task("t", extended={"nvidia.com/gpu": 1}),
            False,
            "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
        ),
        (
            b.node("n", extended={"nvidia.com/gpu": 2}),
            b.task("t", extended={"nvidia.com/gpu": 2}),
            True,
            None,
        ),
        (
            b.node("n", cpu="500m"),
            b.task("t", cpu="1", memory="16Gi"),
            False,
            "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory.",
        ),
    ],
)
def test_feasibility_rules(
    node: cluster.NodeInfo, task: workflow.Task, placed: bool, reason: str | None
) -> None:
    result = b.run([node], [task])
    assert bool(result.binds) is placed
    assert b.reasons(result).get("t") == reason


def test_gated_task_is_never_placed_and_not_rejected() -> None:
    result = b.run(
        [b.node("n")],
        [b.task("gated", gates=("kueue.x-k8s.io/admission",)), b.task("free", submission=1)],
    )
    assert b.placements(result) == {"free": "n"}
    assert result.gated == (workflow.TaskKey(b.RUN, "gated"),)
    assert result.rejects == ()


def test_backing_off_task_is_skipped_until_its_time() -> None:
    pending = b.queue_of([b.task("t")])
    pending.backoff(workflow.TaskKey(b.RUN, "t"), now=100.0)
    skipped = b.run([b.node("n")], pending, context_=b.ctx(now=100.5))
    assert skipped.binds == () and skipped.backing_off == (workflow.TaskKey(b.RUN, "t"),)
    assert b.placements(b.run([b.node("n")], pending, context_=b.ctx(now=101.0))) == {"t": "n"}


def test_working_copy_subtracts_each_placement_and_counts_other_pods() -> None:
    other = cluster.PodInfo(
        uid="x", node_name="a", request=Resources(cpu_millis=1000, memory_bytes=GI, pods=1)
    )
    snap = b.snapshot([b.node("a", cpu="4"), b.node("b", cpu="2")], [other])
    tasks = [b.task(f"t{i}", cpu="2", submission=i) for i in range(4)]
    result = b.run(snap, tasks, strategy="fifo-fair")
    # a has 3 CPU free, b 2: t0 -> a (score 1/4 vs 0/2), t1 -> b, then nothing has 2 CPU left
    assert b.placements(result) == {"t0": "a", "t1": "b"}
    assert set(b.reasons(result)) == {"t2", "t3"}


def test_lower_ranked_tasks_backfill_without_reservation() -> None:
    tasks = [b.task("big", cpu="8", submission=0), b.task("small", cpu="1", submission=1)]
    result = b.run([b.node("n", cpu="4")], tasks)
    assert b.placements(result) == {"small": "n"}
    assert result.order == (workflow.TaskKey(b.RUN, "big"), workflow.TaskKey(b.RUN, "small"))
    assert all(d.cycle_id == 1 for d in result.decisions)


def test_rejects_follow_binds_and_mark_unschedulable_only_on_new_reason() -> None:
    pending = b.queue_of([b.task("big", cpu="8"), b.task("small", submission=1)])
    first = b.run([b.node("n", cpu="4")], pending)
    assert [type(d).__name__ for d in first.decisions] == ["Bind", "Reject", "MarkUnschedulable"]
    pending.apply(first)
    assert list(pending.tasks()) == [b.task("big", cpu="8")]
    second = b.run([b.node("n", cpu="4")], pending, context_=b.ctx(2))
    assert [type(d).__name__ for d in second.decisions] == ["Reject"]
    third = b.run([b.node("n", cpu="4", memory="100Mi")], pending, context_=b.ctx(3))
    assert [type(d).__name__ for d in third.decisions] == ["Reject", "MarkUnschedulable"]


def test_a_changed_reason_is_reported_at_most_once_per_interval() -> None:
    pending = b.queue_of([b.task("big", cpu="8")])
    cpu_short = [b.node("n", cpu="4")]
    both_short = [b.node("n", cpu="4", memory="100Mi")]

    def marks(nodes: list[cluster.NodeInfo], now: float) -> list[decisions.MarkUnschedulable]:
        result = b.run(nodes, pending, context_=b.ctx(int(now) + 1, now=now, report_interval_s=10))
        pending.apply(result)
        return [d for d in result.decisions if isinstance(d, decisions.MarkUnschedulable)]

    first = marks(cpu_short, now=0.0)
    assert [m.at for m in first] == [0.0] and "Insufficient cpu" in first[0].reason
    assert marks(both_short, now=4.0) == []  # changed, but reported 4 s ago
    assert marks(cpu_short, now=8.0) == []  # back to the reported reason
    late = marks(both_short, now=10.0)
    assert [m.at for m in late] == [10.0] and "Insufficient memory" in late[0].reason
    assert marks(both_short, now=30.0) == []  # unchanged: never written again


def test_max_binds_caps_a_cycle() -> None:
    result = b.run(
        [b.node("n", cpu="8")],
        [b.task(f"t{i}", submission=i) for i in range(5)],
        context_=b.ctx(max_binds=2),
    )
    assert sorted(b.placements(result)) == ["t0", "t1"]
    assert result.rejects == ()


@dataclass
class Planner:
    plan_bytes: float | None
    calls: int = 0

    def plan(self, task: workflow.Task) -> int | None:
        self.calls += 1
        return self.plan_bytes  # type: ignore[return-value]


def test_memory_planner_resizes_then_binds_with_the_plan() -> None:
    result = b.run([b.node("n")], [b.task("t", memory="1Gi")], planner=Planner(512 * MI))
    resize, bind = result.decisions
    assert isinstance(resize, decisions.Resize) and isinstance(bind, decisions.Bind)
    assert (resize.memory_bytes, resize.original_memory_bytes) == (512 * MI, GI)
    assert bind.request.memory_bytes == 512 * MI


@pytest.mark.parametrize("plan", [2 * GI, None, float("nan"), -5.0, 0, math.inf])
def test_memory_planner_never_raises_the_request_and_ignores_nonsense(plan: float | None) -> None:
    result = b.run([b.node("n")], [b.task("t", memory="1Gi")], planner=Planner(plan))
    assert result.resizes == ()
    assert result.binds[0].request.memory_bytes == GI


def test_memory_planner_skips_retries_and_tasks_without_memory() -> None:
    planner = Planner(MI)
    result = b.run(
        [b.node("n")],
        [b.task("retry", attempt=1), b.task("nomem", memory=0, submission=1)],
        planner=planner,
    )
    assert planner.calls == 0 and result.resizes == ()
    assert len(result.binds) == 2


def test_planned_request_fits_free_memory_but_allocatable_must_hold_the_original() -> None:
    busy = cluster.PodInfo(
        uid="x", node_name="big", request=Resources(memory_bytes=1536 * MI, pods=1)
    )
    snap = b.snapshot([b.node("tiny", memory="768Mi"), b.node("big", memory="2Gi")], [busy])
    result = b.run(snap, [b.task("t", memory="1Gi")], planner=Planner(512 * MI))
    assert b.placements(result) == {"t": "big"}


@dataclass
class BadAssignment:
    answer: object
    name: str = "bad"

    def select(self, candidates: nodetable.Candidates, ctx: object) -> int | None:
        return self.answer  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (1, decisions.RejectCode.POLICY_ERROR),
        (7, decisions.RejectCode.POLICY_ERROR),
        (-1, decisions.RejectCode.POLICY_ERROR),
        ("0", decisions.RejectCode.POLICY_ERROR),
        (True, decisions.RejectCode.POLICY_ERROR),
        (None, decisions.RejectCode.UNSCHEDULABLE),
    ],
)
def test_buggy_assignment_can_never_overcommit(answer: object, code: decisions.RejectCode) -> None:
    full = cluster.PodInfo(uid="x", node_name="b", request=Resources(cpu_millis=4000, pods=1))
    snap = b.snapshot([b.node("a"), b.node("b")], [full])
    policies = interfaces.Policies(ranking=fifo.make(), assignment=BadAssignment(answer))
    result = b.run(snap, [b.task("t")], policies=policies)
    assert result.binds == ()
    assert result.rejects[0].code is code


def test_numpy_integer_choice_is_accepted() -> None:
    policies = interfaces.Policies(ranking=fifo.make(), assignment=BadAssignment(np.int64(0)))
    assert b.placements(b.run([b.node("a")], [b.task("t")], policies=policies)) == {"t": "a"}


@dataclass
class DroppingRanking:
    name: str = "dropping"

    def rank(self, tasks: object, view: object, ctx: object) -> list[workflow.Task]:
        return list(tasks)[1:]  # type: ignore[call-overload]


def test_ranking_must_return_a_permutation() -> None:
    policies = interfaces.Policies(ranking=DroppingRanking(), assignment=BadAssignment(0))
    with pytest.raises(errors.PolicyContractError, match="permutation"):
        b.run([b.node("a")], [b.task("a"), b.task("b", submission=1)], policies=policies)


def test_run_cycle_does_not_mutate_queue_or_snapshot() -> None:
    pending = b.queue_of([b.task("x", submission=1), b.task("y", submission=0)])
    snap = b.snapshot([b.node("a")])
    before = (pending.tasks(), dict(snap.requested))
    result = b.run(snap, pending)
    assert result.order[0].task == "y"
    assert (pending.tasks(), dict(snap.requested)) == before
