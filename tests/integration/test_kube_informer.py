"""``scheduler.kube.informer.Informer`` against the real kube-apiserver 1.36.

Covers the event stream the decision loop consumes (ADDED/MODIFIED/DELETED, uid-aware
recreate), what the field-selected watches deliver when a pod is bound or finishes, and a
**forced 410**: the informer's resourceVersion falls out of the API server's window while a pod
is deleted behind its back; it must LIST again, emit a synthetic DELETED for that pod, and go
on watching.

How the 410 is forced (no test hooks in the informer): a private control plane (so the
session cluster is never disturbed) has its kube-apiserver killed while the informer watches;
the pod is deleted directly in etcd (JSON gateway ``/v3/kv/deleterange``) and etcd is
compacted at that revision; kube-apiserver is started again. Its new watch cache begins after
the informer's resourceVersion, and etcd no longer has that history, so the informer's re-watch
is answered with ``410 Expired`` ("too old resource version").
"""

from __future__ import annotations

import base64
import http.client
import json
import queue
import random
import signal
import time

import pytest
from k8s_helpers import make_pod, wait_for
from kubernetes import client

from scheduler.devtools import devcluster
from scheduler.kube import client as kube_client
from scheduler.kube import errors, informer
from tests.support import controlplane

pytestmark = pytest.mark.integration


class Collector:
    """Reads ``(name, type, obj)`` tuples off the informer queue."""

    def __init__(self, q: queue.Queue) -> None:
        self.q = q
        self.seen: list[tuple[str, str, dict]] = []

    def until(self, predicate, timeout_s: float = 20) -> list[tuple[str, str, dict]]:
        deadline = time.monotonic() + timeout_s
        while not predicate(self.seen):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(
                    f"timed out; saw {[(t, o['metadata']['name']) for _, t, o in self.seen]}"
                )
            try:
                self.seen.append(self.q.get(timeout=min(remaining, 0.5)))
            except queue.Empty:
                continue
        return self.seen

    def summary(self) -> list[tuple[str, str]]:
        return [(t, o["metadata"]["name"]) for _, t, o in self.seen]


def has(event_type: str, name: str):
    return lambda seen: any(t == event_type and o["metadata"]["name"] == name for _, t, o in seen)


def start(
    kube_or_client, spec: informer.WatchSpec, **kwargs
) -> tuple[informer.Informer, Collector]:
    q: queue.Queue = queue.Queue()
    inf = informer.Informer(kube_or_client, spec, q, rng=random.Random(3), **kwargs)
    inf.start()
    assert inf.has_synced.wait(20), "informer did not sync"
    return inf, Collector(q)


def _create(core_v1: client.CoreV1Api, namespace: str, manifest: dict) -> dict:
    return json.loads(
        core_v1.create_namespaced_pod(namespace, manifest, _preload_content=False).data
    )


def test_informer_lists_then_streams_changes(
    kube: kube_client.KubeClient, core_v1: client.CoreV1Api, namespace: str
) -> None:
    _create(core_v1, namespace, make_pod("before"))
    inf, events = start(
        kube, informer.WatchSpec(name="pods", kind="pods", namespace=namespace), watch_timeout_s=2
    )
    try:
        events.until(has("ADDED", "before"))
        _create(core_v1, namespace, make_pod("after"))
        core_v1.patch_namespaced_pod("after", namespace, {"metadata": {"labels": {"x": "y"}}})
        core_v1.delete_namespaced_pod("before", namespace, grace_period_seconds=0)
        events.until(lambda s: has("DELETED", "before")(s) and has("MODIFIED", "after")(s))
        time.sleep(2.5)  # at least one clean server-side end: re-watched, nothing lost
        _create(core_v1, namespace, make_pod("late"))
        events.until(has("ADDED", "late"))
    finally:
        inf.stop()
    assert events.summary()[:2] == [("ADDED", "before"), ("ADDED", "after")]
    assert inf.watch_count >= 2 and inf.relist_count == 0 and inf.error_count == 0
    assert sorted(inf.snapshot()) == [f"{namespace}/after", f"{namespace}/late"]


def test_delete_and_recreate_under_the_same_name_is_delete_then_add(
    kube: kube_client.KubeClient, core_v1: client.CoreV1Api, namespace: str
) -> None:
    first = _create(core_v1, namespace, make_pod("twin"))
    inf, events = start(kube, informer.WatchSpec(name="pods", kind="pods", namespace=namespace))
    try:
        core_v1.delete_namespaced_pod("twin", namespace, grace_period_seconds=0)
        wait_for(lambda: not kube.list_objects("pods", namespace=namespace)[0], what="gone")
        second = _create(core_v1, namespace, make_pod("twin"))
        seen = events.until(
            lambda s: any(o["metadata"]["uid"] == second["metadata"]["uid"] for _, _, o in s)
        )
    finally:
        inf.stop()
    # (a MODIFIED carrying the deletionTimestamp may precede the DELETED)
    uids = [(t, o["metadata"]["uid"]) for _, t, o in seen if t != "MODIFIED"]
    assert uids == [
        ("ADDED", first["metadata"]["uid"]),
        ("DELETED", first["metadata"]["uid"]),
        ("ADDED", second["metadata"]["uid"]),
    ]


def test_unbound_watch_reports_binding_as_deleted_with_the_pre_binding_object(
    kube: kube_client.KubeClient, core_v1: client.CoreV1Api, namespace: str, kwok_nodes
) -> None:
    """Pins what the pending-pods watch means: DELETED = "left the unbound set"."""
    (node,) = kwok_nodes(1)
    pod = _create(core_v1, namespace, make_pod("p", scheduler_name="wfsched-test"))
    spec = informer.WatchSpec(
        name="pending", kind="pods", namespace=namespace, field_selector="spec.nodeName="
    )
    keep = informer.scheduler_name_filter(["wfsched-test"])
    inf, events = start(kube, spec, keep=keep)
    fresh, fresh_events = start(kube, spec, keep=keep, refetch_on_leave=True)
    try:
        events.until(has("ADDED", "p"))
        fresh_events.until(has("ADDED", "p"))
        kube.bind(namespace, "p", pod["metadata"]["uid"], node)
        seen = events.until(has("DELETED", "p"))
        fresh_seen = fresh_events.until(has("DELETED", "p"))
    finally:
        inf.stop()
        fresh.stop()
    deleted = seen[-1][2]
    assert deleted["metadata"]["uid"] == pod["metadata"]["uid"]
    assert "nodeName" not in deleted["spec"]  # the object as it was before it left the set
    assert fresh_seen[-1][2]["spec"]["nodeName"] == node  # refetched: bound, not deleted


def test_active_pods_watch_drops_a_finished_pod(
    kube: kube_client.KubeClient, core_v1: client.CoreV1Api, namespace: str, kwok_nodes
) -> None:
    """A pod that succeeds leaves the non-terminal watch with a DELETED event. The server
    sends its last *non-terminal* state; ``refetch_on_leave`` reports the terminal one."""
    (node,) = kwok_nodes(1)
    pod = _create(core_v1, namespace, make_pod("short", runtime="1s"))
    spec = informer.WatchSpec(
        name="pods",
        kind="pods",
        namespace=namespace,
        field_selector=informer.ACTIVE_PODS.field_selector,
    )
    raw, raw_events = start(kube, spec)
    fresh, fresh_events = start(kube, spec, refetch_on_leave=True)
    try:
        kube.bind(namespace, "short", pod["metadata"]["uid"], node)
        raw_seen = raw_events.until(has("DELETED", "short"), timeout_s=30)
        fresh_seen = fresh_events.until(has("DELETED", "short"), timeout_s=30)
    finally:
        raw.stop()
        fresh.stop()
    assert raw_seen[-1][2]["spec"]["nodeName"] == node
    assert raw_seen[-1][2]["status"]["phase"] == "Running"  # last state matching the selector
    assert fresh_seen[-1][2]["status"]["phase"] == "Succeeded"
    assert fresh_seen[-1][2]["metadata"]["uid"] == pod["metadata"]["uid"]
    assert fresh.refetches == 1


def test_node_informer_sees_kwok_nodes(kube: kube_client.KubeClient, kwok_nodes) -> None:
    inf, events = start(kube, informer.NODES)
    try:
        (name,) = kwok_nodes(1)
        events.until(has("ADDED", name))
    finally:
        inf.stop()
    assert not inf.alive


# --- forced 410 on a private control plane -----------------------------------------------------


private_cluster = controlplane.cluster_fixture(
    "private_cluster", scope="module", metrics_server=False
)


def _restart_apiserver(cluster: devcluster.DevCluster) -> None:
    """Start kube-apiserver again on its old port.

    While it is down, any loopback connection on this busy machine may get that port as its
    ephemeral source port for a moment; the listener then fails with EADDRINUSE. Retry.
    """
    for attempt in range(10):
        try:
            cluster.start_component("kube-apiserver")
            return
        except devcluster.DevClusterError as exc:
            if "address already in use" not in str(exc) or attempt == 9:
                raise
            time.sleep(1.0)


def _create_riding_out_restart(
    admin: devcluster.AdminClient, path: str, body: dict, *, patience_s: float = 60
) -> int:
    """POST ``body`` to a just-restarted API server: refused or cut connections, 5xx and 429 are
    retried for ``patience_s``; a 409 after a lost answer means the first try created it."""
    deadline = time.monotonic() + patience_s
    retried = False
    while True:
        try:
            status, _ = admin.request("POST", path, body)
        except (OSError, http.client.HTTPException):
            status = 0
        if status == 201 or (status == 409 and retried):
            return 201
        if (status and status < 500 and status != 429) or time.monotonic() > deadline:
            return status
        retried = True
        time.sleep(0.5)


def test_forced_410_relists_emits_synthetic_delete_and_continues(
    private_cluster: devcluster.DevCluster,
) -> None:
    cluster = private_cluster
    admin = cluster.admin()
    ns = "gap"
    admin.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    uids = {}
    for name in ("a", "b", "c"):
        status, body = admin.request("POST", f"/api/v1/namespaces/{ns}/pods", make_pod(name))
        assert status == 201, body
        uids[name] = body["metadata"]["uid"]

    kube = kube_client.KubeClient.connect(str(cluster.kubeconfig), qps=100, burst=100, pool_size=2)
    inf, events = start(
        kube,
        informer.WatchSpec(name="pods", kind="pods", namespace=ns),
        backoff_base_s=0.5,
        backoff_cap_s=2.0,
    )
    try:
        events.until(lambda s: len(s) == 3)
        stale_version = inf.resource_version

        cluster.stop_component("kube-apiserver", sig=signal.SIGKILL)
        key = base64.b64encode(f"/registry/pods/{ns}/b".encode()).decode()
        deleted = controlplane.etcd_post(cluster, "/v3/kv/deleterange", {"key": key})
        assert deleted["deleted"] == "1"
        revision = deleted["header"]["revision"]
        controlplane.etcd_post(
            cluster, "/v3/kv/compaction", {"revision": revision, "physical": True}
        )
        _restart_apiserver(cluster)

        seen = events.until(has("DELETED", "b"), timeout_s=60)
        assert inf.resync_count >= 1 and inf.relist_count >= 1
        assert isinstance(inf.last_error, errors.GoneError | errors.ApiConnectionError)
        synthetic = seen[-1][2]
        assert synthetic["metadata"]["uid"] == uids["b"]
        assert int(inf.resource_version) > int(stale_version)

        # And it keeps watching from the new list.
        status = _create_riding_out_restart(admin, f"/api/v1/namespaces/{ns}/pods", make_pod("d"))
        assert status == 201
        events.until(has("ADDED", "d"))
    finally:
        inf.stop()
        kube.close()
    # a and c were unchanged across the gap: no duplicate events for them.
    assert events.summary() == [
        ("ADDED", "a"),
        ("ADDED", "b"),
        ("ADDED", "c"),
        ("DELETED", "b"),
        ("ADDED", "d"),
    ]
    assert sorted(inf.snapshot()) == [f"{ns}/a", f"{ns}/c", f"{ns}/d"]
