"""The pure parts of ``benchmarks/large_cluster.py``: workload, profile summary, request tally."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from benchmarks import large_cluster


def test_workload_mixes_workflow_runs_and_singletons() -> None:
    pods = list(large_cluster.workload(1000, "workflow-scheduler"))
    assert len(pods) == 1000
    assert len({p["metadata"]["name"] for p in pods}) == 1000
    runs = Counter(p["metadata"]["labels"].get("wfsched.io/run-id") for p in pods)
    singletons = runs.pop(None)
    # Two thirds in whole runs of RUN_TASKS tasks, the rest singletons.
    assert set(runs.values()) == {large_cluster.RUN_TASKS}
    assert len(runs) == 1000 * 2 // 3 // large_cluster.RUN_TASKS
    assert singletons == 1000 - len(runs) * large_cluster.RUN_TASKS
    assert {p["spec"]["schedulerName"] for p in pods} == {"workflow-scheduler"}


def test_every_task_depends_on_the_whole_step_before() -> None:
    run = [
        p
        for p in large_cluster.workload(200, "default-scheduler")
        if p["metadata"]["labels"].get("wfsched.io/run-id") == "run-1"
    ]
    per_step = large_cluster.RUN_TASKS // large_cluster.RUN_STEPS
    by_id = {p["metadata"]["annotations"]["wfsched.io/task-id"]: p for p in run}
    for task_id, pod in by_id.items():
        step = int(pod["metadata"]["labels"]["wfsched.io/step"].removeprefix("step-"))
        parents = pod["metadata"]["annotations"].get("wfsched.io/depends-on", "")
        if step == 0:
            assert parents == "", task_id
            continue
        parent_ids = parents.split(",")
        assert len(parent_ids) == per_step
        for parent in parent_ids:
            assert by_id[parent]["metadata"]["labels"]["wfsched.io/step"] == f"step-{step - 1}"


def test_both_schedulers_get_the_same_pods() -> None:
    ours = list(large_cluster.workload(300, "workflow-scheduler"))
    theirs = list(large_cluster.workload(300, "default-scheduler"))
    for a, b in zip(ours, theirs, strict=True):
        assert a["metadata"] == b["metadata"]
        assert a["spec"]["containers"] == b["spec"]["containers"]


def test_profile_summary_counts_innermost_and_enclosing_frames(tmp_path: Path) -> None:
    collapsed = tmp_path / "profile.txt"
    collapsed.write_text(
        "run (loop.py:10);cycle (loop.py:40);rank (policies/rank.py:7) 6\n"
        "run (loop.py:10);bind (kube/client.py:99) 3\n"
        "run (loop.py:11) 1\n"
        "run (loop.py:10);bind (kube/client.py:99);SSLSocket.read (ssl.py:1) 10\n"
    )
    summary = large_cluster.profile_summary([collapsed])
    own = dict(summary["self"])
    under = dict(summary["inclusive"])
    busy = dict(summary["busy_inclusive"])
    assert summary["samples"] == [("all", 20.0), ("busy", 10.0)]
    assert own["rank (policies/rank.py)"] == 0.3
    assert own["SSLSocket.read (ssl.py)"] == 0.5
    assert own["run (loop.py)"] == 0.05
    assert under["run (loop.py)"] == 1.0  # lines 10 and 11 merge, each sample counted once
    assert under["bind (kube/client.py)"] == 0.65
    # Without the samples waiting on the socket:
    assert busy["cycle (loop.py)"] == 0.6
    assert busy["bind (kube/client.py)"] == 0.3


def _scrape(**kinds: tuple[float, float]) -> str:
    """kube-apiserver's request histogram as /metrics writes it: ``kinds`` maps
    ``VERB_resource[_subresource]`` to (count, seconds)."""
    lines = [
        "# HELP apiserver_request_duration_seconds [STABLE] Response latency distribution.",
        "# TYPE apiserver_request_duration_seconds histogram",
    ]
    for kind, (count, seconds) in kinds.items():
        verb, resource, *sub = kind.split("_")
        labels = (
            f'component="apiserver",dry_run="",group="",resource="{resource}",scope="resource",'
            f'subresource="{sub[0] if sub else ""}",verb="{verb}",version="v1"'
        )
        name = "apiserver_request_duration_seconds"
        lines += [
            f'{name}_bucket{{{labels},le="+Inf"}} {count}',
            f"{name}_sum{{{labels}}} {seconds}",
            f"{name}_count{{{labels}}} {count}",
        ]
    return "\n".join(lines) + "\n"


def test_apiserver_request_delta_ranks_kinds_by_seconds_and_ignores_watch_durations() -> None:
    before = large_cluster.apiserver_requests(
        _scrape(POST_pods_binding=(10, 0.5), POST_events=(4, 0.2), WATCH_pods=(2, 600))
    )
    after = large_cluster.apiserver_requests(
        _scrape(POST_pods_binding=(1010, 40.5), POST_events=(1004, 60.2), WATCH_pods=(3, 1800))
    )
    assert before[("POST", "pods", "binding")] == (10.0, 0.5)
    rows = large_cluster.request_delta(before, after)
    assert [(kind, count) for kind, count, _ in rows] == [
        ("POST events", 1000),
        ("POST pods/binding", 1000),
        ("WATCH pods", 1),
    ]
    assert [seconds for _, _, seconds in rows] == pytest.approx([60.0, 40.0, 0.0])
    # Kinds nothing asked for in between are left out.
    assert large_cluster.request_delta(after, after) == []
