"""The daemon runs under the chart's ServiceAccount and RBAC, with a real token.

The chart's ServiceAccount, ClusterRole(Binding) and lease/memory-store Role(Binding) are
applied to the live API server, a token is requested for the ServiceAccount (TokenRequest), and
``wfsched run`` is started with a kubeconfig holding only that token and the chart's rendered
configuration (leader election, memory scaling and the REST API on). It must take the lease,
label its own pod as the leader (a placeholder pod named by ``$POD_NAME``), schedule a small
workflow in another namespace, save its memory observations, keep a CWS execution in a
ConfigMap and remove it again, and never be refused by RBAC.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from scheduler.devtools import devcluster, httpjson

from .chart_helpers import Applier, Kube, index, render

pytestmark = pytest.mark.integration

RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


def _pod(name: str, step: str, peak_mib: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"wfsched.io/run-id": "r1", "wfsched.io/step": step},
            "annotations": {
                devcluster.RUNTIME_ANNOTATION: "1s",
                "wfsched.io/peak-memory-bytes": str(peak_mib << 20),
            },
        },
        "spec": {
            "schedulerName": "workflow-scheduler",
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": "busybox",
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "1Gi"},
                        "limits": {"memory": "1Gi"},
                    },
                }
            ],
        },
    }


def test_daemon_schedules_with_only_the_charts_permissions(
    helm: Path,
    kube: Kube,
    apply: Applier,
    release_namespace: str,
    chart_cluster: devcluster.DevCluster,
    tmp_path: Path,
) -> None:
    docs = render(
        helm, {"policies": {"predictor": "mean-offset=none"}}, namespace=release_namespace
    )
    for doc in docs:
        if doc["kind"] in RBAC_KINDS:
            doc.setdefault("metadata", {}).setdefault("namespace", release_namespace)
            status, body = apply(doc)
            assert status < 300, body
    service_account = next(d for d in docs if d["kind"] == "ServiceAccount")["metadata"]["name"]
    status, body = kube.request(
        "POST",
        f"/api/v1/namespaces/{release_namespace}/serviceaccounts/{service_account}/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        },
    )
    assert status == 201, body
    kubeconfig = chart_cluster.write_kubeconfig(tmp_path / "sa.yaml", token=body["status"]["token"])

    rendered = yaml.safe_load(index(docs)[("ConfigMap", "wfsched-config")]["data"]["config.yaml"])
    rendered.pop("health_port", None)  # LocalDaemon picks a free one
    rest_port = devcluster.free_port()
    rendered.update(rest_port=rest_port, bind_address="127.0.0.1", metrics_poll_s=0)
    assert rendered["lease"]["enabled"] is True
    assert rendered["lease"]["namespace"] == release_namespace
    node = f"chart-node-{uuid.uuid4().hex[:4]}"
    chart_cluster.create_nodes(1, cpu="4", memory="16Gi", prefix=node)
    workload = f"wl-{uuid.uuid4().hex[:6]}"
    kube.request(
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": workload}},
    )
    replica = {  # the pod this replica would run in; nothing runs it
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "wfsched-0", "labels": {"app.kubernetes.io/name": "wfsched"}},
        "spec": {"schedulerName": "none", "containers": [{"name": "c", "image": "busybox"}]},
    }
    status, body = kube.request("POST", f"/api/v1/namespaces/{release_namespace}/pods", replica)
    assert status == 201, body
    daemon = devcluster.LocalDaemon(kubeconfig, tmp_path, **rendered)
    daemon.env = {
        **devcluster.daemon_environment(),
        "POD_NAME": "wfsched-0",
        "POD_NAMESPACE": release_namespace,
    }
    daemon.start(wait_ready_s=60)
    try:
        deadline = time.monotonic() + 30
        while "wfsched_leader 1.0" not in daemon.metrics():
            assert time.monotonic() < deadline, daemon.log_tail()
            time.sleep(0.5)
        for name, peak in (("a1", 200), ("a2", 300)):
            status, body = kube.request(
                "POST", f"/api/v1/namespaces/{workload}/pods", _pod(name, "align", peak)
            )
            assert status == 201, body

        def phases() -> dict[str, str]:
            _, listing = kube.request("GET", f"/api/v1/namespaces/{workload}/pods")
            return {p["metadata"]["name"]: p["status"].get("phase", "") for p in listing["items"]}

        deadline = time.monotonic() + 60
        while set(phases().values()) != {"Succeeded"}:
            assert time.monotonic() < deadline, (phases(), daemon.log_tail())
            time.sleep(0.5)
        # The next task of the step is resized before binding: resize, label, bind all allowed.
        status, body = kube.request(
            "POST", f"/api/v1/namespaces/{workload}/pods", _pod("a3", "align", 250)
        )
        assert status == 201, body
        deadline = time.monotonic() + 60
        while phases().get("a3") != "Succeeded":
            assert time.monotonic() < deadline, (phases(), daemon.log_tail())
            time.sleep(0.5)
        _, pod = kube.request("GET", f"/api/v1/namespaces/{workload}/pods/a3")
        assert pod["spec"]["containers"][0]["resources"]["limits"]["memory"] == "250Mi"
        assert pod["metadata"]["labels"]["commonworkflowscheduler/memoryscaled"] == "true"
        # The memory store is written into the release namespace.
        deadline = time.monotonic() + 60
        while True:
            status, cm = kube.request(
                "GET", f"/api/v1/namespaces/{release_namespace}/configmaps/wfsched-memory"
            )
            if status == 200:
                break
            assert time.monotonic() < deadline, daemon.log_tail()
            time.sleep(1)
        assert "observations.json" in cm["data"]
        events_status, events = kube.request(
            "GET", f"/apis/events.k8s.io/v1/namespaces/{workload}/events"
        )
        assert events_status == 200
        assert any(e.get("reason") == "Scheduled" for e in events["items"])
        # The leader's label, and a CWS execution kept for the next leader, then removed.
        lease = rendered["lease"]["name"]

        def labelled() -> bool:
            _, own = kube.request("GET", f"/api/v1/namespaces/{release_namespace}/pods/wfsched-0")
            return bool(own["metadata"].get("labels", {}).get("wfsched.io/leader") == lease)

        def stored() -> int:
            _, found = kube.request(
                "GET",
                f"/api/v1/namespaces/{release_namespace}/configmaps",
                query={"labelSelector": f"wfsched.io/cws-state={lease}"},
            )
            return len(found["items"])

        def rest(method: str, body: Any = None) -> int:
            return httpjson.JsonHttp(rest_port).request(method, "/v1/scheduler/run-1", body)[0]

        deadline = time.monotonic() + 30
        while not labelled():
            assert time.monotonic() < deadline, daemon.log_tail()
            time.sleep(0.5)
        assert rest("POST", {"strategy": "rank_min", "namespace": workload}) == 200
        assert stored() >= 1  # a registration is stored before the reply
        assert rest("DELETE") == 200
        assert stored() == 0
        log = daemon.log_path.read_text()
        assert "Forbidden" not in log and '"http_status": 403' not in log, daemon.log_tail(80)
    finally:
        daemon.stop()
        kube.request("DELETE", f"/api/v1/nodes/{node}0")
        kube.request("DELETE", f"/api/v1/namespaces/{workload}/pods")
