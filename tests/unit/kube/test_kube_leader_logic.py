"""Leader election state machine on an in-memory Lease store and a fake clock."""

from __future__ import annotations

import copy
import datetime
import threading
from typing import Any

import pytest

from scheduler.kube import errors, leader


class MemoryLeaseStore:
    """Optimistic concurrency like the API server: resourceVersion must match on replace."""

    def __init__(self) -> None:
        self.lease: dict | None = None
        self.rv = 0
        self.fail = False
        self.writes = 0

    def _check(self) -> None:
        if self.fail:
            raise errors.ApiConnectionError("down")

    def get_lease(self, namespace: str, name: str) -> dict | None:
        self._check()
        return copy.deepcopy(self.lease)

    def create_lease(self, namespace: str, body: Any) -> dict:
        self._check()
        if self.lease is not None:
            raise errors.AlreadyExistsError("exists", http_status=409, reason="AlreadyExists")
        self.rv += 1
        self.lease = copy.deepcopy(dict(body))
        self.lease["metadata"]["resourceVersion"] = str(self.rv)
        self.writes += 1
        return copy.deepcopy(self.lease)

    def replace_lease(self, namespace: str, name: str, body: Any) -> dict:
        self._check()
        assert self.lease is not None
        if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            raise errors.ConflictError("modified", http_status=409, reason="Conflict")
        self.rv += 1
        self.lease = copy.deepcopy(dict(body))
        self.lease["metadata"]["resourceVersion"] = str(self.rv)
        self.writes += 1
        return copy.deepcopy(self.lease)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def wall(self) -> datetime.datetime:
        return datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(
            seconds=self.now
        )


def elector(
    store: MemoryLeaseStore, clock: Clock, ident: str, **kwargs: Any
) -> leader.LeaderElector:
    config = leader.LeaderElectionConfig(
        namespace="kube-system",
        name="wfsched",
        identity=ident,
        lease_duration_s=15.0,
        renew_deadline_s=10.0,
        retry_period_s=2.0,
    )
    return leader.LeaderElector(
        store,
        config,
        on_started_leading=kwargs.pop("started", lambda: None),
        on_stopped_leading=kwargs.pop("stopped", lambda: None),
        clock=clock,
        wall_clock=clock.wall,
        **kwargs,
    )


def test_first_elector_creates_the_lease_second_waits() -> None:
    store, clock = MemoryLeaseStore(), Clock()
    a, b = elector(store, clock, "a"), elector(store, clock, "b")
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    assert b.observed_holder == "a"
    spec = store.lease["spec"]
    assert spec["holderIdentity"] == "a"
    assert spec["leaseDurationSeconds"] == 15
    assert spec["renewTime"].endswith("Z") and spec["leaseTransitions"] == 0


def test_takeover_only_after_lease_duration_on_the_followers_clock() -> None:
    store, clock = MemoryLeaseStore(), Clock()
    a, b = elector(store, clock, "a"), elector(store, clock, "b")
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()  # b first observes the record now
    clock.now += 14.9
    assert not b.try_acquire_or_renew()
    clock.now += 0.2
    assert b.try_acquire_or_renew()
    assert store.lease["spec"]["holderIdentity"] == "b"
    assert store.lease["spec"]["leaseTransitions"] == 1


def test_renewals_keep_followers_out() -> None:
    store, clock = MemoryLeaseStore(), Clock()
    a, b = elector(store, clock, "a"), elector(store, clock, "b")
    assert a.try_acquire_or_renew()
    acquired = store.lease["spec"]["acquireTime"]
    for _ in range(20):
        clock.now += 2.0
        assert a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew()
    assert store.lease["spec"]["acquireTime"] == acquired  # renewals keep the acquire time
    assert store.lease["spec"]["renewTime"] != acquired
    assert store.lease["spec"]["leaseTransitions"] == 0


def test_concurrent_update_exactly_one_wins() -> None:
    store, clock = MemoryLeaseStore(), Clock()
    a, b = elector(store, clock, "a"), elector(store, clock, "b")
    store.lease = {
        "metadata": {"name": "wfsched", "resourceVersion": "0"},
        "spec": {"holderIdentity": "", "leaseDurationSeconds": 1},
    }
    snapshot = store.get_lease("kube-system", "wfsched")
    # Both read the same version; the first PUT wins, the second conflicts.
    assert a._update(snapshot, dict(snapshot["spec"]), "", clock.now)
    assert not b._update(snapshot, dict(snapshot["spec"]), "", clock.now)
    assert store.lease["spec"]["holderIdentity"] == "a"


def test_released_lease_is_taken_at_once() -> None:
    store, clock = MemoryLeaseStore(), Clock()
    a, b = elector(store, clock, "a"), elector(store, clock, "b")
    assert a.try_acquire_or_renew()
    assert a.release()
    assert store.lease["spec"]["holderIdentity"] == ""
    assert b.try_acquire_or_renew()


def test_config_validates_timing() -> None:
    with pytest.raises(ValueError):
        leader.LeaderElectionConfig(namespace="n", name="l", lease_duration_s=5, renew_deadline_s=5)
    with pytest.raises(ValueError):
        leader.LeaderElectionConfig(namespace="n", name="l", renew_deadline_s=2, retry_period_s=2)
    assert "_" in leader.default_identity()


def fake_wait(clock: Clock, stop: threading.Event, hook: Any = None):
    def wait(seconds: float) -> bool:
        clock.now += seconds
        if hook is not None:
            hook()
        return stop.is_set()

    return wait


def test_run_leads_then_gives_up_after_renew_deadline() -> None:
    store, clock = MemoryLeaseStore(), Clock()
    stop = threading.Event()
    calls: list[str] = []
    state = {"ticks": 0}
    e: leader.LeaderElector

    def hook() -> None:
        state["ticks"] += 1
        assert e.is_leader or store.fail
        if state["ticks"] == 5:
            store.fail = True  # the API server becomes unreachable

    e = elector(
        store,
        clock,
        "a",
        started=lambda: calls.append("started"),
        stopped=lambda: calls.append("stopped"),
        wait=fake_wait(clock, stop, hook),
    )
    e.run()
    assert calls == ["started", "stopped"]
    assert e.lost.is_set() and not e.is_leader
    # Failing since tick 5 (t=108 was the last renewal): gives up at the first retry >= 10 s later.
    assert clock.now == pytest.approx(100 + 2 * 9)


def test_run_stops_at_once_when_the_lease_is_taken() -> None:
    store, clock = MemoryLeaseStore(), Clock()
    stop = threading.Event()

    def hook() -> None:
        if clock.now >= 106:
            lease = store.lease
            lease["spec"]["holderIdentity"] = "intruder"
            store.rv += 1
            lease["metadata"]["resourceVersion"] = str(store.rv)

    e = elector(store, clock, "a", wait=fake_wait(clock, stop, hook))
    e.run()
    assert e.lost.is_set()
    assert e.observed_holder == "intruder"
    assert clock.now == pytest.approx(106)


def test_is_leader_expires_without_renewals_even_if_the_thread_stalls() -> None:
    store, clock = MemoryLeaseStore(), Clock()
    e = elector(store, clock, "a")
    assert e.try_acquire_or_renew()
    e._become_leader()
    assert e.is_leader
    clock.now += 9.9
    assert e.is_leader
    clock.now += 0.2
    assert not e.is_leader


def test_stop_releases_the_lease_and_calls_back_once() -> None:
    store, clock = MemoryLeaseStore(), Clock()
    stop = threading.Event()
    calls: list[str] = []
    e: leader.LeaderElector

    def hook() -> None:
        if clock.now >= 110:
            e._stop.set()
            stop.set()

    e = elector(
        store,
        clock,
        "a",
        stopped=lambda: calls.append("stopped"),
        wait=fake_wait(clock, stop, hook),
    )
    e.run()
    assert calls == ["stopped"]
    assert not e.lost.is_set()
    assert store.lease["spec"]["holderIdentity"] == ""


def test_failing_callbacks_do_not_break_the_elector() -> None:
    store, clock = MemoryLeaseStore(), Clock()
    stop = threading.Event()

    def boom() -> None:
        raise RuntimeError("callback bug")

    def hook() -> None:
        if clock.now >= 104:
            store.fail = True

    e = elector(store, clock, "a", started=boom, stopped=boom, wait=fake_wait(clock, stop, hook))
    e.run()
    assert e.lost.is_set()
