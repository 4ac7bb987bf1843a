"""Token bucket on a fake clock: burst, steady rate, fairness, max_wait."""

from __future__ import annotations

import threading
import time

import pytest

from scheduler.kube.ratelimit import RateLimitTimeout, TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_burst_is_free_then_rate_applies() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, 5, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        assert bucket.acquire() == 0
    assert bucket.acquire() == pytest.approx(0.1)
    assert bucket.acquire() == pytest.approx(0.1)
    assert clock.now == pytest.approx(1000.2)


def test_refill_never_exceeds_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100, 3, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        bucket.acquire()
    clock.now += 3600
    assert bucket.available() == pytest.approx(3)


def test_reservations_queue_in_arrival_order() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2, 1, clock=clock, sleep=clock.sleep)
    waits = [bucket.reserve() for _ in range(4)]
    assert waits == pytest.approx([0, 0.5, 1.0, 1.5])
    assert bucket.available() == pytest.approx(-3)


def test_steady_state_rate_over_a_window() -> None:
    clock = FakeClock()
    bucket = TokenBucket(50, 10, clock=clock, sleep=clock.sleep)
    start = clock.now
    for _ in range(510):
        bucket.acquire()
    # 10 from the burst, then 500 at 50/s.
    assert clock.now - start == pytest.approx(10.0)


def test_max_wait_takes_nothing() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1, 1, clock=clock, sleep=clock.sleep)
    bucket.acquire()
    with pytest.raises(RateLimitTimeout):
        bucket.acquire(max_wait=0.5)
    assert not bucket.try_acquire()
    clock.now += 1.0
    assert bucket.try_acquire()


def test_unlimited_never_waits() -> None:
    clock = FakeClock()
    bucket = TokenBucket(0, 1, clock=clock, sleep=clock.sleep)
    assert all(bucket.acquire() == 0 for _ in range(1000))
    assert clock.sleeps == []


def test_threads_share_the_budget() -> None:
    bucket = TokenBucket(1000, 20)
    started = time.monotonic()
    lock = threading.Lock()
    taken: list[float] = []

    def worker() -> None:
        for _ in range(10):
            wait = bucket.acquire()
            with lock:
                taken.append(wait)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(taken) == 80
    assert sum(1 for w in taken if w == 0) >= 20
    # 60 tokens beyond the burst at 1000/s take at least ~60 ms of wall time.
    assert time.monotonic() - started >= 0.055
