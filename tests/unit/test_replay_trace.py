"""nf-core traces as replay plans: dependencies, requests, OOM kills and retries, figures."""

from __future__ import annotations

import copy
import queue
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from scheduler.devtools import devcluster, memsim, nftrace, replay, report, runstats
from scheduler.kube import keys

GIB = 2**30
HEADER = (
    "task_id;process;name;status;cpus;memory;attempt;submit;start;complete;realtime;peak_rss;rchar"
)
DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "nfcore-traces"


def trace_text(rows: list[tuple[Any, ...]]) -> str:
    """Rows: (task_id, process, status, cpus, memory GiB, submit s, start s, end s, peak GiB)."""
    lines = [HEADER]
    for task_id, process, status, cpus, memory, submit, start, end, peak in rows:
        lines.append(
            f"{task_id};{process};{process} ({task_id});{status};{cpus};{memory * GIB};1;"
            f"{submit * 1000};{start * 1000};{end * 1000};{(end - start) * 1000};"
            f"{int(peak * GIB)};{task_id * 100}"
        )
    return "\n".join(lines) + "\n"


# A at 0-10 and B at 0-20 run first; C is submitted at 11 (after A only); D at 25 (after all).
ROWS = [
    (1, "P:A", "COMPLETED", 2, 6, 0, 0, 10, 1.0),
    (2, "P:B", "COMPLETED", 1, 12, 0, 0, 20, 3.0),
    (3, "P:C", "COMPLETED", 6, 36, 11, 11, 15, 2.0),
    (4, "P:D", "COMPLETED", 1, 6, 25, 25, 27, 0.5),
    (5, "P:D", "FAILED", 1, 6, 25, 25, 26, 0.5),
]


def write(tmp_path: Path, rows: list[tuple[Any, ...]] = ROWS) -> Path:
    path = tmp_path / "trace-1.csv"
    path.write_text(trace_text(rows))
    return path


def test_bare_trace_releases_a_task_after_everything_completed_before_its_submission(
    tmp_path: Path,
) -> None:
    workflow = nftrace.load_trace(write(tmp_path))
    parents = {t.id: t.parents for t in workflow.tasks}
    assert workflow.dependency_source == "trace"
    assert [t.id for t in workflow.tasks] == ["1", "2", "3", "4"]  # the FAILED row is dropped
    # D: A, C and B completed before its submission; A is implied through C (submitted after A).
    assert parents == {"1": (), "2": (), "3": ("1",), "4": ("3", "2")}
    assert workflow.dropped == {"failed": 1}
    c = workflow.tasks[2]
    assert (c.step, c.cpu_millis, c.memory_bytes, c.runtime_s) == ("P:C", 6000, 36 * GIB, 4.0)
    assert c.peak_bytes == 2 * GIB and c.input_size == 300


def test_frontier_parents_leave_out_tasks_implied_through_others(tmp_path: Path) -> None:
    rows = [
        (1, "P:A", "COMPLETED", 1, 1, 0, 0, 1, 0.1),
        (2, "P:B", "COMPLETED", 1, 1, 2, 2, 3, 0.1),  # waits for 1
        (3, "P:C", "COMPLETED", 1, 1, 4, 4, 5, 0.1),  # waits for 1, 2: only 2 is listed
    ]
    workflow = nftrace.load_trace(write(tmp_path, rows))
    assert [t.parents for t in workflow.tasks] == [(), ("1",), ("2",)]


DAG = """
elements: {
nodes: [
{ data: { id: 'p0', label: 'Channel.of'}, classes: 'ORIGIN' },
{ data: { id: 'p1', label: 'P:A'}, classes: 'PROCESS' },
{ data: { id: 'p2', label: 'map'}, classes: 'OPERATOR' },
{ data: { id: 'p3', label: 'P:B'}, classes: 'PROCESS' },
{ data: { id: 'p4', label: 'P:C'}, classes: 'PROCESS' },
{ data: { id: 'p5', label: 'P:D'}, classes: 'PROCESS' },
],
edges: [
{ data: { source: 'p0', target: 'p1'} },
{ data: { source: 'p1', target: 'p2', label: 'ch' } },
{ data: { source: 'p2', target: 'p4'} },
{ data: { source: 'p3', target: 'p5'} },
{ data: { source: 'p4', target: 'p5'} },
]
}
"""


def test_process_dag_is_walked_through_operators() -> None:
    upstream = nftrace.parse_process_dag(DAG)
    assert upstream == {"P:A": set(), "P:B": set(), "P:C": {"P:A"}, "P:D": {"P:B", "P:C"}}


def test_dag_beside_the_trace_limits_parents_to_upstream_processes(tmp_path: Path) -> None:
    (tmp_path / "dag.html").write_text(DAG)
    workflow = nftrace.load_trace(write(tmp_path))
    assert workflow.dependency_source == "dag"
    assert {t.id: set(t.parents) for t in workflow.tasks} == {
        "1": set(),
        "2": set(),
        "3": {"1"},
        "4": {"2", "3"},
    }
    bare = nftrace.load_trace(tmp_path / "trace-1.csv", use_dag=False)
    assert bare.dependency_source == "trace"


def test_not_a_trace_or_dag_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.csv"
    bad.write_text("a;b;c\n1;2;3\n")
    assert not nftrace.is_trace_file(bad)
    with pytest.raises(nftrace.TraceError, match="header lacks"):
        nftrace.load_trace(bad)
    with pytest.raises(nftrace.TraceError, match="no PROCESS"):
        nftrace.parse_process_dag("<html></html>")
    with pytest.raises(nftrace.TraceError, match="cannot read"):
        nftrace.load_trace(tmp_path / "missing.csv")


def plan_of(tmp_path: Path, **options: Any) -> replay.ReplayPlan:
    workflow = nftrace.load_trace(write(tmp_path))
    return replay.ReplayPlan.from_trace(
        workflow,
        scheduler_name="workflow-scheduler",
        time_scale=0.1,
        min_runtime_s=0.5,
        run_id="r1",
        max_cpu_millis=8000,
        max_memory_bytes=48 * GIB,
        **options,
    )


def test_plan_scales_runtimes_with_a_floor_and_caps_retry_requests(tmp_path: Path) -> None:
    plan = plan_of(tmp_path)
    a, b, c, d = plan.tasks
    assert (a.runtime_s, b.runtime_s, c.runtime_s, d.runtime_s) == (1.0, 2.0, 0.5, 0.5)
    assert plan.workflow == tmp_path.name.lower().replace("_", "-")  # the trace's directory
    assert plan.requests(c, 1) == (6000, 36 * GIB)
    assert plan.requests(c, 2) == (8000, 48 * GIB)  # 2x preset, capped like check_max
    manifest = plan.manifest(c, 2)
    notes = manifest["metadata"]["annotations"]
    assert notes[keys.ATTEMPT_ANNOTATION] == "2"
    assert notes[keys.PEAK_MEMORY_ANNOTATION] == str(2 * GIB)
    assert notes[memsim.PEAK_MEMORY_ANNOTATION] == str(2 * GIB)
    assert notes[memsim.PEAK_AT_ANNOTATION] == "0.5"
    assert notes[keys.DEPENDS_ON_ANNOTATION] == "1"
    assert notes[devcluster.RUNTIME_ANNOTATION] == "0.5s"
    assert manifest["metadata"]["name"] == plan.pod_name(c, 2) != plan.pod_name(c, 1)
    limits = manifest["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"memory": str(48 * GIB)}
    instance = plan.to_instance()
    assert [t.children for t in instance.tasks][:3] == [("3",), ("4",), ("4",)]
    with pytest.raises(ValueError, match="max retries"):
        plan_of(tmp_path, max_retries=-1)


def test_plan_names_the_tool_and_the_traced_image_for_memory_priors(tmp_path: Path) -> None:
    header = HEADER + ";container"
    lines = trace_text(ROWS).splitlines()
    images = ["quay.io/biocontainers/samtools:1.17", "-", "-", "-", "-"]
    path = tmp_path / "trace-1.csv"
    rows = [f"{row};{image}" for row, image in zip(lines[1:], images, strict=True)]
    path.write_text("\n".join([header, *rows]) + "\n")
    plan = replay.ReplayPlan.from_trace(nftrace.load_trace(path), scheduler_name="s")
    a, b = plan.tasks[:2]
    manifest = plan.manifest(a)
    assert manifest["metadata"]["annotations"][keys.TOOL_ANNOTATION] == "A"
    assert manifest["spec"]["containers"][0]["image"] == "quay.io/biocontainers/samtools:1.17"
    assert plan.manifest(b)["spec"]["containers"][0]["image"] == "busybox:1.36"


class FakeCluster:
    """Pods bound at once by a pretend scheduler that sets memory to ``memory_of(attempt)``,
    then ended as memsim would: OOM-killed when the limit is below the simulated peak."""

    def __init__(self, memory_of: Mapping[int, int]) -> None:
        self.pods: dict[str, dict[str, Any]] = {}
        self.memory_of = memory_of
        self.polls = 0

    def create_pod(self, namespace: str, manifest: Mapping[str, Any]) -> object:
        pod = {**manifest, "status": {"phase": "Pending"}}
        self.pods[manifest["metadata"]["name"]] = pod
        return pod

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        self.polls += 1
        for pod in self.pods.values():
            notes = pod["metadata"]["annotations"]
            if "nodeName" not in pod["spec"]:
                attempt = int(notes.get(keys.ATTEMPT_ANNOTATION, "1"))
                memory = str(self.memory_of.get(attempt, self.memory_of[0]))
                pod["spec"]["containers"][0]["resources"]["requests"]["memory"] = memory
                pod["spec"]["containers"][0]["resources"]["limits"] = {"memory": memory}
                pod["spec"]["nodeName"] = "node-0"
            elif pod["status"]["phase"] == "Pending":
                limit = int(pod["spec"]["containers"][0]["resources"]["limits"]["memory"])
                oom = limit < int(notes.get(memsim.PEAK_MEMORY_ANNOTATION, "0"))
                pod["status"] = {
                    "phase": "Failed" if oom else "Succeeded",
                    "containerStatuses": [
                        {"state": {"terminated": {"reason": "OOMKilled" if oom else "Completed"}}}
                    ],
                }
        return [dict(p) for p in self.pods.values()]


def test_replayer_oom_kills_an_undersized_attempt_and_retries_with_twice_the_request(
    tmp_path: Path,
) -> None:
    plan = plan_of(tmp_path)
    # First attempts get 1.5 GiB (too little for B's 3 GiB and C's 2 GiB), retries their request.
    api = FakeCluster({0: int(1.5 * GIB), 2: 48 * GIB})
    progress = replay.Replayer(plan, api, namespace="ns", poll_s=0).run(timeout_s=10)
    outcomes = sorted((a.task_id, a.attempt, a.outcome) for a in progress.attempts)
    assert outcomes == [
        ("1", 1, "succeeded"),
        ("2", 1, "oom"),
        ("2", 2, "succeeded"),
        ("3", 1, "oom"),
        ("3", 2, "succeeded"),
        ("4", 1, "succeeded"),
    ]
    assert progress.failed == 2 and progress.succeeded == 4


class _Stream:
    """A watch stream fed by a queue; ``close()`` ends the iteration."""

    def __init__(self, events: queue.Queue[dict[str, Any] | None]) -> None:
        self.events = events

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while (event := self.events.get()) is not None:
            yield event

    def close(self) -> None:
        self.events.put(None)


class WatchingFakeCluster(FakeCluster):
    """``FakeCluster`` that reports every pod change as a watch event instead of on a poll."""

    def __init__(self, memory_of: Mapping[int, int]) -> None:
        super().__init__(memory_of)
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.lists = 0
        self.version = 1

    def create_pod(self, namespace: str, manifest: Mapping[str, Any]) -> object:
        pod = super().create_pod(namespace, manifest)
        pod["metadata"].update(namespace=namespace, uid=f"uid-{len(self.pods)}")
        for kind in ("ADDED", "MODIFIED", "MODIFIED"):  # created, bound, ended
            if kind == "MODIFIED":
                super().list_pods(namespace, "")
            self.version += 1
            pod["metadata"]["resourceVersion"] = str(self.version)
            self.events.put({"type": kind, "object": copy.deepcopy(pod)})
        self.polls = 0
        return pod

    def list_objects(self, kind: str, **_: Any) -> tuple[list[dict[str, Any]], str]:
        self.lists += 1
        return [], "1"

    def get_object(self, kind: str, name: str, **_: Any) -> dict[str, Any] | None:
        return self.pods.get(name)

    def open_watch(self, kind: str, **_: Any) -> _Stream:
        return _Stream(self.events)


def test_replayer_follows_a_watching_client_by_its_events_without_polling(
    tmp_path: Path,
) -> None:
    plan = plan_of(tmp_path)
    api = WatchingFakeCluster({0: int(1.5 * GIB), 2: 48 * GIB})
    progress = replay.Replayer(plan, api, namespace="ns", poll_s=5).run(timeout_s=10)
    outcomes = sorted((a.task_id, a.attempt, a.outcome) for a in progress.attempts)
    assert [o for o in outcomes if o[2] == "oom"] == [("2", 1, "oom"), ("3", 1, "oom")]
    assert progress.succeeded == 4 and api.polls == 0 and api.lists == 1
    assert progress.makespan_s is not None and progress.makespan_s < 5  # never waited a poll


def test_replayer_gives_up_when_the_retries_are_spent(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, max_retries=0)
    api = FakeCluster({0: int(1.5 * GIB)})
    with pytest.raises(RuntimeError, match="no retry left"):
        replay.Replayer(plan, api, namespace="ns", poll_s=0).run(timeout_s=10)


def attempt(outcome: str, memory: int, peak: int, bound: float, finished: float) -> replay.Attempt:
    return replay.Attempt(
        task_id="t",
        step="s",
        pod_name="p",
        attempt=1,
        created_s=0.0,
        cpu_millis=1000,
        memory_bytes=memory,
        memory_limit_bytes=memory,
        peak_bytes=peak,
        bound_s=bound,
        finished_s=finished,
        node="n",
        outcome=outcome,
    )


def test_run_stats_count_failed_attempts_as_wholly_wasted() -> None:
    shape = runstats.ClusterShape(nodes=2, cpu_millis=4000, memory_bytes=8 * GIB)
    attempts = [
        attempt("oom", 2 * GIB, 3 * GIB, 0.0, 36.0),
        attempt("succeeded", 4 * GIB, 3 * GIB, 36.0, 72.0),
    ]
    stats = runstats.run_stats(attempts, makespan_s=72.0, time_scale=0.01, cluster=shape)
    # 36 s of replay at scale 0.01 = 1 h of trace time.
    assert stats.allocated_gibh == pytest.approx(6.0)
    assert stats.wasted_gibh == pytest.approx(2.0 + 1.0)
    assert stats.failed_attempts == 1 and stats.attempts == 2
    assert stats.cpu_utilisation == pytest.approx(1000 * 72 / (2 * 4000 * 72))
    assert stats.memory_utilisation == pytest.approx((2 + 3) * 36 / (2 * 8 * 72))
    assert runstats.geometric_mean([0.5, 2.0]) == pytest.approx(1.0)


def test_run_stats_count_a_request_changed_while_running_piece_by_piece() -> None:
    shape = runstats.ClusterShape(nodes=1, cpu_millis=4000, memory_bytes=64 * GIB)
    shrunk = attempt("succeeded", 8 * GIB, 1 * GIB, 0.0, 36.0)
    shrunk.resized.append((12.0, 2 * GIB, 2 * GIB))  # shrunk in place a third of the way
    killed = attempt("oom", 8 * GIB, 6 * GIB, 36.0, 72.0)
    killed.resized.append((54.0, 4 * GIB, 4 * GIB))  # shrunk below its peak: killed later
    assert shrunk.memory_steps() == [(0.0, 12.0, 8 * GIB), (12.0, 36.0, 2 * GIB)]
    assert (shrunk.final_limit_bytes, killed.final_limit_bytes) == (2 * GIB, 4 * GIB)
    stats = runstats.run_stats([shrunk, killed], makespan_s=72.0, time_scale=0.01, cluster=shape)
    # 12 s = 1/3 h of trace time: 8/3 + 2*2/3 for the first, 8/2 + 4/2 for the second.
    assert stats.allocated_gibh == pytest.approx(8 / 3 + 4 / 3 + 4 + 2)
    assert stats.wasted_gibh == pytest.approx(8 / 3 + 4 / 3 - 1 + 6)
    page = report.attempt_json(shrunk)
    assert page["resized"] == [[12.0, 2 * GIB, 2 * GIB]] and page["memory"] == 8 * GIB


@pytest.mark.skipif(not DATA.is_dir(), reason="shared nf-core traces not present")
def test_every_shared_nfcore_trace_loads_with_its_dag() -> None:
    for directory in sorted(p for p in DATA.iterdir() if p.is_dir()):
        workflow = nftrace.load_trace(directory / "trace-1.csv")
        assert workflow.dependency_source == "dag"
        ids = {t.id for t in workflow.tasks}
        assert all(set(t.parents) <= ids for t in workflow.tasks)
        assert any(not t.parents for t in workflow.tasks)
        assert all(t.memory_bytes > 0 and t.cpu_millis >= 1000 for t in workflow.tasks)
