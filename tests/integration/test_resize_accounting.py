"""Resize before bind against the real API server: limits kept, pods accounted exactly.

Issue 13, defect 9. The daemon learns a step's memory from two finished tasks, then resizes the
next tasks of that step before binding them. Checked here on the pods the API server holds:

- a Burstable container (limit above its request) gets a lower request and keeps its limit;
- pods with an init container and a RuntimeClass overhead are reserved as kube-scheduler
  accounts them (``max(container, init) + overhead``), so a node filled with them is never
  overcommitted, whatever their resized containers alone ask for.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from k8s_helpers import DaemonProcess, make_pod, read_pod, wait_for
from kubernetes import client

from scheduler.core import resources

pytestmark = pytest.mark.integration

MIB = 1 << 20
STEP_LABELS = {"wfsched.io/run-id": "r1", "wfsched.io/step": "align"}


def _teacher(name: str, peak_mib: int) -> dict[str, Any]:
    """A finished task of the step that tells the daemon its peak memory."""
    return make_pod(
        name,
        memory="1Gi",
        limits={"memory": "1Gi"},
        runtime="1s",
        labels=STEP_LABELS,
        annotations={"wfsched.io/peak-memory-bytes": str(peak_mib * MIB)},
    )


def _learn(core_v1: client.CoreV1Api, namespace: str, peaks_mib: tuple[int, ...]) -> None:
    for i, peak in enumerate(peaks_mib):
        core_v1.create_namespaced_pod(namespace, _teacher(f"teacher-{i}", peak))
    for i in range(len(peaks_mib)):
        wait_for(
            lambda n=f"teacher-{i}": (
                read_pod(core_v1, namespace, n)["status"]["phase"] == "Succeeded"
            ),
            what=f"teacher-{i} done",
        )
    time.sleep(0.5)  # the finished pods' events reach the daemon


def _settings(namespace: str) -> dict[str, Any]:
    return {
        "namespaces": [namespace],
        "predictor": "mean-offset=none",
        "lease": {"enabled": False, "namespace": namespace},
    }


def _memory(quantity: str | None) -> int:
    return resources.integer_value(quantity) if quantity else 0


def _implied_memory(pod: dict[str, Any]) -> int:
    """What the API server's pod asks a node for: max(app sum, largest init) + overhead."""
    spec = pod["spec"]
    app = sum(
        _memory(c.get("resources", {}).get("requests", {}).get("memory"))
        for c in spec["containers"]
    )
    init = max(
        (
            _memory(c.get("resources", {}).get("requests", {}).get("memory"))
            for c in spec.get("initContainers", [])
        ),
        default=0,
    )
    return max(app, init) + _memory((spec.get("overhead") or {}).get("memory"))


def test_burstable_pod_keeps_its_limit_after_the_resize(
    core_v1, namespace, kwok_nodes, tmp_path, dev_cluster
) -> None:
    kwok_nodes(1, cpu="8", memory="16Gi")
    with DaemonProcess(str(dev_cluster.kubeconfig), tmp_path, **_settings(namespace)):
        _learn(core_v1, namespace, (200, 300))
        burstable = make_pod(
            "burstable",
            memory="1Gi",
            limits={"memory": "2Gi"},
            runtime="1s",
            labels=STEP_LABELS,
        )
        core_v1.create_namespaced_pod(namespace, burstable)
        wait_for(
            lambda: read_pod(core_v1, namespace, "burstable")["status"]["phase"] == "Succeeded",
            what="burstable done",
        )
    pod = read_pod(core_v1, namespace, "burstable")
    container = pod["spec"]["containers"][0]["resources"]
    assert container["requests"]["memory"] == "250Mi"  # the mean of 200 and 300 MiB
    assert container["limits"]["memory"] == "2Gi"  # the user's headroom stays
    assert pod["status"]["qosClass"] == "Burstable"
    assert pod["metadata"]["labels"]["commonworkflowscheduler/memoryscaled"] == "true"


@pytest.fixture
def runtime_class(api_client: client.ApiClient):
    """A RuntimeClass whose admission adds 256 MiB of memory overhead to every pod."""
    node_v1 = client.NodeV1Api(api_client)
    name = f"overhead-{uuid.uuid4().hex[:6]}"
    node_v1.create_runtime_class(
        {
            "apiVersion": "node.k8s.io/v1",
            "kind": "RuntimeClass",
            "metadata": {"name": name},
            "handler": "runc",
            "overhead": {"podFixed": {"memory": "256Mi", "cpu": "10m"}},
        }
    )
    yield name
    node_v1.delete_runtime_class(name)


def test_resized_pods_with_init_container_and_overhead_never_overcommit_a_node(
    core_v1, namespace, kwok_nodes, tmp_path, dev_cluster, runtime_class
) -> None:
    (node,) = kwok_nodes(1, cpu="16", memory="4Gi")
    with DaemonProcess(str(dev_cluster.kubeconfig), tmp_path, **_settings(namespace)):
        _learn(core_v1, namespace, (200, 200))
        # Each pod: container 1Gi (limit 1Gi), init container 512Mi, overhead 256Mi. Resized
        # to 200Mi, the container alone would let 20 pods onto the 4Gi node; the pod really
        # needs max(200Mi, 512Mi) + 256Mi = 768Mi, so 5 fit.
        for i in range(12):
            manifest = make_pod(
                f"filler-{i:02d}",
                memory="1Gi",
                limits={"memory": "1Gi"},
                runtime="10m",
                labels=STEP_LABELS,
            )
            manifest["spec"]["runtimeClassName"] = runtime_class
            manifest["spec"]["initContainers"] = [
                {
                    "name": "stage-in",
                    "image": "busybox",
                    "resources": {"requests": {"cpu": "10m", "memory": "512Mi"}},
                }
            ]
            core_v1.create_namespaced_pod(namespace, manifest)

        def bound() -> list[dict[str, Any]]:
            pods = [read_pod(core_v1, namespace, f"filler-{i:02d}") for i in range(12)]
            return [p for p in pods if p["spec"].get("nodeName") == node]

        wait_for(lambda: len(bound()) >= 5, timeout_s=60, what="five fillers bound")
        time.sleep(4)  # later events and cycles must not squeeze more pods in
        on_node = bound()
    raw_node = json.loads(core_v1.read_node(node, _preload_content=False).data)
    allocatable = _memory(raw_node["status"]["allocatable"]["memory"])
    assert allocatable == 4 << 30
    for pod in on_node:
        assert pod["spec"]["overhead"]["memory"] == "256Mi"  # set by the RuntimeClass admission
        assert pod["spec"]["containers"][0]["resources"]["requests"]["memory"] == "200Mi"
        assert _implied_memory(pod) == 768 * MIB
    assert len(on_node) == 5
    assert sum(_implied_memory(pod) for pod in on_node) <= allocatable
