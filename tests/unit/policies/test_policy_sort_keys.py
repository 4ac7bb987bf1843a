"""Every ranking that offers per-task sort keys ranks exactly by them (incremental contract)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler import registry
from scheduler.core import interfaces, workflow
from tests.unit.core import core_builders as b

KEYED = [name for name in sorted(registry.RANKINGS) if name != "random"]


def test_only_random_re_ranks_without_keys() -> None:
    for name in registry.RANKINGS:
        ranking = registry.parse_strategy(name).build().ranking
        assert isinstance(ranking, interfaces.IncrementalRanking) == (name != "random"), name


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(KEYED),
    sizes=st.lists(st.integers(0, 3), min_size=0, max_size=12),
    finished=st.lists(st.sampled_from(["s0", "s1", "s2"]), max_size=8),
)
def test_rank_is_a_stable_sort_by_the_declared_key(
    name: str, sizes: list[int], finished: list[str]
) -> None:
    dag = workflow.WorkflowDag(b.RUN)
    dag.add_step_edges([("s0", "s1"), ("s1", "s2")])
    for step in finished:
        dag.record_finished(step, success=True, runtime_s=2.0 + len(step))
    tasks = [
        b.task(f"t{i}", step=f"s{i % 3}", submission=i, size=size) for i, size in enumerate(sizes)
    ]
    ranking = registry.parse_strategy(name).build().ranking
    assert isinstance(ranking, interfaces.IncrementalRanking)
    view = workflow.WorkflowView({b.RUN: dag})
    ranked = ranking.rank(tasks, view, b.ctx())
    assert ranked == sorted(tasks, key=lambda t: ranking.sort_key(t, view))
