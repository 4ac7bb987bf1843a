"""Ground truth about the real control plane that the scheduler relies on.

Each test pins one behaviour of kube-apiserver 1.36 + KWOK that wfsched's design depends on:
binding, scheduling gates, conflicts, resizing pending pods, and metrics.k8s.io.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from k8s_helpers import bind_pod, make_pod, read_pod, wait_for
from kubernetes import client

from scheduler.devtools import devcluster

pytestmark = pytest.mark.integration


def test_server_reports_pinned_version(api_client: client.ApiClient) -> None:
    version = client.VersionApi(api_client).get_code()
    assert version.git_version == devcluster.read_versions()["K8S_VERSION"]


def test_fake_nodes_keep_their_allocatable(core_v1: client.CoreV1Api, kwok_nodes) -> None:
    (name,) = kwok_nodes(1, cpu="3", memory="5Gi", pods=17)
    node = json.loads(core_v1.read_node(name, _preload_content=False).data)
    assert node["status"]["allocatable"]["cpu"] == "3"
    assert node["status"]["allocatable"]["memory"] == "5Gi"
    assert node["status"]["allocatable"]["pods"] == "17"
    ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
    assert ready and ready[0]["status"] == "True"


def test_pod_waits_for_binding_then_kwok_runs_it_for_the_annotated_time(
    core_v1: client.CoreV1Api, namespace: str, kwok_nodes
) -> None:
    (node,) = kwok_nodes(1)
    core_v1.create_namespaced_pod(namespace, make_pod("p", runtime="4s"))
    time.sleep(2)
    pod = read_pod(core_v1, namespace, "p")
    assert pod["status"]["phase"] == "Pending"
    assert "nodeName" not in pod["spec"]

    assert bind_pod(core_v1, namespace, "p", node) == 201
    bound_at = time.monotonic()
    running = wait_for(
        lambda: read_pod(core_v1, namespace, "p")["status"]["phase"] == "Running",
        timeout_s=20,
        what="Running",
    )
    assert running
    wait_for(
        lambda: read_pod(core_v1, namespace, "p")["status"]["phase"] == "Succeeded",
        timeout_s=30,
        what="Succeeded",
    )
    elapsed = time.monotonic() - bound_at
    # The stage waits the annotated 4 s after the pod turns Running (no jitter): never
    # earlier, and not absurdly later.
    assert 3.5 <= elapsed < 20, elapsed
    pod = read_pod(core_v1, namespace, "p")
    assert pod["spec"]["nodeName"] == node
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0
    assert terminated["reason"] == "Completed"


def test_exit_code_annotation_fails_the_pod_with_the_given_reason(
    core_v1: client.CoreV1Api, namespace: str, kwok_nodes
) -> None:
    (node,) = kwok_nodes(1)
    manifest = make_pod(
        "oom",
        runtime="1s",
        annotations={
            devcluster.EXIT_CODE_ANNOTATION: "137",
            devcluster.REASON_ANNOTATION: "OOMKilled",
        },
    )
    core_v1.create_namespaced_pod(namespace, manifest)
    assert bind_pod(core_v1, namespace, "oom", node) == 201
    wait_for(
        lambda: read_pod(core_v1, namespace, "oom")["status"]["phase"] == "Failed",
        timeout_s=30,
        what="Failed",
    )
    state = read_pod(core_v1, namespace, "oom")["status"]["containerStatuses"][0]["state"]
    assert state["terminated"] == {**state["terminated"], "exitCode": 137, "reason": "OOMKilled"}


def test_binding_a_gated_pod_is_rejected(
    core_v1: client.CoreV1Api, namespace: str, kwok_nodes
) -> None:
    (node,) = kwok_nodes(1)
    core_v1.create_namespaced_pod(namespace, make_pod("gated", gates=["example.com/hold"]))
    status = bind_pod(core_v1, namespace, "gated", node)
    assert status == 409
    assert "nodeName" not in read_pod(core_v1, namespace, "gated")["spec"]


def test_binding_an_already_bound_pod_returns_409(
    core_v1: client.CoreV1Api, namespace: str, kwok_nodes
) -> None:
    first, second = kwok_nodes(2)
    core_v1.create_namespaced_pod(namespace, make_pod("once"))
    assert bind_pod(core_v1, namespace, "once", first) == 201
    assert bind_pod(core_v1, namespace, "once", second) == 409
    assert bind_pod(core_v1, namespace, "once", first) == 409
    assert read_pod(core_v1, namespace, "once")["spec"]["nodeName"] == first


def test_binding_a_missing_pod_returns_404(core_v1: client.CoreV1Api, namespace: str) -> None:
    assert bind_pod(core_v1, namespace, "does-not-exist", "nowhere") == 404


def test_a_component_whose_port_was_taken_starts_again_on_a_new_one(tmp_path: Path) -> None:
    """free_port's race: a port found free can be taken before the component binds it (CI saw
    KWOK exit with "address already in use"). The cluster starts anyway, on a new port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cluster = devcluster.DevCluster(
            tmp_path, devcluster.ClusterOptions(metrics_server=False, kube_scheduler=False)
        )
        cluster._state.ports["kwok"] = port  # as if another process took it after free_port
        cluster.start(build_missing=False)
        try:
            new_port = cluster._state.ports["kwok"]
            assert new_port != port
            assert b"address already in use" in cluster.log_path("kwok").read_bytes()
            with urllib.request.urlopen(f"http://127.0.0.1:{new_port}/healthz", timeout=5) as r:
                assert r.status == 200
        finally:
            cluster.stop()
