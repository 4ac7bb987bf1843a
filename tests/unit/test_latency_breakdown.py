"""The latency breakdown benchmark's arithmetic: per-task stages and histogram quantiles."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram, exposition

from benchmarks import latency_breakdown as lb
from scheduler.devtools import replay

GIB = 1 << 30


def _task(name: str, parents: tuple[str, ...] = (), cpu: int = 1000) -> replay.ReplayTask:
    return replay.ReplayTask(
        id=name,
        pod_name=f"pod-{name}",
        step="s",
        parents=parents,
        runtime_s=1.0,
        cpu_millis=cpu,
        memory_bytes=GIB,
        input_size=0,
    )


def _plan(*tasks: replay.ReplayTask) -> replay.ReplayPlan:
    return replay.ReplayPlan(workflow="w", run_id="r", tasks=tasks, scheduler_name="x")


def test_stages_of_a_chain_and_a_task_that_had_to_wait() -> None:
    # a runs alone on a 2-CPU node; b (2 CPU, created with a) waits for a to finish; c follows a.
    plan = _plan(_task("a"), _task("b", cpu=2000), _task("c", parents=("a",)))
    pods = {
        "pod-a": lb.PodTimes(created=10.0, bound=10.01, running=10.02, finished=11.1, node="n"),
        "pod-b": lb.PodTimes(created=10.05, bound=11.2, running=11.25, finished=12.3, node="n"),
        "pod-c": lb.PodTimes(created=11.4, bound=12.4, running=12.45, finished=13.5, node="n"),
    }
    stages = lb.task_stages(plan, pods, node_room=(2000, 4 * GIB))
    assert stages["engine"] == pytest.approx([0.3])  # c created 0.3 s after a was seen done
    assert stages["created->bound"] == pytest.approx([0.01, 1.15, 1.0])
    assert stages["bound->running"] == pytest.approx([0.01, 0.05, 0.05])
    assert stages["run overrun"] == pytest.approx([0.08, 0.05, 0.05])
    # Only a found room and no queue: b did not fit beside a, c queued behind b.
    assert stages["placement (room free)"] == pytest.approx([0.01])
    # a finished while b and c waited: b was bound 0.1 s later; b finished while c waited.
    assert stages["refill"] == pytest.approx([0.1, 0.1])


def test_without_node_sizes_the_room_stage_stays_empty() -> None:
    plan = _plan(_task("a"))
    pods = {"pod-a": lb.PodTimes(created=1.0, bound=1.5, running=1.6, finished=2.7, node="n")}
    assert lb.task_stages(plan, pods)["placement (room free)"] == []


def test_quantiles() -> None:
    assert lb.quantile([3.0, 1.0, 2.0, 4.0], 0.5) == 2.0
    assert lb.quantile([3.0, 1.0, 2.0, 4.0], 0.99) == 4.0
    assert math.isnan(lb.quantile([], 0.5))


def test_histogram_quantiles_interpolate_within_buckets() -> None:
    registry = CollectorRegistry()
    hist = Histogram("h_seconds", "h", ["stage"], buckets=(0.1, 1.0), registry=registry)
    for value in (0.05, 0.5, 0.5, 0.5):
        hist.labels(stage="x").observe(value)
    hist.labels(stage="empty")
    text = exposition.generate_latest(registry).decode()
    rows = lb.histogram_quantiles(text, "h_seconds", "stage", (0.25, 0.5, 1.0))
    assert rows["x"]["count"] == 4
    assert rows["x"]["p25"] == pytest.approx(0.1)  # the first observation fills bucket 1
    assert rows["x"]["p50"] == pytest.approx(0.1 + 0.9 / 3)  # one of three in (0.1, 1]
    assert rows["x"]["p100"] == pytest.approx(1.0)
    assert math.isnan(rows["empty"]["p50"])


def test_a_source_tree_label_runs_that_tree_first_on_the_path(tmp_path: Path) -> None:
    (tmp_path / "scheduler").mkdir()
    (tmp_path / "scheduler" / "__init__.py").write_text("")
    env = lb.source_tree_environment(str(tmp_path))
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(tmp_path.resolve())
    assert env["PYTHONSAFEPATH"] == "1"
    with pytest.raises(SystemExit, match="no scheduler package"):
        lb.source_tree_environment(str(tmp_path / "scheduler"))
