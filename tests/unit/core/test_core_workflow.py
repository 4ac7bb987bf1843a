import itertools

import pytest

from scheduler.core import errors, workflow
from scheduler.core.workflow import VertexKind as K

P, OP = K.PROCESS, K.OPERATOR


def chain_with_operators(order: tuple[int, ...]) -> workflow.WorkflowDag:
    """P1 -> op -> P2 -> op -> P3, edges inserted in the given order."""
    dag = workflow.WorkflowDag(workflow.RunId("r"))
    dag.add_vertex(1, kind=P, label="P1")
    dag.add_vertex(2, kind=OP)
    dag.add_vertex(3, kind=P, label="P2")
    dag.add_vertex(4, kind=OP)
    dag.add_vertex(5, kind=P, label="P3")
    edges = [(1, 2), (2, 3), (3, 4), (4, 5)]
    for i in order:
        dag.add_edge(*edges[i])
    return dag


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_rank_is_independent_of_edge_insertion_order(order: tuple[int, ...]) -> None:
    assert dict(chain_with_operators(order).ranks()) == {"P1": 2, "P2": 1, "P3": 0}


def test_operators_transparent_and_dead_end_operator_gives_rank_zero() -> None:
    dag = workflow.WorkflowDag(workflow.RunId("r"))
    dag.add_vertex("origin", kind=K.ORIGIN)
    dag.add_vertex("a", kind=P, label="A")
    dag.add_vertex("op", kind=OP)
    dag.add_vertex("node", kind=K.NODE)
    dag.add_vertex("b", kind=P, label="B")
    dag.add_vertex("sinkop", kind=OP)
    dag.add_edges([("origin", "a"), ("a", "op"), ("op", "node"), ("node", "b"), ("b", "sinkop")])
    assert dict(dag.ranks()) == {"A": 1, "B": 0}  # CWS would give B rank 1 (quirk 1)
    assert dag.step_successors("A") == frozenset({"B"})
    assert dag.steps() == ("A", "B")


def test_longest_path_wins_over_short_branch() -> None:
    dag = workflow.WorkflowDag(workflow.RunId("r"))
    dag.add_step_edges([("a", "b"), ("b", "c"), ("c", "d"), ("a", "d"), ("e", "d")])
    assert dict(dag.ranks()) == {"a": 3, "b": 2, "c": 1, "d": 0, "e": 1}
    dag.remove_edges([(dag.add_step("b"), dag.add_step("c"))])
    assert dag.rank("a") == 1 and dag.rank("b") == 0 and dag.rank("c") == 1
    assert dag.rank("unknown") == 0


def test_cycle_rejected_and_dag_unchanged() -> None:
    dag = workflow.WorkflowDag(workflow.RunId("r"))
    dag.add_step_edges([("a", "b"), ("b", "c")])
    with pytest.raises(errors.DagCycleError, match="cycle"):
        dag.add_step_edges([("c", "d"), ("d", "a")])
    assert dict(dag.ranks()) == {"a": 2, "b": 1, "c": 0}
    with pytest.raises(errors.DagCycleError):
        dag.add_step_edges([("a", "a")])


def test_unknown_vertex_and_bad_vertices() -> None:
    dag = workflow.WorkflowDag(workflow.RunId("r"))
    dag.add_vertex(1, kind=P, label="A")
    with pytest.raises(errors.DagError, match="unknown vertex 9"):
        dag.add_edges([(1, 9)])
    with pytest.raises(errors.DagError, match="label"):
        dag.add_vertex(2, kind=P)
    with pytest.raises(errors.DagError, match="already"):
        dag.add_vertex(3, kind=P, label="A")
    with pytest.raises(errors.DagError):
        dag.add_vertex(1, kind=OP)
    dag.add_vertex(1, kind=P, label="A")  # identical: no-op


def test_edges_by_id_and_vertex_removal() -> None:
    dag = workflow.WorkflowDag(workflow.RunId("r"))
    for uid, label in [(1, "A"), (2, "B"), (3, "C")]:
        dag.add_vertex(uid, kind=P, label=label)
    dag.add_edge(1, 2, edge_id=10)
    dag.add_edge(2, 3, edge_id=11)
    assert dag.rank("A") == 2
    dag.remove_edges_by_id([11, 99])
    assert dag.rank("A") == 1
    dag.remove_vertices([2])
    assert dict(dag.ranks()) == {"A": 0, "C": 0}


def test_task_edges_imply_step_edges_and_skip_same_step() -> None:
    dag = workflow.WorkflowDag(workflow.RunId("r"))
    for task_id, step in [("m1", "map"), ("m2", "map"), ("mm1", "merge"), ("mm2", "merge")]:
        dag.add_task(task_id, step)
    dag.add_task_edges([("m1", "mm1"), ("m2", "mm1"), ("mm1", "mm2")])
    assert dict(dag.ranks()) == {"map": 1, "merge": 0}
    assert dag.has_task_edges
    assert dag.task_children("mm1") == ("mm2",)
    assert dag.tasks_bottom_up().index("mm2") < dag.tasks_bottom_up().index("mm1")
    with pytest.raises(errors.DagCycleError):
        dag.add_task_edges([("mm2", "m1")])
    assert dag.task_children("mm2") == ()
    with pytest.raises(errors.DagError, match="unknown task"):
        dag.add_task_edges([("m1", "zzz")])


def _chain(length: int, step: str = "s") -> workflow.WorkflowDag:
    dag = workflow.WorkflowDag(workflow.RunId("r"))
    for i in range(length):
        dag.add_task(f"t{i}", step)
    dag.add_task_edges((f"t{i}", f"t{i + 1}") for i in range(length - 1))
    return dag


def test_task_cycle_closed_by_two_new_edges_together_is_rejected_and_nothing_added() -> None:
    dag = _chain(2)
    dag.add_task("t2", "s")
    with pytest.raises(errors.DagCycleError, match="cycle"):
        dag.add_task_edges([("t1", "t2"), ("t2", "t0")])
    assert dag.task_children("t1") == ()
    assert dag.task_children("t2") == ()


def test_new_edges_whose_children_reach_other_new_parents_are_not_a_cycle() -> None:
    dag = _chain(3)  # t0 -> t1 -> t2
    dag.add_task("a", "s")
    dag.add_task("b", "s")
    dag.add_task_edges([("a", "t0"), ("t2", "b")])  # t0 reaches t2: a path, not a cycle
    assert dag.task_children("a") == ("t0",)
    assert dag.task_children("t2") == ("b",)


def test_a_new_leaf_is_checked_without_walking_the_whole_graph(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dag = _chain(200)
    whole_graph_checks: list[object] = []
    real_check = workflow.nx.is_directed_acyclic_graph

    def counting_check(graph: object) -> bool:
        whole_graph_checks.append(graph)
        return bool(real_check(graph))

    monkeypatch.setattr(workflow.nx, "is_directed_acyclic_graph", counting_check)
    dag.add_task("leaf", "s")
    dag.add_task_edges([("t199", "leaf"), ("t10", "leaf")])
    assert whole_graph_checks == []
    with pytest.raises(errors.DagCycleError):
        dag.add_task_edges([("leaf", "t0")])
    assert len(whole_graph_checks) == 1
    assert dag.task_children("leaf") == ()


def test_finished_counts_and_runtime_model() -> None:
    dag = workflow.WorkflowDag(workflow.RunId("r"))
    assert dag.finished("s") == 0 and dag.mean_runtime("s") is None
    dag.record_finished("s", success=True, runtime_s=10.0, input_size=2**30)
    dag.record_finished("s", success=False, runtime_s=99.0)
    assert dag.finished("s") == 1 and dag.mean_runtime("s") == 10.0
    assert dag.runtime_estimate("s", 5 * 2**30) == 10.0  # one size only: the mean
    dag.record_finished("s", success=True, runtime_s=30.0, input_size=3 * 2**30)
    assert dag.runtime_estimate("s", 5 * 2**30) == pytest.approx(50.0)  # 10 s per GiB + 0
    assert dag.runtime_estimate("s", 0) == pytest.approx(0.0)
    before = dag.stats_version
    dag.record_finished("t", success=True, runtime_s=100.0, input_size=1)
    dag.record_finished("t", success=True, runtime_s=50.0, input_size=2**31)
    assert dag.stats_version == before + 2
    assert dag.runtime_estimate("t", 2**40) == 75.0  # negative slope: the mean


def test_workflow_view_defaults_for_unknown_runs() -> None:
    dag = workflow.WorkflowDag(workflow.RunId("r"))
    dag.add_step_edges([("a", "b")])
    dag.record_finished("a", success=True)
    view = workflow.WorkflowView({dag.run: dag})
    from tests.unit.core import core_builders as b

    assert view.rank(b.task("x", step="a", run="r")) == 1
    assert view.finished(b.task("x", step="a", run="r")) == 1
    assert view.rank(b.task("x", step="a", run="other")) == 0
    assert view.finished(b.task("x", step="a", run="other")) == 0
