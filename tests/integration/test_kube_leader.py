"""Leader election on a real ``coordination.k8s.io/v1`` Lease (kube-apiserver 1.36).

Two electors on one Lease: exactly one leads; when the leader stops renewing (a crash: no
release), the other takes over within the lease duration (plus one retry period); with a
release on shutdown the handover is immediate.
"""

from __future__ import annotations

import threading
import time

import pytest

from scheduler.kube import client as kube_client
from scheduler.kube import errors, leader

pytestmark = pytest.mark.integration

LEASE_S = 3.0
RENEW_S = 2.0
RETRY_S = 0.5


class Candidate:
    def __init__(
        self, kube: kube_client.KubeClient, namespace: str, ident: str, *, release: bool
    ) -> None:
        self.started = threading.Event()
        self.stopped = threading.Event()
        self.started_at = 0.0
        config = leader.LeaderElectionConfig(
            namespace=namespace,
            name="wfsched",
            identity=ident,
            lease_duration_s=LEASE_S,
            renew_deadline_s=RENEW_S,
            retry_period_s=RETRY_S,
            release_on_stop=release,
        )
        self.elector = leader.LeaderElector(
            kube, config, on_started_leading=self._on_started, on_stopped_leading=self.stopped.set
        )

    def _on_started(self) -> None:
        self.started_at = time.monotonic()
        self.started.set()


def _elect(kube: kube_client.KubeClient, namespace: str, *, release: bool):
    a = Candidate(kube, namespace, "replica-a", release=release)
    b = Candidate(kube, namespace, "replica-b", release=release)
    a.elector.start()
    b.elector.start()
    deadline = time.monotonic() + 10
    while not (a.started.is_set() or b.started.is_set()):
        assert time.monotonic() < deadline, "nobody became leader"
        time.sleep(0.05)
    return (a, b) if a.started.is_set() else (b, a)


def test_exactly_one_of_two_electors_leads(kube: kube_client.KubeClient, namespace: str) -> None:
    leader_c, follower = _elect(kube, namespace, release=True)
    try:
        for _ in range(int(2 * LEASE_S / 0.1)):  # two lease durations of renewals
            assert leader_c.elector.is_leader
            assert not follower.elector.is_leader
            time.sleep(0.1)
        lease = kube.get_lease(namespace, "wfsched")
        assert lease is not None
        assert lease["spec"]["holderIdentity"] == leader_c.elector.identity
        assert lease["spec"]["leaseDurationSeconds"] == 3
        assert not follower.started.is_set()
    finally:
        leader_c.elector.stop()
        follower.elector.stop()


def test_crashed_leader_is_replaced_within_the_lease_duration(
    kube: kube_client.KubeClient, namespace: str
) -> None:
    leader_c, follower = _elect(kube, namespace, release=False)
    try:
        time.sleep(1.0)
        last_renew = kube.get_lease(namespace, "wfsched")["spec"]["renewTime"]
        stopped_at = time.monotonic()
        leader_c.elector.stop()  # renewals stop; the Lease is left as it was
        assert leader_c.stopped.wait(5)
        assert not leader_c.elector.is_leader
        assert follower.started.wait(LEASE_S + 3 * RETRY_S + 2), "no takeover"
        handover = follower.started_at - stopped_at
        lease = kube.get_lease(namespace, "wfsched")
        assert lease["spec"]["holderIdentity"] == follower.elector.identity
        assert lease["spec"]["leaseTransitions"] == 1
        assert lease["spec"]["renewTime"] != last_renew
        # Not before the old record is lease_duration old, and not much later.
        assert LEASE_S - RETRY_S - 0.5 <= handover <= LEASE_S + 2 * RETRY_S * 1.2 + 1.0, handover
        print(f"handover after crash: {handover:.2f}s (lease {LEASE_S}s)")
    finally:
        follower.elector.stop()


def test_released_lease_is_taken_over_at_the_next_retry(
    kube: kube_client.KubeClient, namespace: str
) -> None:
    leader_c, follower = _elect(kube, namespace, release=True)
    try:
        stopped_at = time.monotonic()
        leader_c.elector.stop()
        assert follower.started.wait(LEASE_S), "no takeover after release"
        handover = follower.started_at - stopped_at
        assert handover < 2 * RETRY_S * 1.2 + 0.5, handover
        print(f"handover after release: {handover:.2f}s")
    finally:
        follower.elector.stop()


def test_lease_store_is_compare_and_swap(kube: kube_client.KubeClient, namespace: str) -> None:
    body = {"metadata": {"name": "cas"}, "spec": {"holderIdentity": "x"}}
    created = kube.create_lease(namespace, body)
    with pytest.raises(errors.AlreadyExistsError):
        kube.create_lease(namespace, body)
    first = dict(created, spec={"holderIdentity": "y"})
    kube.replace_lease(namespace, "cas", first)
    with pytest.raises(errors.ConflictError):  # same (now stale) resourceVersion again
        kube.replace_lease(namespace, "cas", dict(created, spec={"holderIdentity": "z"}))
    assert kube.get_lease(namespace, "cas")["spec"]["holderIdentity"] == "y"
    assert kube.get_lease(namespace, "absent") is None
