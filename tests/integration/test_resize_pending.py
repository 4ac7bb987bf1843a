"""How kube-apiserver 1.36 treats ``pods/resize`` before and after binding.

wfsched right-sizes a task's memory *before* binding it (no cgroup change, no OOM risk), so
these tests pin what the memory-scaling code relies on; docs/resize.md explains the results.
What it answers for bound, running pods is pinned in ``test_resize_running.py``.
"""

from __future__ import annotations

import pytest
from k8s_helpers import bind_pod, make_pod, read_pod, wait_for
from kubernetes import client

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


def test_unbound_pod_accepts_memory_resize_and_binds_with_it(
    core_v1: client.CoreV1Api, namespace: str, kwok_nodes
) -> None:
    (node,) = kwok_nodes(1)
    manifest = make_pod("p", cpu="100m", memory="1Gi", limits={"memory": "1Gi"}, runtime="2s")
    core_v1.create_namespaced_pod(namespace, manifest)
    before = read_pod(core_v1, namespace, "p")
    assert before["status"]["qosClass"] == "Burstable"

    status, _ = _resize(
        core_v1,
        namespace,
        "p",
        {"requests": {"memory": "384Mi"}, "limits": {"memory": "384Mi"}},
    )
    assert status == 200
    after = read_pod(core_v1, namespace, "p")
    resources = after["spec"]["containers"][0]["resources"]
    assert resources["requests"] == {"cpu": "100m", "memory": "384Mi"}
    assert resources["limits"] == {"memory": "384Mi"}
    assert after["status"]["qosClass"] == "Burstable"
    assert "nodeName" not in after["spec"]
    # No kubelet owns an unbound pod, so no resize condition is reported.
    assert not any(c["type"].startswith("PodResize") for c in after["status"].get("conditions", []))

    # Growing again is accepted too (a retry restores the user's request).
    status, _ = _resize(
        core_v1, namespace, "p", {"requests": {"memory": "2Gi"}, "limits": {"memory": "2Gi"}}
    )
    assert status == 200
    status, _ = _resize(
        core_v1, namespace, "p", {"requests": {"memory": "384Mi"}, "limits": {"memory": "384Mi"}}
    )
    assert status == 200

    assert bind_pod(core_v1, namespace, "p", node) == 201
    wait_for(
        lambda: read_pod(core_v1, namespace, "p")["status"]["phase"] == "Succeeded",
        timeout_s=30,
        what="Succeeded",
    )
    done = read_pod(core_v1, namespace, "p")
    assert done["spec"]["nodeName"] == node
    assert done["spec"]["containers"][0]["resources"]["requests"]["memory"] == "384Mi"


def test_guaranteed_unbound_pod_keeps_its_qos_class(
    core_v1: client.CoreV1Api, namespace: str
) -> None:
    res = {"cpu": "100m", "memory": "1Gi"}
    core_v1.create_namespaced_pod(namespace, make_pod("g", limits=res, memory="1Gi"))
    assert read_pod(core_v1, namespace, "g")["status"]["qosClass"] == "Guaranteed"

    # Request and limit together: accepted, still Guaranteed.
    status, _ = _resize(
        core_v1, namespace, "g", {"requests": {"memory": "256Mi"}, "limits": {"memory": "256Mi"}}
    )
    assert status == 200
    assert read_pod(core_v1, namespace, "g")["status"]["qosClass"] == "Guaranteed"

    # The request alone would make it Burstable: refused, spec unchanged.
    status, body = _resize(core_v1, namespace, "g", {"requests": {"memory": "128Mi"}})
    assert status == 422
    assert "QOS" in body.upper()
    spec = read_pod(core_v1, namespace, "g")["spec"]["containers"][0]["resources"]
    assert spec["requests"]["memory"] == "256Mi"


def test_best_effort_pod_cannot_gain_a_request(core_v1: client.CoreV1Api, namespace: str) -> None:
    manifest = make_pod("be")
    manifest["spec"]["containers"][0]["resources"] = {}
    core_v1.create_namespaced_pod(namespace, manifest)
    status, body = _resize(core_v1, namespace, "be", {"requests": {"memory": "100Mi"}})
    assert status == 422
    assert "QOS" in body.upper()
