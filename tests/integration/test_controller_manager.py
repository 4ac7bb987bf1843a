"""kube-controller-manager on the local control plane: Jobs make pods, wfsched places them,
the Job completes, and deleting it removes its pods (garbage collector)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from k8s_helpers import DaemonProcess, wait_for
from kubernetes import client

from scheduler.devtools import devcluster
from tests.support import controlplane

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def kcm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devcluster.DevCluster]:
    with controlplane.running_cluster(
        tmp_path_factory.mktemp("kcm-cluster"), metrics_server=False, controller_manager=True
    ) as cluster:
        cluster.create_nodes(2, cpu="4", memory="8Gi", prefix="kcm-node-")
        yield cluster


def _job(name: str, *, step: str, completions: int) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "completions": completions,
            "parallelism": completions,
            "backoffLimit": 0,
            "template": {
                "metadata": {
                    "labels": {"wfsched.io/run-id": "jobs", "wfsched.io/step": step},
                    "annotations": {"kwok.wfsched.io/runtime": "2s"},
                },
                "spec": {
                    "schedulerName": "workflow-scheduler",
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "c", "image": "x", "resources": {"requests": {"cpu": "1"}}}
                    ],
                },
            },
        },
    }


def test_jobs_make_pods_that_wfsched_places_and_the_garbage_collector_removes(
    kcm_cluster: devcluster.DevCluster, tmp_path: Path
) -> None:
    api = controlplane.api_client(kcm_cluster)
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    ns = "kcm-test"
    core.create_namespace({"metadata": {"name": ns}})
    with DaemonProcess(
        str(kcm_cluster.kubeconfig), tmp_path, namespaces=[ns], lease={"enabled": False}
    ):
        batch.create_namespaced_job(ns, _job("fan-out", step="map", completions=6))

        def complete() -> bool:
            status = batch.read_namespaced_job_status("fan-out", ns).status
            return (status.succeeded or 0) == 6

        wait_for(complete, timeout_s=120, interval_s=0.5, what="the Job to complete")
    pods = core.list_namespaced_pod(ns, label_selector="batch.kubernetes.io/job-name=fan-out")
    assert len(pods.items) == 6
    assert {p.spec.node_name for p in pods.items} <= {"kcm-node-0", "kcm-node-1"}
    assert all(p.status.phase == "Succeeded" for p in pods.items)
    # Background deletion: the garbage collector removes the pods the Job owned.
    batch.delete_namespaced_job("fan-out", ns, propagation_policy="Background")
    wait_for(
        lambda: not core.list_namespaced_pod(ns).items,
        timeout_s=60,
        what="the garbage collector to delete the Job's pods",
    )
    # The namespace controller empties and removes a deleted namespace; the service-account
    # controller gave it its default ServiceAccount.
    assert core.read_namespaced_service_account("default", ns).metadata.name == "default"
    core.delete_namespace(ns)

    def namespace_gone() -> bool:
        try:
            core.read_namespace(ns)
        except client.ApiException as exc:
            return exc.status == 404
        return False

    wait_for(namespace_gone, timeout_s=60, interval_s=0.5, what="the namespace to be removed")
