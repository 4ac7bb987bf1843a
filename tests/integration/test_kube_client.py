"""``scheduler.kube.client.KubeClient`` against the real kube-apiserver 1.36 (+ KWOK).

Pins the raw-JSON client's contracts: paged LIST, WATCH event kinds, the bind outcomes the
loop relies on (201, 409 bound/gated/uid, 404), status conditions, events.k8s.io Events,
pre-bind resize, metadata patches, ConfigMaps, and metrics.k8s.io's None-when-unavailable.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from k8s_helpers import make_pod, read_pod, wait_for
from kubernetes import client

from scheduler.devtools import devcluster
from scheduler.kube import client as kube_client
from scheduler.kube import errors

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kube(dev_cluster: devcluster.DevCluster) -> Iterator[kube_client.KubeClient]:
    kc = kube_client.KubeClient.connect(
        str(dev_cluster.kubeconfig), qps=500, burst=500, pool_size=8, identity="wfsched-test"
    )
    yield kc
    kc.close()


def _create(core_v1: client.CoreV1Api, namespace: str, manifest: dict) -> dict:
    resp = core_v1.create_namespaced_pod(namespace, manifest, _preload_content=False)
    created: dict = json.loads(resp.data)
    return created


def test_server_version(kube: kube_client.KubeClient) -> None:
    assert kube.server_version() == devcluster.read_versions()["K8S_VERSION"]


def test_list_pages_through_more_pods_than_one_page(
    kube: kube_client.KubeClient, core_v1: client.CoreV1Api, namespace: str
) -> None:
    count = 130
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: _create(core_v1, namespace, make_pod(f"p{i:03d}")), range(count)))
    requests_before = kube.requests_total
    started = time.perf_counter()
    items, resource_version = kube.list_objects("pods", namespace=namespace, page_size=50)
    elapsed = time.perf_counter() - started
    assert sorted(i["metadata"]["name"] for i in items) == [f"p{i:03d}" for i in range(count)]
    assert kube.requests_total - requests_before == 3  # 50 + 50 + 30
    assert int(resource_version) > 0
    assert all(i["kind"] == "Pod" and i["apiVersion"] == "v1" for i in items)
    # Field selectors are passed through: all of them are unbound.
    unbound, _ = kube.list_objects("pods", namespace=namespace, field_selector="spec.nodeName=")
    assert len(unbound) == count
    print(f"listed {count} pods in 3 pages in {elapsed * 1000:.1f} ms")


def test_watch_delivers_added_modified_deleted(
    kube: kube_client.KubeClient, core_v1: client.CoreV1Api, namespace: str
) -> None:
    _, resource_version = kube.list_objects("pods", namespace=namespace)
    stream = kube.open_watch(
        "pods", resource_version=resource_version, namespace=namespace, timeout_seconds=30
    )
    seen: queue.Queue = queue.Queue()

    def consume() -> None:
        try:
            for event in stream:
                seen.put((event["type"], event["object"]["metadata"].get("name")))
        except errors.ApiError as exc:  # pragma: no cover - reported by the assertion below
            seen.put(("FAILED", str(exc)))

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    _create(core_v1, namespace, make_pod("w"))
    core_v1.patch_namespaced_pod("w", namespace, {"metadata": {"labels": {"x": "1"}}})
    core_v1.delete_namespaced_pod("w", namespace, grace_period_seconds=0)
    events = []
    deadline = time.monotonic() + 20
    while ("DELETED", "w") not in events and time.monotonic() < deadline:
        try:
            events.append(seen.get(timeout=1))
        except queue.Empty:
            continue
    stream.close()
    reader.join(5)
    assert not reader.is_alive(), "close() must unblock the reading thread"
    non_bookmarks = [e for e in events if e[0] != "BOOKMARK"]
    assert non_bookmarks[0] == ("ADDED", "w")
    assert ("MODIFIED", "w") in non_bookmarks
    assert non_bookmarks[-1] == ("DELETED", "w")


def test_watch_objects_ends_cleanly_at_the_server_timeout(
    kube: kube_client.KubeClient, namespace: str
) -> None:
    _, resource_version = kube.list_objects("pods", namespace=namespace)
    started = time.monotonic()
    events = list(
        kube.watch_objects(
            "pods", resource_version=resource_version, namespace=namespace, timeout_seconds=1
        )
    )
    assert all(e["type"] == "BOOKMARK" for e in events)
    assert 0.5 < time.monotonic() - started < 10


def test_bind_outcomes(
    kube: kube_client.KubeClient, core_v1: client.CoreV1Api, namespace: str, kwok_nodes
) -> None:
    first, second = kwok_nodes(2)
    pod = _create(core_v1, namespace, make_pod("once"))
    uid = pod["metadata"]["uid"]
    kube.bind(namespace, "once", uid, first)
    assert read_pod(core_v1, namespace, "once")["spec"]["nodeName"] == first

    with pytest.raises(errors.ConflictError) as already:
        kube.bind(namespace, "once", uid, second)
    assert already.value.http_status == 409 and already.value.reason == "Conflict"

    with pytest.raises(errors.NotFoundError):
        kube.bind(namespace, "missing", "", first)

    gated = _create(core_v1, namespace, make_pod("gated", gates=["kueue.x-k8s.io/admission"]))
    with pytest.raises(errors.ConflictError):
        kube.bind(namespace, "gated", gated["metadata"]["uid"], first)

    # A different pod under the same name (delete + recreate): the uid precondition refuses.
    other = _create(core_v1, namespace, make_pod("reborn"))
    core_v1.delete_namespaced_pod("reborn", namespace, grace_period_seconds=0)
    wait_for(
        lambda: (
            "reborn"
            not in [
                p["metadata"]["name"] for p in kube.list_objects("pods", namespace=namespace)[0]
            ]
        ),
        what="reborn deleted",
    )
    _create(core_v1, namespace, make_pod("reborn"))
    with pytest.raises(errors.ConflictError):
        kube.bind(namespace, "reborn", other["metadata"]["uid"], first)
    assert "nodeName" not in read_pod(core_v1, namespace, "reborn")["spec"]


def test_set_pod_condition_is_visible_on_the_pod(
    kube: kube_client.KubeClient, core_v1: client.CoreV1Api, namespace: str
) -> None:
    _create(core_v1, namespace, make_pod("stuck"))
    message = "0/3 nodes are available: 3 Insufficient memory."
    kube.set_pod_condition(
        namespace,
        "stuck",
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message},
    )
    conditions = read_pod(core_v1, namespace, "stuck")["status"]["conditions"]
    scheduled = [c for c in conditions if c["type"] == "PodScheduled"]
    assert len(scheduled) == 1
    assert scheduled[0]["status"] == "False"
    assert scheduled[0]["reason"] == "Unschedulable"
    assert scheduled[0]["message"] == message
    assert scheduled[0]["lastTransitionTime"].endswith("Z")
    with pytest.raises(errors.NotFoundError):
        kube.set_pod_condition(namespace, "ghost", {"type": "PodScheduled", "status": "False"})


def test_create_event_is_listed_by_events_api(
    kube: kube_client.KubeClient, core_v1: client.CoreV1Api, namespace: str
) -> None:
    pod = _create(core_v1, namespace, make_pod("evented"))
    sent = kube.events_sent
    kube.create_event(
        namespace=namespace,
        pod_name="evented",
        pod_uid=pod["metadata"]["uid"],
        reason="FailedScheduling",
        note="0/1 nodes are available: 1 Too many pods.",
        event_type="Warning",
    )
    assert kube.events_sent == sent + 1
    events, _ = kube.list_objects("events", namespace=namespace)
    (event,) = [e for e in events if e["regarding"]["name"] == "evented"]
    assert event["reportingController"] == "wfsched"
    assert event["reportingInstance"] == "wfsched-test"
    assert event["action"] == "Scheduling"
    assert event["reason"] == "FailedScheduling"
    assert event["type"] == "Warning"
    assert event["regarding"]["uid"] == pod["metadata"]["uid"]
    assert event["eventTime"].endswith("Z")
    # The core/v1 view (kubectl describe) sees the same Event.
    core = json.loads(core_v1.list_namespaced_event(namespace, _preload_content=False).data)
    assert any(e["involvedObject"]["name"] == "evented" for e in core["items"])

    # Invalid input is swallowed and counted, never raised.
    failed = kube.events_failed
    kube.create_event(
        namespace=namespace, pod_name="evented", pod_uid="u", reason="", note="x", event_type="Odd"
    )
    assert kube.events_failed == failed + 1


def test_resize_unbound_pod_then_bind(
    kube: kube_client.KubeClient, core_v1: client.CoreV1Api, namespace: str, kwok_nodes
) -> None:
    (node,) = kwok_nodes(1)
    pod = _create(
        core_v1, namespace, make_pod("big", cpu="100m", memory="1Gi", limits={"memory": "1Gi"})
    )
    resized = kube.resize_pod(
        namespace,
        "big",
        [
            {
                "name": "main",
                "resources": {"requests": {"memory": "256Mi"}, "limits": {"memory": "256Mi"}},
            }
        ],
    )
    resources = resized["spec"]["containers"][0]["resources"]
    assert resources["requests"] == {"cpu": "100m", "memory": "256Mi"}
    assert resources["limits"] == {"memory": "256Mi"}
    kube.bind(namespace, "big", pod["metadata"]["uid"], node)
    assert read_pod(core_v1, namespace, "big")["spec"]["nodeName"] == node

    with pytest.raises(errors.InvalidError):  # a QoS change (Burstable -> BestEffort)
        kube.resize_pod(namespace, "big", [{"name": "main", "resources": {"requests": None}}])


def test_patch_pod_metadata_sets_and_removes(
    kube: kube_client.KubeClient, core_v1: client.CoreV1Api, namespace: str
) -> None:
    _create(core_v1, namespace, make_pod("meta", labels={"keep": "1", "drop": "1"}))
    patched = kube.patch_pod_metadata(
        namespace,
        "meta",
        labels={"commonworkflowscheduler/memoryscaled": "true", "drop": None},
        annotations={"wfsched.io/original-memory": "1Gi"},
    )
    assert patched["metadata"]["labels"] == {
        "keep": "1",
        "commonworkflowscheduler/memoryscaled": "true",
    }
    assert patched["metadata"]["annotations"]["wfsched.io/original-memory"] == "1Gi"
    with pytest.raises(ValueError):
        kube.patch_pod_metadata(namespace, "meta")


def test_get_configmap(
    kube: kube_client.KubeClient, core_v1: client.CoreV1Api, namespace: str
) -> None:
    core_v1.create_namespaced_config_map(
        namespace, {"metadata": {"name": "dag"}, "data": {"dag.json": '{"vertices": []}'}}
    )
    cm = kube.get_configmap(namespace, "dag")
    assert cm is not None and cm["data"]["dag.json"] == '{"vertices": []}'
    assert kube.get_configmap(namespace, "absent") is None


def test_metrics_are_none_when_the_api_is_unavailable(
    dev_cluster: devcluster.DevCluster, tmp_path: Path
) -> None:
    # 1) Not registered: the aggregator answers 404.
    absent = kube_client.KubeClient.connect(
        str(dev_cluster.kubeconfig),
        qps=50,
        burst=50,
        pool_size=1,
        metrics_api_path="/apis/absent.wfsched.io/v1beta1",
    )
    assert absent.node_metrics() is None
    assert absent.pod_metrics("default") is None

    # 2) Registered, but the backend is down: the aggregator answers 503.
    admin = dev_cluster.admin()
    group = "down.wfsched.io"
    admin.apply(
        "/apis/apiregistration.k8s.io/v1/apiservices",
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": f"v1beta1.{group}"},
            "spec": {
                "group": group,
                "version": "v1beta1",
                "insecureSkipTLSVerify": True,
                "groupPriorityMinimum": 10,
                "versionPriority": 10,
                "service": {
                    "namespace": "kube-system",
                    "name": "metrics-server",
                    "port": devcluster.free_port(),
                },
            },
        },
    )
    try:
        down = kube_client.KubeClient.connect(
            str(dev_cluster.kubeconfig),
            qps=50,
            burst=50,
            pool_size=1,
            metrics_api_path=f"/apis/{group}/v1beta1",
            max_read_retries=0,
        )
        assert down.node_metrics() is None
        assert down.pod_metrics() is None
    finally:
        admin.request("DELETE", f"/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.{group}")

    # 3) No server at all: connection refused.
    config = yaml.safe_load(dev_cluster.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{devcluster.free_port()}"
    dead = tmp_path / "dead.kubeconfig"
    dead.write_text(yaml.safe_dump(config))
    unreachable = kube_client.KubeClient.connect(str(dead), qps=50, burst=50, pool_size=1)
    assert unreachable.node_metrics() is None
    assert unreachable.pod_metrics() is None
    with pytest.raises(errors.ApiConnectionError):
        unreachable.server_version()


@pytest.mark.slow
def test_metrics_report_usage_when_metrics_server_runs(
    kube: kube_client.KubeClient, core_v1: client.CoreV1Api, namespace: str, kwok_nodes
) -> None:
    (node,) = kwok_nodes(1, cpu="4", memory="8Gi")
    pod = _create(
        core_v1,
        namespace,
        make_pod(
            "busy",
            runtime="600s",
            annotations={
                devcluster.USAGE_CPU_ANNOTATION: "250m",
                devcluster.USAGE_MEMORY_ANNOTATION: "300Mi",
            },
        ),
    )
    kube.bind(namespace, "busy", pod["metadata"]["uid"], node)

    def node_usage() -> dict | None:
        items = kube.node_metrics()
        mine = [i for i in items or () if i["metadata"]["name"] == node]
        return mine[0] if mine else None

    usage = wait_for(node_usage, timeout_s=120, interval_s=2, what="node metrics")
    assert set(usage["usage"]) >= {"cpu", "memory"}
    assert usage["window"]

    pods = wait_for(
        lambda: kube.pod_metrics(namespace), timeout_s=120, interval_s=2, what="pod metrics"
    )
    assert pods[0]["containers"][0]["usage"]["memory"] in (
        "300Mi",
        str(300 * 1024 * 1024),
        f"{300 * 1024}Ki",
    )
