"""Contract tests over every registered policy: a new module is checked the day it is added."""

import random
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler import registry
from scheduler.core import cluster, interfaces, workflow
from scheduler.core.resources import Resources
from tests.unit.core import core_builders as b

RANKINGS = sorted(registry.RANKINGS)
ASSIGNMENTS = sorted(registry.ASSIGNMENTS)


def sample_tasks(seed: int, count: int = 25) -> list[workflow.Task]:
    rng = random.Random(seed)
    return [
        b.task(
            f"t{i}",
            step=rng.choice("ABCD"),
            size=rng.randrange(4),
            submission=i,
            cpu=f"{rng.randrange(100, 3000)}m",
            memory=rng.randrange(1, 4) * 2**30,
        )
        for i in range(count)
    ]


def sample_dag() -> workflow.WorkflowDag:
    dag = workflow.WorkflowDag(b.RUN)
    dag.add_step_edges([("A", "B"), ("B", "C"), ("D", "C")])
    for step, n in (("B", 6), ("D", 2)):
        for k in range(n):
            dag.record_finished(step, success=True, runtime_s=float(k + 1), input_size=k)
    return dag


@pytest.mark.parametrize("name", RANKINGS)
def test_ranking_returns_a_permutation_and_never_mutates(name: str) -> None:
    tasks = tuple(sample_tasks(1))
    snapshot = list(tasks)
    view = workflow.WorkflowView({b.RUN: sample_dag()})
    ranked = registry.RANKINGS[name].make().rank(tasks, view, b.ctx(seed=3))
    assert list(tasks) == snapshot
    assert sorted(t.key for t in ranked) == sorted(t.key for t in tasks)
    assert len(ranked) == len(tasks)
    assert registry.RANKINGS[name].make().rank((), view, b.ctx()) == []


@pytest.mark.parametrize("name", RANKINGS)
def test_ranking_same_inputs_and_seed_give_same_order(name: str) -> None:
    tasks = tuple(sample_tasks(2))
    view = workflow.WorkflowView({b.RUN: sample_dag()})
    first = registry.RANKINGS[name].make().rank(tasks, view, b.ctx(seed=9))
    second = registry.RANKINGS[name].make().rank(tasks, view, b.ctx(seed=9))
    assert first == second


@pytest.mark.parametrize("name", RANKINGS)
def test_a_ranking_that_orders_by_arrival_returns_the_arrival_order(name: str) -> None:
    policy = registry.RANKINGS[name].make()
    if not interfaces.orders_by_arrival(policy):
        return
    tasks = sample_tasks(4)
    random.Random(5).shuffle(tasks)
    view = workflow.WorkflowView({b.RUN: sample_dag()})
    ranked = policy.rank(tasks, view, b.ctx(seed=1))
    assert [t.submission for t in ranked] == sorted(t.submission for t in tasks)


def test_only_fifo_says_it_orders_by_arrival() -> None:
    arrival_ordered = [
        name for name in RANKINGS if interfaces.orders_by_arrival(registry.RANKINGS[name].make())
    ]
    assert arrival_ordered == ["fifo"]  # the daemon waits for a release under every other one


@pytest.mark.parametrize("name", RANKINGS + ASSIGNMENTS)
def test_policy_modules_have_name_aliases_and_doc(name: str) -> None:
    entry = registry.RANKINGS.get(name) or registry.ASSIGNMENTS[name]
    assert entry.name == name and entry.doc
    assert all(
        alias == alias.lower() and "-" not in alias for alias in (entry.name, *entry.aliases)
    )


def test_names_and_aliases_are_unique_per_kind() -> None:
    for table in (registry.RANKINGS, registry.ASSIGNMENTS):
        spellings = [s for entry in table.values() for s in (entry.name, *entry.aliases)]
        assert len(spellings) == len(set(spellings))


@pytest.mark.parametrize("name", ASSIGNMENTS)
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_assignment_never_exceeds_free_resources(name: str, seed: int) -> None:
    rng = random.Random(seed)
    nodes = [
        b.node(
            f"n{i}",
            cpu=f"{rng.randrange(500, 8000)}m",
            memory=rng.randrange(1, 16) * 2**30,
            pods=rng.randrange(1, 6),
            usage=None
            if rng.random() < 0.5
            else Resources(cpu_millis=rng.randrange(8000), memory_bytes=rng.randrange(2**34)),
        )
        for i in range(rng.randrange(1, 6))
    ]
    pods = [
        cluster.PodInfo(
            uid=f"p{i}",
            node_name=rng.choice(nodes).name,
            request=Resources(
                cpu_millis=rng.randrange(3000), memory_bytes=rng.randrange(2**33), pods=1
            ),
        )
        for i in range(rng.randrange(4))
    ]
    snap = b.snapshot(nodes, pods)
    policies = registry.PolicySpec(ranking="fifo", assignment=name).build()
    result = b.run(snap, sample_tasks(seed, 12), policies=policies, context_=b.ctx(seed=seed))
    placed: dict[str, Resources] = defaultdict(Resources)
    for bind in result.binds:
        placed[bind.node] = placed[bind.node] + bind.request
    for node in nodes:
        if node.name in placed:
            total = snap.requested_on(node.name) + placed[node.name]
            assert total.cpu_millis <= node.allocatable.cpu_millis
            assert total.memory_bytes <= node.allocatable.memory_bytes
            assert total.pods <= node.allocatable.pods
    assert not [r for r in result.rejects if r.code.value == "PolicyError"]
