"""What earlier runs teach: step runtimes and step edges, kept and restored across restarts."""

from __future__ import annotations

import json

import pytest
from test_loop import FakeKube, node, pod

from scheduler import registry
from scheduler.core import workflow
from scheduler.kube import translate
from scheduler.runtime import history, memory, metrics, workflows
from scheduler.runtime import loop as loop_mod
from scheduler.runtime import state as st
from scheduler.runtime.settings import Settings


def labels(run, name, task, step, depends_on=()):
    return workflows.TaskLabels(
        run=workflow.RunId(run),
        workflow_name=name,
        engine="wfsched",
        step=step,
        task_id=task,
        depends_on=tuple(depends_on),
    )


def test_runtime_estimates_are_medians_of_the_last_runtimes_and_survive_an_export():
    kept = history.WorkflowHistory(max_runtimes=4)
    assert kept.runtime_estimates("rnaseq") == {}
    for seconds in (100.0, 10.0, 12.0, 11.0, 13.0):
        assert kept.observe_runtime("rnaseq", "ALIGN", seconds)
    assert not kept.observe_runtime("rnaseq", "ALIGN", float("nan"))
    assert not kept.observe_runtime("rnaseq", "ALIGN", -1.0)
    assert not kept.observe_runtime("", "ALIGN", 1.0)
    assert kept.runtime_estimates("rnaseq") == {"ALIGN": 11.5}  # 100 s fell out
    kept.observe_runtime("rnaseq", "ALIGN", 50.0)
    kept.observe_runtime("other", "ALIGN", 7.0)
    assert kept.runtime_estimates("rnaseq") == {"ALIGN": 12.5}  # median of 12, 11, 13, 50

    restored = history.WorkflowHistory(max_runtimes=4)
    assert restored.restore(kept.export()) == 5
    assert restored.runtime_estimates("rnaseq") == {"ALIGN": 12.5}
    assert restored.runtime_estimates("other") == {"ALIGN": 7.0}


def test_step_edges_are_learned_once_forgotten_on_request_and_survive_an_export():
    kept = history.WorkflowHistory()
    before = kept.version
    kept.learn_step_edges("rnaseq", [("FASTQC", "MULTIQC"), ("ALIGN", "ALIGN"), ("", "X")])
    assert kept.step_edges("rnaseq") == {("FASTQC", "MULTIQC")}  # self-loop and blank dropped
    changed = kept.version
    assert changed > before
    kept.learn_step_edges("rnaseq", [("FASTQC", "MULTIQC")])
    assert kept.version == changed  # nothing new: nothing to save

    restored = history.WorkflowHistory()
    restored.restore(kept.export())
    assert restored.step_edges("rnaseq") == {("FASTQC", "MULTIQC")}
    restored.forget_step_edges("rnaseq")
    assert restored.step_edges("rnaseq") == frozenset()


def test_the_history_is_bounded_by_workflows_steps_and_edges():
    kept = history.WorkflowHistory(max_workflows=2, max_steps=2)
    for name in ("a", "b", "c"):
        kept.observe_runtime(name, "S", 1.0)
    assert len(kept) == 2 and kept.runtime_estimates("a") == {}  # least recently used dropped
    assert kept.observe_runtime("c", "T", 1.0)
    assert not kept.observe_runtime("c", "U", 1.0)  # a third step does not fit
    kept.learn_step_edges("c", [(f"s{i}", f"s{i + 1}") for i in range(20)])
    assert len(kept.step_edges("c")) == kept.max_edges == 8


def test_an_export_too_large_keeps_fewer_runtimes_but_every_edge():
    kept = history.WorkflowHistory()
    for step in range(30):
        for seconds in range(20):
            kept.observe_runtime("wf", f"STEP_{step}", float(seconds))
    kept.learn_step_edges("wf", [(f"STEP_{i}", f"STEP_{i + 1}") for i in range(29)])
    text = kept.export(max_bytes=3000)
    doc = json.loads(text)
    (entry,) = doc["workflows"]
    assert len(entry["edges"]) == 29
    assert 0 < max(len(v) for v in entry["runtimes"].values()) < 20
    assert len(text) <= 3000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "Expecting value"),
        ('{"format": 9}', "known format"),
        ('{"format": 1, "workflows": [{"runtimes": {}}]}', "malformed"),
        ('{"format": 1, "workflows": [{"workflow": 3}]}', "malformed"),
        ('{"format": 1, "workflows": [{"workflow": "w", "edges": [["a"]]}]}', "malformed"),
        ('{"format": 1, "workflows": [{"workflow": "w", "runtimes": {"s": ["x"]}}]}', "float"),
    ],
)
def test_a_malformed_history_restores_nothing_and_says_why(text, message):
    kept = history.WorkflowHistory()
    with pytest.raises(ValueError, match=message):
        kept.restore(text)
    assert len(kept) == 0


def test_runtimes_an_older_memory_store_kept_are_imported():
    older = json.dumps(
        {
            "format": memory.STORE_FORMAT,
            "predictor": "ponder",
            "steps": [
                {"workflow": "rnaseq", "step": "ALIGN", "history": [], "runtimes": [3.0, 5.0]},
                {"workflow": "rnaseq", "step": "QC", "history": []},
            ],
        }
    )
    runtimes = memory.stored_runtimes(older)
    assert runtimes == {("rnaseq", "ALIGN"): [3.0, 5.0]}
    kept = history.WorkflowHistory()
    assert kept.import_runtimes(runtimes) == 2
    assert kept.runtime_estimates("rnaseq") == {"ALIGN": 4.0}
    with pytest.raises(ValueError):
        memory.stored_runtimes('{"format": 1, "steps": [{"step": "x"}]}')


def test_a_restarted_registry_starts_a_new_run_with_earlier_edges_and_runtimes():
    kept = history.WorkflowHistory()
    first = workflows.WorkflowRegistry()
    first.history = kept
    first.observe_task(labels("ns/run-1", "rnaseq", "t1", "FASTQC"))
    first.observe_task(labels("ns/run-1", "rnaseq", "t2", "MULTIQC", depends_on=["t1"]))
    kept.observe_runtime("rnaseq", "MULTIQC", 40.0)
    assert kept.step_edges("rnaseq") == {("FASTQC", "MULTIQC")}

    restarted = workflows.WorkflowRegistry()  # a new daemon: nothing learned in memory
    restarted.history = history.WorkflowHistory()
    restarted.history.restore(kept.export())
    restarted.observe_task(labels("ns/run-2", "rnaseq", "a1", "FASTQC"))
    dag = restarted.dag(workflow.RunId("ns/run-2"))
    assert dag is not None
    assert dag.step_successors("FASTQC") == {"MULTIQC"}  # known before any MULTIQC task
    assert dag.mean_runtime("MULTIQC") == 40.0
    assert restarted.expected_runtimes(workflow.RunId("ns/run-2")) == {"MULTIQC": 40.0}
    unnamed = restarted.dag(workflow.RunId("ns/run-2"))
    assert unnamed is dag
    restarted.observe_task(labels("ns/solo", "", "x", "FASTQC"))
    assert restarted.dag(workflow.RunId("ns/solo")).step_successors("FASTQC") == frozenset()


def test_edges_that_contradict_each_other_are_dropped_from_the_history_too():
    kept = history.WorkflowHistory()
    kept.learn_step_edges("wf", [("A", "B"), ("B", "A")])  # a workflow that changed shape
    reg = workflows.WorkflowRegistry()
    reg.history = kept
    reg.observe_task(labels("ns/r", "wf", "t", "A"))
    assert kept.step_edges("wf") == frozenset()
    assert reg.dag(workflow.RunId("ns/r")).step_successors("A") == frozenset()


def _finished_pod(name, *, phase, run, step, seconds):
    raw = pod(
        name,
        node_name="n1",
        phase=phase,
        labels={"wfsched.io/run-id": run, "wfsched.io/workflow": "rnaseq", "wfsched.io/step": step},
    )
    raw["status"]["startTime"] = "2026-01-01T00:00:00Z"
    raw["status"]["containerStatuses"] = [
        {
            "name": "c",
            "state": {"terminated": {"finishedAt": f"2026-01-01T00:00:{seconds:02d}Z"}},
        }
    ]
    return translate.pod_facts(raw)


def test_the_daemon_state_keeps_runtimes_without_memory_prediction_and_saves_them_once():
    state = st.SchedulerState(
        settings=Settings(bind_workers=2),
        policies=registry.parse_strategy("critical_path-roundrobin").build(),
        metrics=metrics.Metrics(),
    )
    assert state.memory is None
    info, _ = translate.node_info(node("n1"))
    state.node_changed("n1", info)
    for name, phase, seconds in (("ok", "Succeeded", 42), ("oom", "Failed", 3)):
        facts = _finished_pod(name, phase=phase, run="r1", step="ALIGN", seconds=seconds)
        state.pod_changed(facts, deleted=False, now=1.0)
    assert state.history.runtime_estimates("rnaseq") == {"ALIGN": 42.0}  # failures not kept
    saves = [i for i in state.tick(now=10.0, leading=True) if isinstance(i, st.SaveHistory)]
    assert len(saves) == 1
    assert json.loads(saves[0].text)["workflows"][0]["runtimes"] == {"ALIGN": [42.0]}
    assert not [i for i in state.tick(now=1e6, leading=True) if isinstance(i, st.SaveHistory)]


class StoreKube(FakeKube):
    """Records every store write with its field manager."""

    def __init__(self) -> None:
        super().__init__()
        self.puts: list[tuple[str, str, str]] = []

    def put_configmap(self, namespace, name, data, *, labels, field_manager="wfsched"):
        ((key, text),) = data.items()
        self.puts.append((name, key, field_manager))
        self.last = text
        return {}


def test_shutdown_writes_the_history_under_its_own_field_manager_and_never_an_older_one():
    kube = StoreKube()
    loop = loop_mod.SchedulerLoop(
        settings=Settings(bind_workers=2),
        kube=kube,
        policies=registry.parse_strategy("critical_path").build(),
        metrics=metrics.Metrics(),
        memory_store=("kube-system", "wfsched-memory"),
    )
    loop.state.history.observe_runtime("rnaseq", "ALIGN", 10.0)
    loop.save_stores_now()
    assert kube.puts == [("wfsched-memory", history.HISTORY_KEY, "wfsched-history")]
    loop.save_stores_now()  # nothing changed: nothing written
    assert len(kube.puts) == 1
    newer = st.SaveHistory(text="newer")
    loop._write_store(newer, 10)
    loop._write_store(st.SaveHistory(text="older"), 9)  # handed out before: dropped
    assert kube.last == "newer" and len(kube.puts) == 2


@pytest.mark.parametrize(
    "stored",
    [
        {"history.json": "{not json"},
        {"history.json": '{"format": 1, "workflows": [{"workflow": 3}]}'},
        {"observations.json": '{"format": 1, "steps": [{"step": "no workflow"}]}'},
    ],
)
def test_the_daemon_starts_with_an_empty_history_from_a_broken_store(stored, caplog):
    from scheduler.runtime import daemon

    with caplog.at_level("WARNING"):
        kept = daemon.Daemon._history(stored)
    assert len(kept) == 0
    assert "could not restore the workflow history" in caplog.text


def test_the_daemon_restores_the_history_and_else_an_older_stores_runtimes():
    from scheduler.runtime import daemon

    earlier = history.WorkflowHistory()
    earlier.observe_runtime("rnaseq", "ALIGN", 30.0)
    earlier.learn_step_edges("rnaseq", [("TRIM", "ALIGN")])
    restored = daemon.Daemon._history({"history.json": earlier.export()})
    assert restored.runtime_estimates("rnaseq") == {"ALIGN": 30.0}
    assert restored.step_edges("rnaseq") == {("TRIM", "ALIGN")}
    older = json.dumps(
        {"format": 1, "steps": [{"workflow": "w", "step": "S", "history": [], "runtimes": [4.0]}]}
    )
    assert daemon.Daemon._history({"observations.json": older}).runtime_estimates("w") == {"S": 4.0}
