"""Per-stage latency metrics of the loop, the rate limiter's per-thread wait, and GC pauses."""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from test_loop import FakeKube, make_loop, node, pod, settle

from scheduler.kube.ratelimit import TokenBucket
from scheduler.runtime import metrics, pauses


def _stage_counts(m: metrics.Metrics) -> dict[str, float]:
    counts: dict[str, float] = {}
    for family in m.registry.collect():
        for sample in family.samples:
            if sample.name == "wfsched_pod_stage_duration_seconds_count":
                counts[sample.labels["stage"]] = sample.value
    return counts


class LimitedKube(FakeKube):
    """A fake API whose binds take a token from a bucket, as the real client's do."""

    def __init__(self, limiter: TokenBucket) -> None:
        super().__init__()
        self.limiter = limiter

    def bind(self, namespace: str, name: str, uid: str, node: str) -> None:
        self.limiter.acquire()
        super().bind(namespace, name, uid, node)


def test_a_bound_pod_passes_every_stage_once() -> None:
    clock = [100.0]
    kube = LimitedKube(TokenBucket(qps=0, burst=1))
    loop = make_loop(kube)
    loop.clock = lambda: clock[0]
    loop._handle(("nodes", "ADDED", node("n1")))
    # The informer stamped the event at 99.5: it waited 0.5 s in the events queue.
    loop._handle(("pods", "ADDED", pod("p0"), 99.5))
    clock[0] = 102.0  # the cycle runs 2 s after the task was queued
    loop.run_one_cycle()
    settle(loop, kube, 1)
    counts = _stage_counts(loop.metrics)
    for stage in (
        "event_queue",
        "watch_delivery",
        "queue_wait",
        "cycle",
        "bind_pool_wait",
        "rate_limiter_wait",
        "bind_call",
        "bind_report",
    ):
        assert counts[stage] == 1, stage
    hist = loop.metrics.pod_stage_duration
    assert hist.labels(stage="event_queue")._sum.get() == pytest.approx(0.5)
    assert hist.labels(stage="queue_wait")._sum.get() == pytest.approx(2.0)


def test_unstamped_events_and_other_pods_skip_the_watch_stages() -> None:
    loop = make_loop(FakeKube())
    loop._handle(("nodes", "ADDED", node("n1")))
    loop._handle(("pods", "ADDED", pod("p0")))  # an informer without an arrival clock
    loop._handle(("pods", "ADDED", pod("x", scheduler="default-scheduler"), 1.0))
    counts = _stage_counts(loop.metrics)
    assert counts["watch_delivery"] == 0
    assert counts["event_queue"] == 1  # every stamped pod event counts, ours or not


def test_the_rate_limiter_reports_each_threads_own_wait() -> None:
    now = [0.0]
    slept: list[float] = []
    bucket = TokenBucket(qps=10, burst=1, clock=lambda: now[0], sleep=lambda s: slept.append(s))
    assert bucket.thread_waited_s(reset=True) == 0.0
    bucket.acquire()  # the burst token: no wait
    bucket.acquire()  # 0.1 s for the next token
    assert bucket.thread_waited_s() == pytest.approx(0.1)
    seen: list[float] = []
    other = threading.Thread(target=lambda: seen.append(bucket.thread_waited_s()))
    other.start()
    other.join()
    assert seen == [0.0]
    assert bucket.thread_waited_s(reset=True) == pytest.approx(0.1)
    assert bucket.thread_waited_s() == 0.0


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds, interval = gc.get_threshold(), sys.getswitchinterval()
    callbacks = list(gc.callbacks)
    yield
    gc.set_threshold(*thresholds)
    sys.setswitchinterval(interval)
    gc.callbacks[:] = callbacks
    gc.unfreeze()


def test_tune_sets_the_process_and_times_collections(restored_gc: None) -> None:
    m = metrics.Metrics()
    pauses.tune(m)
    pauses.tune(m)  # once per Metrics object
    assert sys.getswitchinterval() == pytest.approx(pauses.SWITCH_INTERVAL_S)
    assert gc.get_threshold()[2] == pauses.FULL_COLLECTION_EVERY
    assert sum(1 for cb in gc.callbacks if getattr(cb, "metrics", None) is m) == 1
    gc.collect()
    assert m.gc_pause.labels(generation="2")._sum.get() > 0


def test_freeze_exempts_the_live_heap(restored_gc: None) -> None:
    kept: list[Any] = [object() for _ in range(1000)]
    pauses.freeze()
    assert gc.get_freeze_count() >= len(kept)
