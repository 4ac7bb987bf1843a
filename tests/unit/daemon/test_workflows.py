import json
import random

import pytest

from scheduler.core import errors
from scheduler.kube import translate
from scheduler.runtime import workflows


def _pod(name="p", *, labels=None, annotations=None, scheduler="workflow-scheduler", ns="ns"):
    return translate.pod_facts(
        {
            "metadata": {
                "name": name,
                "namespace": ns,
                "uid": f"uid-{name}",
                "labels": labels or {},
                "annotations": annotations or {},
            },
            "spec": {"schedulerName": scheduler, "containers": [{"name": "c"}]},
        }
    )


def test_wfsched_convention() -> None:
    labels = workflows.read_task_labels(
        _pod(
            labels={
                "wfsched.io/run-id": "r1",
                "wfsched.io/step": "align",
                "wfsched.io/workflow": "wf",
            },
            annotations={
                "wfsched.io/task-id": "t7",
                "wfsched.io/depends-on": "t1, t2,,t1",
                "wfsched.io/input-size": "2Gi",
                "wfsched.io/attempt": "2",
                "wfsched.io/dag-configmap": "other/dag",
            },
        )
    )
    assert labels.run == "ns/r1"
    assert labels.engine == "wfsched"
    assert labels.step == "align"
    assert labels.task_id == "t7"
    assert labels.depends_on == ("t1", "t2")
    assert labels.input_size == 2 << 30
    assert labels.attempt == 1
    assert labels.dag_ref == ("other", "dag")
    assert labels.workflow_name == "wf"
    assert labels.problems == ()


def test_nextflow_and_argo_labels() -> None:
    nf = workflows.read_task_labels(
        _pod(
            "nf-abc", labels={"nextflow.io/runName": "happy_x", "nextflow.io/processName": "FASTQC"}
        )
    )
    assert (nf.run, nf.step, nf.task_id, nf.engine) == (
        "ns/happy_x",
        "FASTQC",
        "nf-abc",
        "nextflow",
    )
    argo = workflows.read_task_labels(
        _pod(
            "wf-1-step-123",
            labels={"workflows.argoproj.io/workflow": "wf-1"},
            annotations={
                "workflows.argoproj.io/node-name": "wf-1.preprocess(3:x)",
                "workflows.argoproj.io/node-id": "wf-1-123",
            },
        )
    )
    assert (argo.run, argo.step, argo.task_id) == ("ns/wf-1", "preprocess", "wf-1-123")


def test_cws_execution_scheduler_name_and_singletons() -> None:
    cws = workflows.read_task_labels(
        _pod("t", scheduler="workflow-scheduler-exec1"), execution_prefix="workflow-scheduler-"
    )
    assert cws.run == "ns/exec1"
    assert cws.engine == "cws"
    lonely = workflows.read_task_labels(_pod("solo"))
    assert lonely.run == "ns/pod:solo"
    assert lonely.engine == "none"


@pytest.mark.parametrize(
    ("annotations", "field"),
    [
        ({"wfsched.io/input-size": "lots"}, "wfsched.io/input-size"),
        ({"wfsched.io/input-size": "-5"}, "wfsched.io/input-size"),
        ({"wfsched.io/attempt": "zero"}, "wfsched.io/attempt"),
        ({"wfsched.io/attempt": "0"}, "wfsched.io/attempt"),
        ({"wfsched.io/dag-configmap": "a/b/c"}, "wfsched.io/dag-configmap"),
        ({"wfsched.io/dag-configmap": "Bad_Name"}, "wfsched.io/dag-configmap"),
    ],
)
def test_malformed_values_are_ignored_with_a_problem(annotations, field) -> None:
    labels = workflows.read_task_labels(
        _pod(labels={"wfsched.io/run-id": "r"}, annotations=annotations)
    )
    assert [p.field for p in labels.problems] == [field]
    assert labels.input_size == 0
    assert labels.attempt == 0
    assert labels.dag_ref is None


def _labels(task, step, deps=(), run="r", wf="wf"):
    return workflows.TaskLabels(
        run=f"ns/{run}",
        workflow_name=wf,
        engine="wfsched",
        step=step,
        task_id=task,
        depends_on=tuple(deps),
    )


def test_registry_learns_step_edges_and_seeds_the_next_run() -> None:
    reg = workflows.WorkflowRegistry()
    assert reg.observe_task(_labels("a1", "A")) == []
    assert reg.observe_task(_labels("b1", "B", ["a1", "gone"])) == []
    assert reg.observe_task(_labels("c1", "C", ["b1"])) == []
    dag = reg.dag("ns/r")
    assert dag.rank("A") == 2 and dag.rank("B") == 1 and dag.rank("C") == 0
    assert reg.learned_edges("wf") == {("A", "B"), ("B", "C")}
    # A second run of the same workflow knows the DAG from its first task.
    reg.observe_task(_labels("x", "A", run="r2"))
    assert reg.dag("ns/r2").rank("A") == 2


def test_registry_refuses_a_cycle_from_depends_on() -> None:
    reg = workflows.WorkflowRegistry()
    reg.observe_task(_labels("a", "A", wf=""))
    reg.observe_task(_labels("b", "B", ["a"], wf=""))
    problems = reg.observe_task(_labels("a2", "A", ["b"], wf=""))
    assert problems and "cycle" in problems[0].message
    assert reg.dag("ns/r").rank("A") == 1


def test_dag_document_cws_model_and_shorthand() -> None:
    reg = workflows.WorkflowRegistry()
    reg.observe_task(
        workflows.TaskLabels(
            run="ns/r",
            workflow_name="",
            engine="wfsched",
            step="P1",
            task_id="t",
            dag_ref=("ns", "dag"),
        )
    )
    assert reg.pending_dag_refs() == [("ns/r", ("ns", "dag"))]
    doc = {
        "vertices": [
            {"uid": 1, "label": "P1", "type": "PROCESS"},
            {"uid": 2, "label": None, "type": "OPERATOR"},
            {"uid": 3, "label": "P2", "type": "PROCESS"},
            {"uid": 4, "label": "P3", "type": "PROCESS"},
        ],
        "edges": [{"from": 1, "to": 2}, {"from": 2, "to": 3}, [3, 4]],
    }
    assert reg.apply_dag_document("ns/r", json.dumps(doc)) is None
    dag = reg.dag("ns/r")
    assert (dag.rank("P1"), dag.rank("P2"), dag.rank("P3")) == (2, 1, 0)
    assert reg.pending_dag_refs() == []
    short = workflows.parse_dag_document(json.dumps({"steps": ["a", "b"], "edges": [["a", "b"]]}))
    assert len(short.vertices) == 2 and len(short.edges) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not JSON"),
        ("[]", "JSON object"),
        (json.dumps({"vertices": [{"uid": 1, "type": "WHAT"}]}), "unknown"),
        (
            json.dumps({"vertices": [{"uid": 1, "label": "a"}], "edges": [[1, 9]]}),
            "unknown vertex 9",
        ),
        (json.dumps({"vertices": "x"}), "must be a list"),
        (json.dumps({"steps": ["a", 3]}), "non-empty strings"),
        ("x" * (workflows.MAX_DAG_DOCUMENT_BYTES + 1), "larger than"),
    ],
)
def test_bad_dag_documents(text, message) -> None:
    with pytest.raises(errors.DagError, match=message):
        workflows.parse_dag_document(text)


def test_cyclic_document_changes_nothing() -> None:
    reg = workflows.WorkflowRegistry()
    reg.observe_task(
        workflows.TaskLabels(
            run="ns/r", workflow_name="", engine="x", step="a", task_id="t", dag_ref=("ns", "d")
        )
    )
    cyclic = json.dumps({"steps": ["a", "b"], "edges": [["a", "b"], ["b", "a"]]})
    error = reg.apply_dag_document("ns/r", cyclic)
    assert error is not None and "cycle" in error
    assert reg.dag("ns/r").steps() == ("a",)
    assert "not found" in (reg.apply_dag_document("ns/r", None) or "")


def _ref_labels(run: str, dag_ref: tuple[str, str] | None) -> workflows.TaskLabels:
    return workflows.TaskLabels(
        run=run, workflow_name="", engine="wfsched", step="s", task_id=f"{run}-t", dag_ref=dag_ref
    )


def test_pending_dag_refs_index_follows_load_forget_and_eviction() -> None:
    reg = workflows.WorkflowRegistry()
    reg.observe_task(_ref_labels("ns/a", ("ns", "dag-a")))
    reg.observe_task(_ref_labels("ns/b", None))
    reg.observe_task(_ref_labels("ns/c", ("ns", "dag-c")))
    assert reg.pending_dag_refs() == [("ns/a", ("ns", "dag-a")), ("ns/c", ("ns", "dag-c"))]
    # A missing ConfigMap counts as loaded: the run is not asked for again.
    assert reg.apply_dag_document("ns/a", None) is not None
    reg.observe_task(_ref_labels("ns/a", ("ns", "dag-a")))
    assert reg.pending_dag_refs() == [("ns/c", ("ns", "dag-c"))]
    assert reg.forget_run("ns/c")
    assert reg.pending_dag_refs() == []
    # A run dropped as idle leaves the index too, and comes back with a fresh ref.
    reg.observe_task(_ref_labels("ns/d", ("ns", "dag-d")))
    reg.evict_idle(active=(), now=0.0, idle_s=1.0)
    assert reg.evict_idle(active=(), now=2.0, idle_s=1.0) == ["ns/a", "ns/b", "ns/d"]
    assert reg.pending_dag_refs() == []
    reg.observe_task(_ref_labels("ns/d", ("ns", "dag-d")))
    assert reg.pending_dag_refs() == [("ns/d", ("ns", "dag-d"))]


def test_pending_dag_refs_matches_a_full_scan_over_random_operations() -> None:
    rng = random.Random(7)
    reg = workflows.WorkflowRegistry()
    for _ in range(1000):
        run = f"ns/r{rng.randrange(20)}"
        op = rng.random()
        if op < 0.5:
            ref = ("ns", f"dag-{run}") if rng.random() < 0.7 else None
            reg.observe_task(_ref_labels(run, ref))
        elif op < 0.8:
            reg.apply_dag_document(run, None)
        else:
            reg.forget_run(run)
        full_scan = {
            run: state.dag_ref
            for run, state in reg._runs.items()
            if state.dag_ref is not None and not state.dag_loaded
        }
        assert dict(reg.pending_dag_refs()) == full_scan
