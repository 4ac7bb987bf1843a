"""metrics.k8s.io serves KWOK node and pod usage through metrics-server (slow: scrapes)."""

from __future__ import annotations

import pytest
from k8s_helpers import bind_pod, make_pod, read_pod, wait_for
from kubernetes import client

from scheduler.devtools import devcluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _quantity_bytes(value: str) -> int:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
    for suffix, factor in units.items():
        if value.endswith(suffix):
            return int(value[: -len(suffix)]) * factor
    return int(value)


def test_metrics_api_reports_annotated_pod_usage_and_node_usage(
    api_client: client.ApiClient, core_v1: client.CoreV1Api, namespace: str, kwok_nodes
) -> None:
    (node,) = kwok_nodes(1, cpu="4", memory="8Gi")
    manifest = make_pod(
        "busy",
        cpu="500m",
        memory="1Gi",
        runtime="600s",
        annotations={
            devcluster.USAGE_CPU_ANNOTATION: "250m",
            devcluster.USAGE_MEMORY_ANNOTATION: "300Mi",
        },
    )
    core_v1.create_namespaced_pod(namespace, manifest)
    assert bind_pod(core_v1, namespace, "busy", node) == 201
    wait_for(
        lambda: read_pod(core_v1, namespace, "busy")["status"]["phase"] == "Running",
        timeout_s=20,
        what="Running",
    )
    custom = client.CustomObjectsApi(api_client)

    def pod_metrics() -> dict | None:
        try:
            return custom.get_namespaced_custom_object(
                "metrics.k8s.io", "v1beta1", namespace, "pods", "busy"
            )
        except client.ApiException:
            return None

    metrics = wait_for(pod_metrics, timeout_s=120, interval_s=2, what="pod metrics")
    usage = metrics["containers"][0]["usage"]
    assert _quantity_bytes(usage["memory"]) == 300 * (1 << 20)

    def node_metrics() -> dict | None:
        try:
            return custom.get_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes", node)
        except client.ApiException:
            return None

    node_usage = wait_for(node_metrics, timeout_s=120, interval_s=2, what="node metrics")
    assert _quantity_bytes(node_usage["usage"]["memory"]) >= 300 * (1 << 20)
    assert node_usage["metadata"]["name"] == node
