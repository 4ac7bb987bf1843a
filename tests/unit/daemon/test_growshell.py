"""The I/O side of grow-in-place: one resize, one Event, exactly one report; the loop wiring."""

from __future__ import annotations

import queue
from typing import Any

from test_loop import node

from scheduler import registry
from scheduler.core import cluster
from scheduler.core import grow as core_grow
from scheduler.kube import errors as kube_errors
from scheduler.runtime import grow, growshell, metrics
from scheduler.runtime import loop as loop_mod
from scheduler.runtime.settings import Settings

MiB = 1 << 20


class FakeRecorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def record(self, **event: Any) -> None:
        self.events.append(event)


class FakeKube:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls: list[tuple[str, str, list[dict[str, Any]]]] = []
        self.patches: list[tuple[str, dict[str, Any]]] = []

    def resize_pod(self, namespace: str, name: str, containers: list[dict[str, Any]]) -> Any:
        self.calls.append((namespace, name, containers))
        if self.error is not None:
            raise self.error
        return {}

    def patch_pod_metadata(self, namespace: str, name: str, **changes: Any) -> Any:
        self.patches.append((name, changes))
        return {}


INSTRUCTION = grow.GrowMemory(
    ref=cluster.PodRef(uid="u1", namespace="ns", name="p"),
    container="main",
    request_bytes=1500 * MiB,
    limit_bytes=1500 * MiB + 1,
    old_limit_bytes=1000 * MiB,
    usage_bytes=850 * MiB,
    grows=1,
)


def run(kube: FakeKube) -> tuple[FakeRecorder, grow.GrowReported]:
    recorder = FakeRecorder()
    events: queue.Queue[Any] = queue.Queue()
    growshell.resize(kube, recorder, events, INSTRUCTION)  # type: ignore[arg-type]
    report = events.get_nowait()
    assert events.empty()
    return recorder, report


def test_a_grow_sends_request_and_limit_in_whole_mib_and_reports_success() -> None:
    kube = FakeKube()
    recorder, report = run(kube)
    assert kube.calls == [
        (
            "ns",
            "p",
            [
                {
                    "name": "main",
                    "resources": {
                        "requests": {"memory": "1500Mi"},
                        "limits": {"memory": "1501Mi"},
                    },
                }
            ],
        )
    ]
    assert report.ok and report.instruction is INSTRUCTION
    assert kube.patches == [("p", {"annotations": {grow.GROWS_ANNOTATION: "1"}})]
    (event,) = recorder.events
    assert event["reason"] == "MemoryGrown"
    assert "from 1000 MiB to 1501 MiB" in event["note"]


def test_a_refusal_is_reported_with_its_status_and_a_warning() -> None:
    refusal = kube_errors.ApiError("forbidden: node didn't have enough", http_status=403)
    kube = FakeKube(refusal)
    recorder, report = run(kube)
    assert not report.ok and report.status == 403
    assert kube.patches == []
    (event,) = recorder.events
    assert event["reason"] == "MemoryGrowFailed" and event["event_type"] == "Warning"
    assert "HTTP 403" in event["note"]


def test_not_leading_sends_nothing_and_says_nothing() -> None:
    recorder, report = run(FakeKube(kube_errors.NotSentError("not leading")))
    assert not report.ok and report.reason == "not leading"
    assert recorder.events == []


def test_a_notice_becomes_a_warning_event() -> None:
    recorder = FakeRecorder()
    notice = grow.GrowNotice(
        ref=INSTRUCTION.ref, outcome=core_grow.GrowOutcome.NO_ROOM, note="not grown: full"
    )
    growshell.notify(recorder, notice)  # type: ignore[arg-type]
    assert recorder.events == [
        {
            "namespace": "ns",
            "pod_name": "p",
            "pod_uid": "u1",
            "reason": "MemoryNotGrown",
            "note": "not grown: full",
            "event_type": "Warning",
        }
    ]


class LoopKube(FakeKube):
    """The loop's API (events, bindings) plus ``resize_pod``."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []

    def create_event(self, **event: Any) -> str:
        self.events.append(event)
        return "sent"


def test_the_loop_turns_usage_into_a_resize_and_takes_the_report_back() -> None:
    kube = LoopKube()
    loop = loop_mod.SchedulerLoop(
        settings=Settings(bind_workers=1, grow_in_place=True),
        kube=kube,  # type: ignore[arg-type]
        policies=registry.parse_strategy("fifo-roundrobin").build(),
        metrics=metrics.Metrics(),
    )
    try:
        running = {
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {
                "schedulerName": "workflow-scheduler",
                "nodeName": "n1",
                "containers": [
                    {
                        "name": "main",
                        "resources": {
                            "requests": {"memory": "1000Mi"},
                            "limits": {"memory": "1000Mi"},
                        },
                    }
                ],
            },
            "status": {"phase": "Running"},
        }
        loop._handle((loop_mod.NODE_EVENTS, "ADDED", node("n1")))
        loop._handle((loop_mod.POD_EVENTS, "ADDED", running))
        usage = [
            {
                "metadata": {"name": "p", "namespace": "ns"},
                "containers": [{"name": "main", "usage": {"memory": "900Mi"}}],
            }
        ]
        loop._handle((loop_mod.POD_USAGE_EVENTS, "SNAPSHOT", usage))
        report = loop.events.get(timeout=5)
        assert isinstance(report, grow.GrowReported) and report.ok
        assert kube.calls[0][2][0]["resources"]["limits"] == {"memory": "1500Mi"}
        loop._handle(report)
        assert loop.state.grower is not None and loop.state.grower.grows_of("u1") == 1
        assert loop.metrics.memory_grows.labels(result="grown")._value.get() == 1
    finally:
        loop.shutdown()
