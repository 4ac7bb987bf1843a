"""How kube-apiserver 1.36 treats ``pods/resize`` for bound pods (docs/resize.md).

The API server accepts a resize of a bound pod only when its running containers report their
resources in ``status.containerStatuses[].resources`` (a 1.33+ kubelet does; on the local control
plane wfsched's KWOK stages do for pods annotated resizable). Grow-in-place
relies on what these tests pin.
"""

from __future__ import annotations

from typing import Any

import pytest
from k8s_helpers import bind_pod, make_pod, read_pod, wait_for
from kubernetes import client

from scheduler.devtools import devcluster

pytestmark = pytest.mark.integration


def _resize(
    core_v1: client.CoreV1Api, namespace: str, pod: str, resources: dict[str, dict[str, str]]
) -> tuple[int, str]:
    body = {"spec": {"containers": [{"name": "main", "resources": resources}]}}
    try:
        resp = core_v1.patch_namespaced_pod_resize(pod, namespace, body, _preload_content=False)
    except client.ApiException as exc:
        return int(exc.status), str(exc.body)
    return int(resp.status), ""


def _reported(pod: dict[str, Any]) -> dict[str, Any] | None:
    statuses = pod["status"].get("containerStatuses") or []
    return statuses[0].get("resources") if statuses else None


def _resizable(manifest: dict[str, Any]) -> dict[str, Any]:
    manifest["metadata"]["annotations"][devcluster.RESIZABLE_ANNOTATION] = "true"
    return manifest


def _running_with_resources(core_v1: client.CoreV1Api, namespace: str, name: str) -> Any:
    return wait_for(
        lambda: (
            (p := read_pod(core_v1, namespace, name))["status"].get("phase") == "Running"
            and _reported(p)
            and p
        ),
        timeout_s=20,
        what="Running with reported resources",
    )


def test_running_pod_on_a_fake_node_grows_and_the_node_reports_it(
    core_v1: client.CoreV1Api, namespace: str, kwok_nodes: Any
) -> None:
    (node,) = kwok_nodes(1, memory="4Gi")
    core_v1.create_namespaced_pod(
        namespace,
        _resizable(make_pod("run", memory="256Mi", limits={"memory": "256Mi"}, runtime="60s")),
    )
    assert bind_pod(core_v1, namespace, "run", node) == 201
    before = _running_with_resources(core_v1, namespace, "run")
    assert _reported(before) == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"memory": "256Mi"},
    }
    generation = before["metadata"]["generation"]

    status, _ = _resize(
        core_v1, namespace, "run", {"requests": {"memory": "512Mi"}, "limits": {"memory": "512Mi"}}
    )
    assert status == 200
    after = read_pod(core_v1, namespace, "run")
    assert after["metadata"]["generation"] == generation + 1
    assert after["spec"]["containers"][0]["resources"]["limits"] == {"memory": "512Mi"}
    assert after["status"]["qosClass"] == "Burstable"
    # The fake kubelet actuates it: the reported resources follow the spec.
    wait_for(
        lambda: (
            (_reported(read_pod(core_v1, namespace, "run")) or {}).get("limits")
            == {"memory": "512Mi"}
        ),
        timeout_s=10,
        what="resize reported",
    )
    assert read_pod(core_v1, namespace, "run")["status"]["phase"] == "Running"

    # Lowering is accepted too (1.36 allows decreasing a memory limit in place).
    status, _ = _resize(
        core_v1, namespace, "run", {"requests": {"memory": "384Mi"}, "limits": {"memory": "384Mi"}}
    )
    assert status == 200

    # More than the node's allocatable: refused by admission, naming the resource.
    status, body = _resize(
        core_v1, namespace, "run", {"requests": {"memory": "8Gi"}, "limits": {"memory": "8Gi"}}
    )
    assert status == 403
    assert "node didn't have enough allocatable resources: memory" in body
    assert read_pod(core_v1, namespace, "run")["spec"]["containers"][0]["resources"]["limits"] == {
        "memory": "384Mi"
    }


def test_the_allocatable_check_ignores_the_other_pods_on_the_node(
    core_v1: client.CoreV1Api, namespace: str, kwok_nodes: Any
) -> None:
    """Admission compares the resized pod with the node's allocatable alone: a grow that
    over-commits the node together with its other pods is accepted, so the scheduler that
    grows must account for the node's room itself."""
    (node,) = kwok_nodes(1, memory="1Gi")
    for name in ("a", "b"):
        core_v1.create_namespaced_pod(
            namespace,
            _resizable(make_pod(name, memory="400Mi", limits={"memory": "400Mi"}, runtime="60s")),
        )
        assert bind_pod(core_v1, namespace, name, node) == 201
    _running_with_resources(core_v1, namespace, "a")
    status, _ = _resize(
        core_v1, namespace, "a", {"requests": {"memory": "900Mi"}, "limits": {"memory": "900Mi"}}
    )
    assert status == 200


def test_guaranteed_running_pod_keeps_its_qos_class(
    core_v1: client.CoreV1Api, namespace: str, kwok_nodes: Any
) -> None:
    (node,) = kwok_nodes(1)
    res = {"cpu": "100m", "memory": "256Mi"}
    core_v1.create_namespaced_pod(
        namespace,
        _resizable(make_pod("g", memory="256Mi", limits=res, runtime="60s", node_name=node)),
    )
    _running_with_resources(core_v1, namespace, "g")
    status, _ = _resize(
        core_v1, namespace, "g", {"requests": {"memory": "512Mi"}, "limits": {"memory": "512Mi"}}
    )
    assert status == 200
    assert read_pod(core_v1, namespace, "g")["status"]["qosClass"] == "Guaranteed"
    status, body = _resize(core_v1, namespace, "g", {"limits": {"memory": "1Gi"}})
    assert status == 422
    assert "QOS" in body.upper()


def test_running_pod_whose_node_reports_no_resources_is_refused(
    core_v1: client.CoreV1Api, namespace: str, kwok_nodes: Any
) -> None:
    """Without reported container resources (a pre-1.33 kubelet; a KWOK pod not annotated
    resizable) the API server cannot tell whether the node resizes, and refuses."""
    (node,) = kwok_nodes(1)
    core_v1.create_namespaced_pod(
        namespace, make_pod("late", memory="1Gi", limits={"memory": "1Gi"}, runtime="60s")
    )
    assert bind_pod(core_v1, namespace, "late", node) == 201
    running = wait_for(
        lambda: (
            (p := read_pod(core_v1, namespace, "late"))["status"].get("phase") == "Running" and p
        ),
        timeout_s=20,
        what="Running",
    )
    assert _reported(running) is None
    status, body = _resize(
        core_v1, namespace, "late", {"requests": {"memory": "512Mi"}, "limits": {"memory": "512Mi"}}
    )
    assert status == 422
    assert "Pod running on node without support for resize" in body
    assert read_pod(core_v1, namespace, "late")["spec"]["containers"][0]["resources"]["limits"] == {
        "memory": "1Gi"
    }


def test_finished_pod_still_accepts_a_resize(
    core_v1: client.CoreV1Api, namespace: str, kwok_nodes: Any
) -> None:
    """No running container: the API server cannot tell and accepts; nothing is actuated."""
    (node,) = kwok_nodes(1)
    core_v1.create_namespaced_pod(
        namespace,
        _resizable(
            make_pod(
                "done", memory="256Mi", limits={"memory": "256Mi"}, runtime="1s", node_name=node
            )
        ),
    )
    wait_for(
        lambda: read_pod(core_v1, namespace, "done")["status"].get("phase") == "Succeeded",
        timeout_s=20,
        what="Succeeded",
    )
    status, _ = _resize(
        core_v1, namespace, "done", {"requests": {"memory": "512Mi"}, "limits": {"memory": "512Mi"}}
    )
    assert status == 200
    assert read_pod(core_v1, namespace, "done")["status"]["phase"] == "Succeeded"
