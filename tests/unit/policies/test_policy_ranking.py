import random

import pytest

from policies.ranking import critical_path
from scheduler import registry
from scheduler.core import context, workflow
from tests.unit.core import core_builders as b

RUN = b.RUN


def make_dag() -> workflow.WorkflowDag:
    """A -> B -> C, E -> C, D alone: ranks A 2, B 1, E 1, C 0, D 0."""
    dag = workflow.WorkflowDag(RUN)
    dag.add_step_edges([("A", "B"), ("B", "C"), ("E", "C")])
    dag.add_step("D")
    for step, finished in {"B": 2, "C": 6, "D": 5, "E": 1}.items():
        for _ in range(finished):
            dag.record_finished(step, success=True)
    return dag


TASKS = [
    b.task("t0", step="C", size=5, submission=0),
    b.task("t1", step="A", size=9, submission=1),
    b.task("t2", step="B", size=3, submission=2),
    b.task("t3", step="D", size=1, submission=3),
    b.task("t4", step="A", size=2, submission=4),
    b.task("t5", step="E", size=3, submission=5),
    b.task("t6", step="B", size=3, submission=6),
]


def order(
    name: str,
    tasks: list[workflow.Task] = TASKS,
    dag: workflow.WorkflowDag | None = None,
    seed: int = 0,
) -> list[str]:
    dag = dag or make_dag()
    policy = registry.ranking(name).make()
    ranked = policy.rank(tuple(tasks), workflow.WorkflowView({RUN: dag}), b.ctx(seed=seed))
    return [t.key.task for t in ranked]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("fifo", ["t0", "t1", "t2", "t3", "t4", "t5", "t6"]),
        ("rank", ["t1", "t4", "t2", "t5", "t6", "t0", "t3"]),
        ("rank_min", ["t4", "t1", "t2", "t5", "t6", "t3", "t0"]),
        ("rank_max", ["t1", "t4", "t2", "t5", "t6", "t0", "t3"]),
        ("lff_min", ["t4", "t1", "t5", "t2", "t6", "t3", "t0"]),
        ("lff", ["t4", "t1", "t5", "t2", "t6", "t3", "t0"]),
        ("lff_max", ["t1", "t4", "t5", "t2", "t6", "t3", "t0"]),
        # F >= 5 (C: 6, D: 5) come last, ordered by rank_max with F ignored: t0 (C, size 5)
        # before t3 (D, size 1) although D finished fewer instances
        ("gs_min", ["t4", "t1", "t5", "t2", "t6", "t0", "t3"]),
        ("getsamples", ["t4", "t1", "t5", "t2", "t6", "t0", "t3"]),
        ("gs_max", ["t1", "t4", "t5", "t2", "t6", "t0", "t3"]),
        ("gsm", ["t1", "t4", "t5", "t2", "t6", "t0", "t3"]),
        ("max", ["t1", "t0", "t2", "t5", "t6", "t4", "t3"]),
        ("min", ["t3", "t4", "t2", "t5", "t6", "t0", "t1"]),
        # no runtime observed yet: critical_path orders exactly like rank_min
        ("critical_path", ["t4", "t1", "t2", "t5", "t6", "t3", "t0"]),
    ],
)
def test_ranking_orders(name: str, expected: list[str]) -> None:
    assert order(name) == expected


def test_gs_five_finished_rule_boundary() -> None:
    dag = workflow.WorkflowDag(RUN)
    dag.add_step_edges([("deep", "x"), ("x", "y")])
    dag.add_step("flat")
    tasks = [b.task("deep", step="deep", size=1), b.task("flat", step="flat", size=1, submission=1)]
    for _ in range(4):
        dag.record_finished("deep", success=True)
    assert order("gs_min", tasks, dag) == [
        "flat",
        "deep",
    ]  # deep has 4 < 5, flat has 0: fewer first
    dag.record_finished("deep", success=True)
    assert order("gs_min", tasks, dag) == [
        "flat",
        "deep",
    ]  # deep reached 5: after every starved step
    for _ in range(5):
        dag.record_finished("flat", success=True)
    assert order("gs_min", tasks, dag) == ["deep", "flat"]  # both >= 5: rank_max, F ignored


def test_gs_threshold_is_configurable() -> None:
    dag = make_dag()
    policy = registry.ranking("gs_min").make({"threshold": 0})
    ranked = policy.rank(tuple(TASKS), workflow.WorkflowView({RUN: dag}), b.ctx())
    assert [t.key.task for t in ranked] == order("rank_max")


def test_ties_keep_the_previous_rounds_order_not_arrival_order() -> None:
    dag = workflow.WorkflowDag(RUN)
    dag.add_step_edges([("B", "C"), ("E", "C")])
    dag.record_finished("B", success=True)
    dag.record_finished("B", success=True)
    dag.record_finished("E", success=True)
    pending = b.queue_of(
        [b.task("p", step="B", size=1), b.task("q", step="E", size=1, submission=1)]
    )
    first = b.run([], pending, strategy="lff_min", dags={RUN: dag})
    assert [k.task for k in first.order] == ["q", "p"]  # F(E)=1 < F(B)=2
    pending.apply(first)
    dag.record_finished("E", success=True)  # now a tie: F 2 / 2, rank 1 / 1, size 1 / 1
    second = b.run([], pending, strategy="lff_min", dags={RUN: dag}, context_=b.ctx(2))
    assert [k.task for k in second.order] == ["q", "p"]
    fresh = b.run([], b.queue_of(list(pending.tasks())[::-1]), strategy="lff_min", dags={RUN: dag})
    assert [k.task for k in fresh.order] == ["p", "q"]  # a fresh queue in arrival order differs


def test_random_is_seeded_and_reshuffles_every_round() -> None:
    assert order("random", seed=7) == order("random", seed=7)
    assert sorted(order("random", seed=7)) == sorted(t.key.task for t in TASKS)
    policy = registry.ranking("r").make()
    ctx = context.CycleContext(cycle_id=1, now=0.0, rng=random.Random(3))
    view = workflow.WorkflowView({})
    rounds = {tuple(t.key.task for t in policy.rank(tuple(TASKS), view, ctx)) for _ in range(5)}
    assert len(rounds) > 1


def test_rank_independent_of_edge_insertion_order_in_policies() -> None:
    forward = workflow.WorkflowDag(RUN)
    forward.add_step_edges([("A", "B"), ("B", "C"), ("E", "C")])
    backward = workflow.WorkflowDag(RUN)
    for edge in [("E", "C"), ("B", "C"), ("A", "B")]:
        backward.add_step_edges([edge])
    forward.add_step("D")
    backward.add_step("D")
    for name in ("rank", "rank_min", "critical_path"):
        assert order(name, dag=forward) == order(name, dag=backward)


# -- critical_path -----------------------------------------------------------------------


def cp_order(tasks: list[workflow.Task], dag: workflow.WorkflowDag, **args: object) -> list[str]:
    policy = registry.ranking("cp").make(args or None)
    return [
        t.key.task for t in policy.rank(tuple(tasks), workflow.WorkflowView({RUN: dag}), b.ctx())
    ]


def test_critical_path_prefers_long_work_over_many_short_steps() -> None:
    dag = workflow.WorkflowDag(RUN)
    dag.add_step_edges([("a1", "a2"), ("a2", "a3")])
    dag.add_step("long")
    for step, seconds in [("a1", 1.0), ("a2", 1.0), ("a3", 1.0), ("long", 100.0)]:
        dag.record_finished(step, success=True, runtime_s=seconds)
    tasks = [b.task("chain", step="a1"), b.task("long", step="long", submission=1)]
    assert order("rank_min", tasks, dag) == ["chain", "long"]
    assert cp_order(tasks, dag) == ["long", "chain"]


def test_critical_path_unobserved_steps_get_the_pessimistic_prior() -> None:
    dag = workflow.WorkflowDag(RUN)
    dag.add_step_edges([("x", "unknown_tail")])
    dag.add_step("y")
    dag.add_step("z")
    dag.record_finished("x", success=True, runtime_s=10.0)
    dag.record_finished("y", success=True, runtime_s=15.0)
    dag.record_finished("z", success=True, runtime_s=50.0)
    weights = critical_path.step_weights(dag, critical_path.Prior.MAX)
    assert weights == {"x": 10.0, "unknown_tail": 50.0, "y": 15.0, "z": 50.0}
    mean = critical_path.step_weights(dag, critical_path.Prior.MEAN)
    assert mean["unknown_tail"] == pytest.approx(25.0)
    tasks = [b.task("z", step="z"), b.task("x", step="x", submission=1)]
    assert cp_order(tasks, dag) == ["x", "z"]  # 10 + 50 (prior) > 50
    assert cp_order(tasks, dag, prior="mean") == ["z", "x"]  # 10 + 25 < 50


def test_critical_path_own_estimate_puts_bigger_inputs_first_when_they_run_longer() -> None:
    dag = workflow.WorkflowDag(RUN)
    dag.add_step("s")
    dag.record_finished("s", success=True, runtime_s=10.0, input_size=2**30)
    dag.record_finished("s", success=True, runtime_s=20.0, input_size=2 * 2**30)
    tasks = [
        b.task("small", step="s", size=2**30),
        b.task("big", step="s", size=3 * 2**30, submission=1),
    ]
    assert cp_order(tasks, dag) == ["big", "small"]
    assert cp_order(tasks, dag, own_estimate=False) == ["small", "big"]  # rank_min tie-break


def test_critical_path_uses_task_level_edges_when_declared() -> None:
    dag = workflow.WorkflowDag(RUN)
    dag.complete_task_graph = True
    for task_id, step in [("m1", "map"), ("m2", "map"), ("r1", "reduce"), ("f1", "final")]:
        dag.add_task(task_id, step)
    dag.add_task_edges([("m2", "r1"), ("r1", "f1")])  # m1 feeds nothing
    tasks = [b.task("m1", step="map"), b.task("m2", step="map", submission=1)]
    assert cp_order(tasks, dag) == ["m2", "m1"]
    assert cp_order(tasks, dag, use_task_edges=False) == ["m1", "m2"]  # same step level: stable


def test_critical_path_sees_the_steps_below_a_released_task_before_its_children_exist() -> None:
    # Tasks arrive with their parents as they are released; the step edges are known from an
    # earlier run of the workflow. A pending task has no child yet, so its step's tail counts.
    dag = workflow.WorkflowDag(RUN)
    dag.add_step_edges([("trim", "align"), ("align", "quant")])
    dag.prior_runtimes = {"trim": 5.0, "align": 60.0, "quant": 30.0, "qc": 20.0}
    dag.add_task("t1", "trim")
    dag.add_task("q1", "qc")
    dag.add_task("a0", "align")
    dag.add_task_edges([("a0", "q1")])  # a qc task released by an earlier align task
    tasks = [b.task("q1", step="qc"), b.task("t1", step="trim", submission=1)]
    assert cp_order(tasks, dag) == ["t1", "q1"]  # 5 + 60 + 30 above 20
    dag.complete_task_graph = True  # now t1 is known to feed nothing
    assert cp_order(tasks, dag) == ["q1", "t1"]


def test_critical_path_rejects_a_bad_prior() -> None:
    with pytest.raises(registry.PolicyError, match="invalid arguments"):
        registry.ranking("critical_path").make({"prior": "median"})
