"""Bad input: fuzzed pods, DAG documents and configuration files, then a live batch.

Unit level (hypothesis, derandomized): ``translate.pod_facts``, ``workflows.read_task_labels``,
``workflows.parse_dag_document`` and a ``SchedulerLoop`` fed the fuzzed pods through
``_handle`` (with a fake ``KubeActions``) never raise, and the pod is still queued; a
scheduling cycle over the fuzzed queue never raises; configuration errors are always
``SettingsError`` with a message.

Shapes the API server can deliver (every field of its schema type, values garbage) must be
handled; shapes it cannot deliver (a string where a mapping belongs) are fuzzed too, and the
crashes found there are pinned as strict xfails naming the defect (they start passing, and
fail as XPASS, once the defect is fixed).

Live: the daemon gets a batch of pods with malformed wfsched.io/ labels and annotations (what
the API server accepts) mixed with good ones, and runs whose DAG ConfigMap is broken: every
pod is bound, each malformed one gets an ``InvalidWorkflowMetadata`` Warning, each broken DAG
an ``InvalidWorkflowDAG`` Warning, and the daemon keeps running.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_helpers import (
    CapacityMonitor,
    alive,
    assert_invariants,
    count_log_events,
    count_succeeded,
    events_by_reason,
    make_daemon,
    metric_sum,
    pod_manifest,
    record,
    start_daemon,
    verify,
    wait_until,
)

from scheduler import registry
from scheduler.core import errors, podfacts
from scheduler.core import workflow as wf
from scheduler.kube import keys, translate
from scheduler.runtime import loop as loop_mod
from scheduler.runtime import metrics as metrics_mod
from scheduler.runtime import settings as settings_mod
from scheduler.runtime import workflows

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- strategies --------------------------------------------------------------------------------

SI = ["n", "u", "m", "", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
NASTY_QUANTITIES = [
    "1e400",
    "1E400",
    "1e-400",
    "99999999999999999999Ei",
    "9223372036854775807",
    "9223372036854775808",
    "9223372036854775807Ei",
    "-1",
    "-0",
    "+1",
    "-1Gi",
    "1.2.3",
    "",
    " ",
    "1 Gi",
    "1gi",
    "1KI",
    "Mi",
    ".",
    ".5",
    "5.",
    "0x10",
    "NaN",
    "nan",
    "Infinity",
    "-Infinity",
    "1_000",
    "\uff11\uff12",
    "1e",
    "1e+",
    "1ee3",
    "1.5e2.5",
    "\x00",
    "9" * 400,
    "0." + "0" * 400 + "1",
]
number_text = st.one_of(
    st.integers(0, 10**25).map(str),
    st.decimals(min_value=0, max_value=10**12, allow_nan=False, places=4).map(str),
    st.just(".5"),
    st.just("5."),
)
quantity_strings = st.one_of(
    st.builds(
        lambda sign, number, suffix: f"{sign}{number}{suffix}",
        st.sampled_from(["", "+", "-"]),
        number_text,
        st.one_of(
            st.sampled_from(SI), st.integers(-500, 500).map(lambda e: f"e{e}"), st.text(max_size=3)
        ),
    ),
    st.sampled_from(NASTY_QUANTITIES),
    st.text(max_size=20),
)
# What a raw (non-API) JSON document may carry where a quantity belongs.
quantity_values = st.one_of(
    quantity_strings,
    st.integers(-(10**40), 10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)
garbage_text = st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        [
            "",
            " ",
            ",",
            ",,,",
            "a,,b, ,c",
            "-1",
            "0",
            "1.5",
            "1e400",
            "99999999999999999999Ei",
            "NaN",
            "../..",
            "a/b/c",
            "/x",
            "x/",
            "UPPER",
            "kube-system/ok",
            "\x00",
            "\u202e",
            "x" * 300,
        ]
    ),
    quantity_strings,
)
many_ids = st.integers(9_990, 10_010).map(lambda n: ",".join(f"t{i}" for i in range(n)))

WF_LABEL_KEYS = [
    keys.RUN_ID_LABEL,
    keys.WORKFLOW_LABEL,
    keys.STEP_LABEL,
    keys.NEXTFLOW_RUN_NAME_LABEL,
    keys.NEXTFLOW_PROCESS_NAME_LABEL,
    keys.ARGO_WORKFLOW_LABEL,
]
WF_ANNOTATION_KEYS = [
    keys.TASK_ID_ANNOTATION,
    keys.DEPENDS_ON_ANNOTATION,
    keys.INPUT_SIZE_ANNOTATION,
    keys.ATTEMPT_ANNOTATION,
    keys.DAG_CONFIGMAP_ANNOTATION,
    keys.PEAK_MEMORY_ANNOTATION,
    keys.ORIGINAL_MEMORY_ANNOTATION,
    keys.ARGO_NODE_NAME_ANNOTATION,
    keys.ARGO_NODE_ID_ANNOTATION,
]
labels_st = st.dictionaries(
    st.one_of(st.sampled_from(WF_LABEL_KEYS), st.text(max_size=20)), garbage_text, max_size=6
)
annotations_st = st.dictionaries(
    st.one_of(st.sampled_from(WF_ANNOTATION_KEYS), st.text(max_size=20)),
    st.one_of(garbage_text, many_ids),
    max_size=8,
)
resource_list = st.dictionaries(
    st.one_of(
        st.sampled_from(["cpu", "memory", "pods", "ephemeral-storage", "nvidia.com/gpu"]),
        st.text(max_size=10),
    ),
    quantity_strings,
    max_size=4,
)
operators = st.one_of(
    st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt", "Equal", ""]),
    st.text(max_size=8),
)
json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10),
)
any_json = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def _partial(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts with any subset of ``fields`` (missing keys are part of the fuzz)."""
    return st.fixed_dictionaries({}, optional=fields)


# API-shaped: every field has its schema type; values, keys and operators are garbage.
requirement = _partial(
    key=garbage_text, operator=operators, values=st.lists(garbage_text, max_size=3)
)
toleration = _partial(
    key=garbage_text,
    operator=operators,
    value=garbage_text,
    effect=st.one_of(
        st.sampled_from(["NoSchedule", "PreferNoSchedule", "NoExecute"]), garbage_text
    ),
    tolerationSeconds=st.integers(-(10**12), 10**12),
)
affinity = _partial(
    nodeAffinity=_partial(
        requiredDuringSchedulingIgnoredDuringExecution=_partial(
            nodeSelectorTerms=st.lists(
                _partial(
                    matchExpressions=st.lists(requirement, max_size=3),
                    matchFields=st.lists(requirement, max_size=2),
                ),
                max_size=3,
            )
        ),
        preferredDuringSchedulingIgnoredDuringExecution=st.lists(any_json, max_size=2),
    ),
    podAffinity=any_json,
)
container = _partial(
    name=garbage_text,
    resources=_partial(requests=resource_list, limits=resource_list),
    restartPolicy=st.sampled_from(["Always", "Never", "", "garbage"]),
)
api_shaped_spec = _partial(
    schedulerName=st.just("workflow-scheduler"),
    containers=st.lists(container, min_size=1, max_size=3),
    initContainers=st.lists(container, max_size=2),
    overhead=resource_list,
    nodeSelector=st.dictionaries(garbage_text, garbage_text, max_size=3),
    affinity=affinity,
    tolerations=st.lists(toleration, max_size=4),
    schedulingGates=st.lists(_partial(name=garbage_text), max_size=2),
    resources=_partial(requests=resource_list),
).map(lambda spec: {"schedulerName": "workflow-scheduler", **spec})

# Wrong shapes: anything anywhere (what a non-API source, or a future API change, could send).
wrong_spec = _partial(
    containers=st.one_of(
        any_json,
        st.lists(_partial(name=any_json, resources=any_json), max_size=2),
        st.lists(_partial(resources=_partial(requests=any_json, limits=any_json)), max_size=2),
    ),
    initContainers=any_json,
    overhead=any_json,
    nodeSelector=any_json,
    affinity=st.one_of(
        any_json,
        _partial(nodeAffinity=any_json),
        _partial(
            nodeAffinity=_partial(
                requiredDuringSchedulingIgnoredDuringExecution=st.one_of(
                    any_json, _partial(nodeSelectorTerms=any_json)
                )
            )
        ),
    ),
    tolerations=st.one_of(any_json, st.lists(any_json, max_size=3)),
    schedulingGates=any_json,
    resources=any_json,
).map(lambda spec: {"schedulerName": "workflow-scheduler", **spec})


def pod_of(spec: dict[str, Any], labels: dict, annotations: dict, n: int = 0) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"fuzz-{n}",
            "namespace": "ns",
            "uid": f"uid-{n}",
            "labels": labels,
            "annotations": annotations,
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": spec,
        "status": {"phase": "Pending"},
    }


# --- fakes ------------------------------------------------------------------------------------


class FakeKube:
    """``KubeActions`` that records calls; ``get_configmap`` serves ``configmaps``."""

    def __init__(self) -> None:
        self.binds: list[tuple[str, str]] = []
        self.events: list[dict[str, Any]] = []
        self.configmaps: dict[tuple[str, str], dict[str, Any]] = {}
        self.lock = threading.Lock()

    def bind(self, namespace, name, uid, node):
        with self.lock:
            self.binds.append((name, node))

    def set_pod_condition(self, namespace, name, condition):
        pass

    def create_event(self, **kwargs):
        with self.lock:
            self.events.append(kwargs)

    def get_configmap(self, namespace, name):
        return self.configmaps.get((namespace, name))

    def resize_pod(self, namespace, name, containers):
        return {}

    def patch_pod_metadata(self, namespace, name, *, labels=None, annotations=None):
        return {}

    def put_configmap(self, namespace, name, data, *, labels, field_manager="wfsched"):
        return {}


class ErrorLogs(logging.Handler):
    """Collects ERROR records of the loop (``_handle`` logs what it swallowed there)."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def shutdown(loop: loop_mod.SchedulerLoop) -> None:
    """Wait for every worker of the loop (binds, side effects, Events)."""
    loop.shutdown()


def make_loop(kube: FakeKube) -> loop_mod.SchedulerLoop:
    return loop_mod.SchedulerLoop(
        settings=settings_mod.Settings(bind_workers=2),
        kube=kube,
        policies=registry.parse_strategy("rank_min-roundrobin").build(),
        metrics=metrics_mod.Metrics(),
    )


NODE = {
    "metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}},
    "spec": {},
    "status": {
        "allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True"}],
    },
}


def feed_loop(pods: list[dict[str, Any]]) -> tuple[loop_mod.SchedulerLoop, FakeKube, ErrorLogs]:
    """Hand the pods to a fresh loop through ``_handle``, run a cycle, wait for side effects."""
    kube = FakeKube()
    loop = make_loop(kube)
    errors_seen = ErrorLogs()
    logger = logging.getLogger(loop_mod.__name__)
    logger.addHandler(errors_seen)
    try:
        loop._handle((loop_mod.NODE_EVENTS, "ADDED", NODE))
        for pod in pods:
            loop._handle((loop_mod.POD_EVENTS, "ADDED", pod))
        queued = {entry.facts.ref.uid for entry in loop.state.pods.values()}
        assert queued == {p["metadata"]["uid"] for p in pods}, "a fuzzed pod was not queued"
        loop.run_one_cycle()  # must not raise: run() does not guard it
        loop._drain()
    finally:
        shutdown(loop)
        logger.removeHandler(errors_seen)
    return loop, kube, errors_seen


# --- pods ---------------------------------------------------------------------------------------


@FUZZ
@given(spec=api_shaped_spec, labels=labels_st, annotations=annotations_st)
def test_pod_facts_and_task_labels_never_raise_on_api_shaped_pods(spec, labels, annotations):
    facts = translate.pod_facts(pod_of(spec, labels, annotations))
    labels_read = workflows.read_task_labels(facts, execution_prefix="workflow-scheduler-")
    assert facts.request.cpu_millis >= 0 and facts.request.memory_bytes >= 0
    assert labels_read.input_size >= 0 and labels_read.attempt >= 0
    assert len(labels_read.depends_on) <= workflows.MAX_DEPENDENCIES
    registry_ = workflows.WorkflowRegistry()
    registry_.observe_task(labels_read)


@FUZZ
@given(pods=st.lists(st.tuples(api_shaped_spec, labels_st, annotations_st), min_size=1, max_size=6))
def test_the_loop_queues_every_api_shaped_fuzzed_pod_and_reports_problems(pods):
    manifests = [pod_of(spec, lab, ann, n) for n, (spec, lab, ann) in enumerate(pods)]
    _loop, kube, errors_seen = feed_loop(manifests)
    assert errors_seen.records == [], [r.getMessage() for r in errors_seen.records]
    warned = {e["pod_name"] for e in kube.events if e["reason"] == "InvalidWorkflowMetadata"}
    for manifest in manifests:
        facts = translate.pod_facts(manifest)
        problems = facts.problems + workflows.read_task_labels(facts).problems
        if problems:
            assert manifest["metadata"]["name"] in warned


@settings(FUZZ, report_multiple_bugs=False)
@given(spec=wrong_spec, labels=labels_st, annotations=annotations_st)
def test_pod_facts_never_raise_on_wrong_shapes(spec, labels, annotations):
    translate.pod_facts(pod_of(spec, labels, annotations))


WRONG_SHAPES = {
    "container resources is a string": {"containers": [{"name": "c", "resources": "x"}]},
    "spec.resources is a string": {"containers": [], "resources": "x"},
    "nodeAffinity is a string": {"affinity": {"nodeAffinity": "x"}},
    "required terms is a list": {
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [1]}}
    },
    "nodeSelectorTerms is a string": {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": "ab"}
            }
        }
    },
    "a nodeSelectorTerm is a number": {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [1]}
            }
        }
    },
}


@pytest.mark.parametrize("spec", WRONG_SHAPES.values(), ids=WRONG_SHAPES.keys())
def test_pod_facts_on_wrong_shapes(spec):
    facts = translate.pod_facts(pod_of({"schedulerName": "workflow-scheduler", **spec}, {}, {}))
    assert facts.problems, "the malformed field must be reported"
    if "affinity" in spec:
        # an unreadable required affinity must not widen placement: no node matches
        assert not facts.constraints.matches_node(node_name="n1", labels={})


def test_a_wrong_shaped_pod_is_still_queued_and_warned_about():
    pod = pod_of(
        {"schedulerName": "workflow-scheduler", **WRONG_SHAPES["nodeAffinity is a string"]}, {}, {}
    )
    kube = FakeKube()
    loop = make_loop(kube)
    errors_seen = ErrorLogs()
    logging.getLogger(loop_mod.__name__).addHandler(errors_seen)
    try:
        loop._handle((loop_mod.POD_EVENTS, "ADDED", pod))
    finally:
        logging.getLogger(loop_mod.__name__).removeHandler(errors_seen)
        shutdown(loop)
    assert [r.getMessage() for r in errors_seen.records] == []
    assert "uid-0" in loop.state.pods
    assert [e for e in kube.events if e["reason"] == "InvalidWorkflowMetadata"]


@pytest.mark.parametrize("quantity", [*NASTY_QUANTITIES, "1", "1m", "1.5Gi", "1e3", "100n"])
def test_every_nasty_quantity_is_a_problem_or_a_value(quantity):
    spec = {
        "schedulerName": "workflow-scheduler",
        "containers": [
            {"name": "c", "resources": {"requests": {"cpu": quantity, "memory": quantity}}}
        ],
    }
    facts = translate.pod_facts(pod_of(spec, {}, {}))
    assert facts.request.cpu_millis >= 0 and facts.request.memory_bytes >= 0
    assert facts.request.cpu_millis < 2**63 and facts.request.memory_bytes < 2**63


# --- DAG documents ------------------------------------------------------------------------------

hashable_id = st.one_of(
    st.sampled_from(["a", "b", "c", "d", 1, 2, 3]),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=6),
)
steps_doc = st.fixed_dictionaries(
    {"steps": st.one_of(st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=5), any_json)},
    optional={
        "edges": st.one_of(
            st.lists(st.lists(hashable_id, min_size=2, max_size=2), max_size=8), any_json
        )
    },
)
vertices_doc = st.fixed_dictionaries(
    {},
    optional={
        "vertices": st.one_of(
            st.lists(
                _partial(
                    uid=hashable_id,
                    label=st.one_of(st.text(max_size=5), any_json),
                    type=st.one_of(
                        st.sampled_from(["PROCESS", "OPERATOR", "ORIGIN", "NODE", "process"]),
                        any_json,
                    ),
                ),
                max_size=6,
            ),
            any_json,
        ),
        "edges": st.one_of(
            st.lists(
                st.one_of(
                    st.lists(hashable_id, min_size=2, max_size=2),
                    _partial(**{"from": hashable_id, "to": hashable_id}),
                    st.lists(hashable_id, max_size=4),
                ),
                max_size=8,
            ),
            any_json,
        ),
    },
)
dag_texts = st.one_of(
    steps_doc.map(json.dumps),
    vertices_doc.map(json.dumps),
    any_json.map(json.dumps),
    st.text(max_size=50),
    st.integers(0, 900).map(lambda n: "[" * n + "]" * n),
)


def _registry_with_dag_ref() -> tuple[workflows.WorkflowRegistry, wf.RunId]:
    reg = workflows.WorkflowRegistry()
    labels = workflows.TaskLabels(
        run=wf.RunId("ns/run"),
        workflow_name="w",
        engine="wfsched",
        step=wf.StepName("a"),
        task_id="t1",
        dag_ref=("ns", "dag"),
    )
    reg.observe_task(labels)
    return reg, labels.run


@FUZZ
@given(text=dag_texts)
def test_dag_documents_raise_only_dag_errors_and_are_applied_or_refused_whole(text):
    try:
        workflows.parse_dag_document(text)
    except errors.DagError as exc:
        assert str(exc)
    reg, run = _registry_with_dag_ref()
    before = reg.dag(run)
    outcome = reg.apply_dag_document(run, text)
    assert outcome is None or (isinstance(outcome, str) and outcome)
    assert reg.dag(run) is before


def test_huge_and_cyclic_dag_documents_are_refused_with_a_message():
    reg, run = _registry_with_dag_ref()
    huge = json.dumps({"steps": ["a"], "pad": "x" * (workflows.MAX_DAG_DOCUMENT_BYTES + 1)})
    assert "larger than" in reg.apply_dag_document(run, huge)
    reg, run = _registry_with_dag_ref()
    cycle = {"steps": ["a", "b", "c"], "edges": [["a", "b"], ["b", "c"], ["c", "a"]]}
    assert "cycle" in reg.apply_dag_document(run, json.dumps(cycle))
    reg, run = _registry_with_dag_ref()
    assert "unknown vertex" in reg.apply_dag_document(
        run, json.dumps({"steps": ["a"], "edges": [["a", "ghost"]]})
    )
    many = {
        "steps": [f"s{i}" for i in range(5000)],
        "edges": [[f"s{i}", f"s{i + 1}"] for i in range(4999)],
    }
    reg, run = _registry_with_dag_ref()
    assert reg.apply_dag_document(run, json.dumps(many)) is None


DAG_DEFECTS = {
    "edge endpoint is an object": '{"steps": ["a"], "edges": [["a", {}]]}',
    "edge endpoint is a list": '{"steps": ["a"], "edges": [["a", ["x"]]]}',
    "from/to is a list": (
        '{"vertices": [{"uid": 1, "label": "a"}], "edges": [{"from": [], "to": 1}]}'
    ),
    "nesting deeper than the recursion limit": "[" * 100_000 + "]" * 100_000,
}


@pytest.mark.parametrize("text", DAG_DEFECTS.values(), ids=DAG_DEFECTS.keys())
def test_dag_document_defects(text):
    reg, run = _registry_with_dag_ref()
    assert reg.apply_dag_document(run, text)


def _broken_dag_run(text: str) -> tuple[FakeKube, ErrorLogs]:
    """One pod whose run's DAG ConfigMap holds ``text``; returns after it was bound."""
    kube = FakeKube()
    kube.configmaps[("ns", "dag")] = {"data": {keys.DAG_CONFIGMAP_KEY: text}}
    pod = pod_of(
        {
            "schedulerName": "workflow-scheduler",
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}],
            # held until the document was handled, so a Warning has a pending pod to go to
            "schedulingGates": [{"name": "hold"}],
        },
        {keys.RUN_ID_LABEL: "r1", keys.STEP_LABEL: "a"},
        {keys.DAG_CONFIGMAP_ANNOTATION: "dag"},
    )
    loop = make_loop(kube)
    errors_seen = ErrorLogs()
    logging.getLogger(loop_mod.__name__).addHandler(errors_seen)
    try:
        loop._handle((loop_mod.NODE_EVENTS, "ADDED", NODE))
        loop._handle((loop_mod.POD_EVENTS, "ADDED", pod))
        deadline = time.monotonic() + 10
        while loop.state._fetching_dags and time.monotonic() < deadline:
            loop._drain()
            time.sleep(0.01)
        assert not loop.state._fetching_dags, "the DAG document never arrived"
        del pod["spec"]["schedulingGates"]
        loop._handle((loop_mod.POD_EVENTS, "MODIFIED", pod))
        loop.run_one_cycle()
        deadline = time.monotonic() + 10
        while loop.stats.binds_ok < 1 and time.monotonic() < deadline:
            loop._drain()
            time.sleep(0.01)
    finally:
        logging.getLogger(loop_mod.__name__).removeHandler(errors_seen)
        shutdown(loop)
    return kube, errors_seen


@pytest.mark.parametrize("text", DAG_DEFECTS.values(), ids=DAG_DEFECTS.keys())
def test_a_broken_dag_document_never_costs_the_pod(text):
    kube, _ = _broken_dag_run(text)
    assert kube.binds == [("fuzz-0", "n1")]


@pytest.mark.parametrize("text", DAG_DEFECTS.values(), ids=DAG_DEFECTS.keys())
def test_a_broken_dag_document_is_reported(text):
    kube, errors_seen = _broken_dag_run(text)
    assert [r.getMessage() for r in errors_seen.records] == []
    assert [e for e in kube.events if e["reason"] == "InvalidWorkflowDAG"]


def test_a_refused_dag_document_is_reported_to_a_pending_pod():
    """The same path with a document that is refused the intended way (control case)."""
    kube, errors_seen = _broken_dag_run("{{{ not json")
    assert errors_seen.records == []
    warned = [
        (e.get("regarding_kind", "Pod"), e["pod_name"])
        for e in kube.events
        if e["reason"] == "InvalidWorkflowDAG"
    ]
    assert sorted(warned) == [("ConfigMap", "dag"), ("Pod", "fuzz-0")]
    assert kube.binds == [("fuzz-0", "n1")]


class SlowConfigMaps(FakeKube):
    """``get_configmap`` answers only once ``release`` is set (a slow API server)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def get_configmap(self, namespace, name):
        self.release.wait(10)
        return super().get_configmap(namespace, name)


def test_a_refused_dag_is_reported_even_when_the_pods_were_bound_first():
    kube = SlowConfigMaps()
    kube.configmaps[("ns", "dag")] = {"data": {keys.DAG_CONFIGMAP_KEY: "{{{ not json"}}
    pod = pod_of(
        {
            "schedulerName": "workflow-scheduler",
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}],
        },
        {keys.RUN_ID_LABEL: "r1", keys.STEP_LABEL: "a"},
        {keys.DAG_CONFIGMAP_ANNOTATION: "dag"},
    )
    loop = make_loop(kube)
    try:
        loop._handle((loop_mod.NODE_EVENTS, "ADDED", NODE))
        loop._handle((loop_mod.POD_EVENTS, "ADDED", pod))
        loop.run_one_cycle()
        deadline = time.monotonic() + 10
        while loop.stats.binds_ok < 1 and time.monotonic() < deadline:
            loop._drain()
            time.sleep(0.01)
        assert kube.binds == [("fuzz-0", "n1")]
        kube.release.set()  # the document arrives after the binding
        deadline = time.monotonic() + 10
        while (
            "ns/r1" in {str(r) for r in loop.state._fetching_dags} and time.monotonic() < deadline
        ):
            loop._drain()
            time.sleep(0.01)
    finally:
        kube.release.set()
        shutdown(loop)
    assert loop.metrics.input_errors.labels(kind="dag")._value.get() == 1
    warned = [e for e in kube.events if e["reason"] == "InvalidWorkflowDAG"]
    assert [(e["regarding_kind"], e["pod_name"]) for e in warned] == [("ConfigMap", "dag")]


# --- configuration files ------------------------------------------------------------------------

SETTING_KEYS = [f.name for f in settings_mod.Settings.__dataclass_fields__.values()]
LEASE_KEYS = list(settings_mod.LeaseSettings.__dataclass_fields__)
yaml_value = st.one_of(
    json_leaf,
    st.sampled_from([".inf", "-.inf", ".nan", "1e400", "0x10", "~", "yes", "no", "on", "-1", "0"]),
    st.lists(json_leaf, max_size=3),
    st.dictionaries(st.text(max_size=5), json_leaf, max_size=2),
    quantity_strings,
)
config_docs = st.dictionaries(
    st.one_of(st.sampled_from(SETTING_KEYS), st.text(max_size=10)),
    st.one_of(
        yaml_value,
        st.dictionaries(st.one_of(st.sampled_from(LEASE_KEYS), st.text(max_size=6)), yaml_value),
    ),
    max_size=6,
)
env_names = st.one_of(
    st.sampled_from([f"WFSCHED_{k.upper()}" for k in SETTING_KEYS if k != "lease"]),
    st.sampled_from([f"WFSCHED_LEASE__{k.upper()}" for k in LEASE_KEYS]),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_", max_size=12).map(lambda s: f"WFSCHED_{s}"),
)
envs = st.dictionaries(env_names, garbage_text, max_size=4)


def _load_strict(tmp: Path, text: str | bytes | None, env: dict[str, str]) -> None:
    """``load_settings`` on ``text`` (written to a file) and ``env``; errors propagate."""
    path = None
    if text is not None:
        path = tmp / "config.yaml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
    settings_mod.load_settings(path, env=env)


def _load(tmp: Path, text: str | bytes | None, env: dict[str, str]) -> None:
    """Like ``_load_strict``, but a ``SettingsError`` is the expected way to refuse input."""
    try:
        _load_strict(tmp, text, env)
    except settings_mod.SettingsError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        assert str(exc).startswith("invalid configuration: ")


@FUZZ
@given(
    text=st.one_of(
        config_docs.map(lambda d: json.dumps(d, default=str)),
        config_docs.map(lambda d: __import__("yaml").safe_dump(d)),
        st.text(max_size=200),
    ),
    env=envs,
)
def test_configuration_errors_are_settings_errors(tmp_path_factory, text, env):
    _load(tmp_path_factory.mktemp("cfg"), text, env)


SETTINGS_DEFECTS = {
    "a config file that is not UTF-8": (b"qps: \xff\xfe\n", {}),
    "WFSCHED_LEASE=<scalar> and WFSCHED_LEASE__ENABLED together": (
        None,
        {"WFSCHED_LEASE": "off", "WFSCHED_LEASE__ENABLED": "1"},
    ),
}


@pytest.mark.parametrize("text,env", SETTINGS_DEFECTS.values(), ids=SETTINGS_DEFECTS.keys())
def test_settings_defects(tmp_path, text, env):
    with pytest.raises(settings_mod.SettingsError):
        _load_strict(tmp_path, text, env)


@pytest.mark.parametrize("key", ["lease.duration_s", "cycle_interval_s", "qps"])
def test_non_finite_durations_are_refused(tmp_path, key):
    section, _, name = key.rpartition(".")
    text = f"{section}:\n  {name}: .inf\n" if section else f"{name}: .inf\n"
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(settings_mod.SettingsError):
        settings_mod.load_settings(path, env={})


def test_a_nan_is_refused(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("lease:\n  duration_s: .nan\n")
    with pytest.raises(settings_mod.SettingsError, match="duration_s"):
        settings_mod.load_settings(path, env={})
    assert not math.isfinite(float("nan"))


# --- live ----------------------------------------------------------------------------------------

BAD_DAGS = {
    "dag-cycle": json.dumps({"steps": ["a", "b"], "edges": [["a", "b"], ["b", "a"]]}),
    "dag-dangling": json.dumps({"steps": ["a"], "edges": [["a", "ghost"]]}),
    "dag-wrong-types": json.dumps({"vertices": "everything", "edges": 7}),
    "dag-not-json": "{{{ not json",
    "dag-bad-type": json.dumps({"vertices": [{"uid": 1, "label": "a", "type": "BANANA"}]}),
    "dag-missing": None,
}
HOLD = "wfsched.io/test-hold"


def _malformed_annotations(rng: random.Random) -> dict[str, str]:
    """Seeded garbage for the wfsched.io/ annotations (the API server accepts any string)."""
    pool = {
        keys.INPUT_SIZE_ANNOTATION: ["lots", "-5", "1e400", "99999999999999999999Ei", "1.2.3"],
        keys.ATTEMPT_ANNOTATION: ["zero", "-1", "1.5", "0", "", "2" * 40],
        keys.DAG_CONFIGMAP_ANNOTATION: ["a/b/c", "UPPER", "../x", "/", "x" * 300],
        keys.DEPENDS_ON_ANNOTATION: [",".join(f"t{i}" for i in range(10_001)), ",,, ,"],
        keys.PEAK_MEMORY_ANNOTATION: ["huge", "-1"],
        keys.TASK_ID_ANNOTATION: ["", " ", "x" * 500, "a,b"],
    }
    chosen = rng.sample(sorted(pool), rng.randint(1, 4))
    return {key: rng.choice(pool[key]) for key in chosen}


def _expected_problems(manifest: dict[str, Any], namespace: str) -> tuple[podfacts.Problem, ...]:
    """What the pure translation says about a manifest (the oracle for the live test)."""
    meta = {**manifest["metadata"], "namespace": namespace, "uid": "u"}
    facts = translate.pod_facts({**manifest, "metadata": meta})
    return facts.problems + workflows.read_task_labels(facts).problems


def _held(manifest: dict[str, Any]) -> dict[str, Any]:
    manifest["spec"]["schedulingGates"] = [{"name": HOLD}]
    return manifest


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_live_daemon_schedules_malformed_pods_and_warns_about_them(plane, tmp_path):
    rng = random.Random(5)
    namespace = plane.namespace("badinput")
    nodes = plane.nodes(2, cpu="8", memory="32Gi")
    for name, text in BAD_DAGS.items():
        if text is not None:
            plane.core_v1.create_namespaced_config_map(
                namespace, {"metadata": {"name": name}, "data": {keys.DAG_CONFIGMAP_KEY: text}}
            )
    daemon = make_daemon(plane, tmp_path, namespace)
    start_daemon(daemon)
    manifests: list[dict[str, Any]] = []
    good, malformed, bad_dag, held = [], [], [], []
    for i in range(20):
        notes = {keys.TASK_ID_ANNOTATION: f"g{i}", keys.INPUT_SIZE_ANNOTATION: str(1000 * i)}
        if i:
            notes[keys.DEPENDS_ON_ANNOTATION] = f"g{i - 1}"
        labels = {keys.RUN_ID_LABEL: "good-run", keys.STEP_LABEL: f"s{i // 7}"}
        manifests.append(pod_manifest(f"good-{i}", runtime="2s", labels=labels, annotations=notes))
        good.append(f"good-{i}")
    for i in range(24):
        labels = {keys.RUN_ID_LABEL: f"bad-run-{i % 4}", keys.STEP_LABEL: "x___y"}
        manifest = pod_manifest(
            f"bad-{i}", runtime="2s", labels=labels, annotations=_malformed_annotations(rng)
        )
        manifests.append(manifest)
        (malformed if _expected_problems(manifest, namespace) else good).append(f"bad-{i}")
    # Registry-level problems: a task that depends on itself; a task id used twice in a run
    # while both pods are pending (held by a scheduling gate until both were seen).
    manifests.append(
        pod_manifest(
            "self-dep",
            runtime="2s",
            labels={keys.RUN_ID_LABEL: "self-run", keys.STEP_LABEL: "c"},
            annotations={keys.TASK_ID_ANNOTATION: "a", keys.DEPENDS_ON_ANNOTATION: "a"},
        )
    )
    malformed.append("self-dep")
    for name in ("dup-1", "dup-2"):
        manifests.append(
            _held(
                pod_manifest(
                    name,
                    runtime="2s",
                    labels={keys.RUN_ID_LABEL: "dup-run", keys.STEP_LABEL: "d"},
                    annotations={keys.TASK_ID_ANNOTATION: "same"},
                )
            )
        )
        held.append(name)
    # Broken DAGs: held too, so a pod of the run is still pending when the document arrives.
    for name in BAD_DAGS:
        pod = f"run-{name}"
        manifests.append(
            _held(
                pod_manifest(
                    pod,
                    runtime="2s",
                    labels={keys.RUN_ID_LABEL: f"run-{name}", keys.STEP_LABEL: "a"},
                    annotations={keys.DAG_CONFIGMAP_ANNOTATION: name},
                )
            )
        )
        bad_dag.append(pod)
        held.append(pod)
    rng.shuffle(manifests)
    names = [m["metadata"]["name"] for m in manifests]
    rejected = []
    with CapacityMonitor(plane.core_v1, nodes, interval_s=0.5) as monitor:
        for manifest in manifests:
            try:
                plane.core_v1.create_namespaced_pod(namespace, manifest, _preload_content=False)
            except Exception as exc:  # the API server's own validation: reported
                rejected.append((manifest["metadata"]["name"], str(exc)[:200]))

        def warned(reason: str) -> set[str]:
            return {
                e["involvedObject"]["name"]
                for e in events_by_reason(plane.core_v1, namespace, reason)
            }

        wait_until(
            lambda: (
                set(bad_dag) <= warned("InvalidWorkflowDAG")
                and {"dup-1", "dup-2"} & warned("InvalidWorkflowMetadata")
            ),
            timeout_s=60,
            what="warnings about the held pods",
        )
        for name in held:
            plane.core_v1.patch_namespaced_pod(name, namespace, {"spec": {"schedulingGates": None}})
        wait_until(
            lambda: count_succeeded(plane.core_v1, namespace) == len(names),
            timeout_s=240,
            what="every pod to succeed",
        )
    metadata_warned = warned("InvalidWorkflowMetadata")
    dag_warned = warned("InvalidWorkflowDAG")
    logs = [daemon.log_path]
    metrics = daemon.metrics()
    verdict = verify(plane.core_v1, namespace, names, monitor, logs)
    is_alive = alive(daemon)
    handling_failed = count_log_events(logs, "event handling failed")
    daemon.stop()
    record(
        "bad-input-live",
        {
            "title": "malformed workflow metadata and broken DAG ConfigMaps against the daemon",
            "workflow": f"{len(names)} pods: {len(good)} good, {len(malformed)} with malformed "
            f"wfsched.io/ metadata (seed 5), a duplicate task id, {len(bad_dag)} runs whose DAG "
            "ConfigMap is broken or missing",
            "cluster": "2 KWOK nodes x 8 CPU",
            "injected": "garbage input-size/attempt/dag-configmap/depends-on/task-id/peak-memory "
            "annotations, a self-dependency, a duplicate task id, broken DAG documents",
            "injections": len(malformed) + len(bad_dag) + 1,
            "rejected_by_api_server": rejected,
            "malformed_warned": f"{len(set(malformed) & metadata_warned)}/{len(malformed)}",
            "good_warned": len(set(good) & metadata_warned),
            "bad_dags_warned": f"{len(set(bad_dag) & dag_warned)}/{len(bad_dag)}",
            "input_errors_total": metric_sum(metrics, "wfsched_input_errors_total"),
            "event_handling_failures_logged": handling_failed,
            "daemon_alive_at_end": is_alive,
            "verdict": verdict.summary(),
        },
    )
    assert not rejected, rejected
    assert len(malformed) >= 20
    assert is_alive
    assert handling_failed == 0
    assert set(malformed) <= metadata_warned, sorted(set(malformed) - metadata_warned)
    assert not set(good) & metadata_warned, sorted(set(good) & metadata_warned)
    assert set(bad_dag) <= dag_warned, sorted(set(bad_dag) - dag_warned)
    assert_invariants(verdict)
