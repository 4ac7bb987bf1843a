"""EventRecorder: bounded backlog, Warnings first, coalescing, never raising into the loop."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from scheduler.runtime.eventrecorder import EventRecorder


class GatedEmit:
    """Records every call; blocks each call until ``gate`` is set."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()
        self.calls: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, **kwargs: Any) -> str:
        self.started.set()
        self.gate.wait(10)
        with self.lock:
            self.calls.append(kwargs)
        return "sent"


def event(name: str, event_type: str = "Normal", note: str = "n") -> dict[str, Any]:
    return {
        "namespace": "ns",
        "pod_name": name,
        "pod_uid": f"uid-{name}",
        "reason": "Scheduled" if event_type == "Normal" else "FailedScheduling",
        "note": note,
        "event_type": event_type,
    }


def test_a_full_backlog_drops_normal_events_but_keeps_warnings_and_sends_them_first() -> None:
    emit = GatedEmit()
    outcomes: Counter[tuple[str, str]] = Counter()
    recorder = EventRecorder(
        emit,
        workers=1,
        max_queued=2,
        max_queued_warnings=10,
        on_outcome=lambda t, o: outcomes.update([(t, o)]),
    )
    try:
        assert recorder.record(**event("busy"))
        assert emit.started.wait(5)  # the one worker is now blocked in emit
        accepted = [recorder.record(**event(f"p{i}")) for i in range(4)]
        assert accepted == [True, True, False, False]
        assert recorder.record(**event("bad", "Warning"))
        assert recorder.backlog == 3
        emit.gate.set()
        assert recorder.flush(5)
    finally:
        recorder.close()
    assert [c["pod_name"] for c in emit.calls] == ["busy", "bad", "p0", "p1"]
    assert outcomes == {
        ("Normal", "sent"): 3,
        ("Normal", "queue_full"): 2,
        ("Warning", "sent"): 1,
    }


def test_an_identical_waiting_event_is_coalesced() -> None:
    emit = GatedEmit()
    outcomes: list[str] = []
    recorder = EventRecorder(emit, workers=1, on_outcome=lambda _t, o: outcomes.append(o))
    try:
        recorder.record(**event("busy"))
        assert emit.started.wait(5)
        assert recorder.record(**event("p", "Warning", note="too big"))
        assert not recorder.record(**event("p", "Warning", note="too big"))
        assert recorder.record(**event("p", "Warning", note="different"))
        emit.gate.set()
        assert recorder.flush(5)
    finally:
        recorder.close()
    assert [c["note"] for c in emit.calls] == ["n", "too big", "different"]
    assert outcomes.count("coalesced") == 1


def test_a_raising_emit_is_counted_as_failed_and_the_worker_survives() -> None:
    calls: list[str] = []

    def emit(**kwargs: Any) -> None:
        calls.append(kwargs["pod_name"])
        if kwargs["pod_name"] == "boom":
            raise RuntimeError("emit must not raise, but did")

    outcomes: list[str] = []
    recorder = EventRecorder(emit, workers=1, on_outcome=lambda _t, o: outcomes.append(o))
    try:
        recorder.record(**event("boom"))
        recorder.record(**event("after"))
        assert recorder.flush(5)
    finally:
        recorder.close()
    assert calls == ["boom", "after"]
    assert outcomes == ["failed", "sent"]  # None from emit counts as sent


def test_close_sends_what_is_queued_then_refuses_new_events() -> None:
    emit = GatedEmit()
    emit.gate.set()
    outcomes: list[str] = []
    recorder = EventRecorder(emit, workers=2, on_outcome=lambda _t, o: outcomes.append(o))
    for i in range(20):
        recorder.record(**event(f"p{i}"))
    recorder.close(timeout=5)
    assert len(emit.calls) == 20
    assert not recorder.record(**event("late"))
    assert outcomes.count("sent") == 20 and outcomes.count("closed") == 1


class ConcurrencyProbe:
    """Blocks every Normal Event until ``gate`` is set; counts how many are in emit at once."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.in_emit: Counter[str] = Counter()
        self.max_in_emit: Counter[str] = Counter()
        self.warning_sent = threading.Event()

    def __call__(self, **kwargs: Any) -> str:
        kind = kwargs["event_type"]
        with self.lock:
            self.in_emit[kind] += 1
            self.max_in_emit[kind] = max(self.max_in_emit[kind], self.in_emit[kind])
        if kind == "Normal":
            self.gate.wait(10)
        else:
            self.warning_sent.set()
        with self.lock:
            self.in_emit[kind] -= 1
        return "sent"


def test_normal_events_use_at_most_normal_workers_and_never_hold_up_warnings() -> None:
    probe = ConcurrencyProbe()
    recorder = EventRecorder(probe, workers=4, normal_workers=1)
    try:
        for i in range(6):
            assert recorder.record(**event(f"p{i}"))
        # Three workers stay free for Warnings while the one Normal sender is blocked.
        assert recorder.record(**event("bad", "Warning"))
        assert probe.warning_sent.wait(5)
        assert recorder.backlog == 5
        probe.gate.set()
        assert recorder.flush(5)
        assert probe.max_in_emit["Normal"] == 1
    finally:
        recorder.close()


def test_normal_workers_bounds_normal_senders_above_one() -> None:
    probe = ConcurrencyProbe()
    recorder = EventRecorder(probe, workers=4, normal_workers=2)
    try:
        for i in range(8):
            assert recorder.record(**event(f"p{i}"))
        threading.Timer(0.3, probe.gate.set).start()
        assert recorder.flush(5)
        assert probe.max_in_emit["Normal"] == 2
    finally:
        recorder.close()
