"""Per-execution strategies: each execution ranked and placed by its own policies."""

from __future__ import annotations

from rest_helpers import make_state

from scheduler import cws, registry
from scheduler.core import context, resources, workflow
from scheduler.cws import policies as cws_policies


def _task(run, name, size, submission):
    return workflow.Task(
        key=workflow.TaskKey(workflow.RunId(run), name),
        step=workflow.StepName("s"),
        submission=submission,
        request=resources.Resources(cpu_millis=100, memory_bytes=1 << 20),
        input_size=size,
    )


def test_each_execution_is_ranked_by_its_strategy_in_its_own_slots() -> None:
    state = make_state()
    state.register(cws.Registration(name="big", strategy="max"), now=0)
    state.register(cws.Registration(name="small", strategy="min"), now=0)
    wrapped = cws_policies.wrap(registry.parse_strategy("fifo").build(), state, plan_memory=False)
    tasks = [
        _task("default/big", "b1", 1, 1),
        _task("default/small", "s1", 9, 2),
        _task("other/x", "x2", 0, 9),
        _task("default/big", "b2", 5, 3),
        _task("default/small", "s2", 1, 4),
        _task("other/x", "x1", 0, 5),
    ]
    ctx = context.CycleContext(cycle_id=1, now=0.0)
    ranked = wrapped.ranking.rank(tasks, workflow.WorkflowView({}), ctx)
    # Slots keep their execution; inside, "max" puts b2 first, "min" s2, fifo x1 (5 < 9).
    assert [t.key.task for t in ranked] == ["b2", "s2", "x1", "b1", "s1", "x2"]
    assert [t.key.task for t in tasks] == ["b1", "s1", "x2", "b2", "s2", "x1"]


def test_single_group_uses_its_policy_directly_and_assignment_dispatches() -> None:
    state = make_state()
    state.register(cws.Registration(name="e", strategy="min-fair"), now=0)
    base = registry.parse_strategy("fifo-roundrobin").build()
    wrapped = cws_policies.wrap(base, state, plan_memory=True)
    tasks = [_task("default/e", "a", 5, 1), _task("default/e", "b", 1, 2)]
    ctx = context.CycleContext(cycle_id=1, now=0.0)
    assert [t.key.task for t in wrapped.ranking.rank(tasks, workflow.WorkflowView({}), ctx)] == [
        "b",
        "a",
    ]
    assert state.policies_for(workflow.RunId("default/e")).assignment.name == "fair"
    assert wrapped.ranking.name == "fifo" and wrapped.assignment.name == "roundrobin"
    assert wrapped.memory_planner is not None
    assert wrapped.memory_planner.plan(tasks[0]) is None  # no predictor for "e"
