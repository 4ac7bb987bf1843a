"""The rendered chart is accepted by a real kube-apiserver 1.36 and installs with helm.

Each values variant is rendered into a fresh release namespace and every manifest is sent with
server-side apply (``application/apply-patch+yaml``, strict field validation), so the API
server's own schema validation and defaulting run on it; the stored objects must keep every
field that was sent, and a second apply must be a no-op. The real ``helm install`` / ``upgrade``
/ ``uninstall`` run against the same server, and the Snakemake MutatingAdmissionPolicy is shown
to route Snakemake's job pods to wfsched at admission.
"""

from __future__ import annotations

import base64
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from scheduler import devcluster

from .chart_helpers import CHART, FIELD_MANAGER, Applier, Kube, index, one, render, run_helm

pytestmark = pytest.mark.integration

VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "network-policy": {
        "networkPolicy": {
            "enabled": True,
            "restFrom": [{"namespaceSelector": {"matchLabels": {"team": "bio"}}}],
            "metricsFrom": [{"podSelector": {"matchLabels": {"app": "prometheus"}}}],
            "egress": [{"to": [{"ipBlock": {"cidr": "10.96.0.1/32"}}], "ports": [{"port": 443}]}],
        }
    },
    "token-secret": {"apiToken": {"create": True}},
    "existing-secret": {"apiToken": {"existingSecret": "my-token", "secretKey": "bearer"}},
    "single-replica": {"replicaCount": 1, "leaderElect": False},
    "everything": {
        "serviceMonitor": {"enabled": True},
        "networkPolicy": {"enabled": True},
        "apiToken": {"create": True, "value": "s3cret"},
        "snakemake": {"mutatingPolicy": {"enabled": True}},
        "rbac": {"read": {"argoWorkflows": True, "jobs": True, "kueueWorkloads": True}},
        "scheduler": {"extraNames": ["argo-scheduler"], "namespaces": ["genomics"]},
        "policies": {"ranking": "critical_path", "assignment": "binpack", "predictor": "ponder"},
        "tolerations": [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "extraEnv": [{"name": "WFSCHED_LOG_LEVEL", "value": "debug"}],
    },
}


def assert_kept(sent: Any, stored: Any, path: str = "") -> None:
    """Every field that was sent is in the stored object with the same value."""
    if isinstance(sent, dict):
        assert isinstance(stored, dict), f"{path}: stored {stored!r}"
        for key, value in sent.items():
            assert key in stored, f"{path}.{key} was dropped by the server"
            assert_kept(value, stored[key], f"{path}.{key}")
    elif isinstance(sent, list):
        assert isinstance(stored, list) and len(stored) == len(sent), f"{path}: {stored!r}"
        for n, (a, b) in enumerate(zip(sent, stored, strict=True)):
            assert_kept(a, b, f"{path}[{n}]")
    else:
        assert sent == stored, f"{path}: sent {sent!r}, stored {stored!r}"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_manifests_pass_server_side_apply(
    helm: Path, kube: Kube, apply: Applier, release_namespace: str, variant: str
) -> None:
    values = VARIANTS[variant]
    docs = render(helm, values, namespace=release_namespace)
    unserved = []
    applied: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for doc in docs:
        if kube.resource(doc["apiVersion"], doc["kind"]) is None:
            unserved.append(doc["kind"])
            continue
        status, body = apply(doc)
        name = f"{doc['kind']} {doc['metadata']['name']}"
        assert status in (200, 201), f"{name}: HTTP {status}: {body}"
        assert body["metadata"]["managedFields"][0]["manager"] == FIELD_MANAGER
        assert_kept(doc.get("spec", {}), body.get("spec", {}), f"{name} spec")
        assert_kept(doc.get("data", {}), body.get("data", {}), f"{name} data")
        assert_kept(doc.get("rules", []), body.get("rules", []), f"{name} rules")
        assert_kept(doc["metadata"]["labels"], body["metadata"]["labels"], f"{name} labels")
        applied.append((doc, body))
    # The ServiceMonitor CRD (Prometheus Operator) is not part of the test control plane.
    expected_unserved = ["ServiceMonitor"] if values.get("serviceMonitor") else []
    assert unserved == expected_unserved
    assert len(applied) == len(docs) - len(unserved) >= 7
    # A second apply of the same manifests changes nothing.
    for doc, first in applied:
        status, again = apply(doc)
        assert status == 200
        assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"], doc[
            "kind"
        ]
    # What the pods will see: the Deployment as stored, after the server's defaulting.
    status, deployment = kube.request(
        "GET", f"/apis/apps/v1/namespaces/{release_namespace}/deployments/wfsched"
    )
    assert status == 200
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["securityContext"]["runAsUser"] == 65532
    assert container["livenessProbe"]["httpGet"]["port"] == "metrics"


def test_service_monitor_applies_when_its_crd_is_installed(
    helm: Path, kube: Kube, apply: Applier, release_namespace: str
) -> None:
    docs = render(helm, {"serviceMonitor": {"enabled": True}}, namespace=release_namespace)
    monitor = one(docs, "ServiceMonitor")
    if kube.resource(monitor["apiVersion"], monitor["kind"]) is None:
        pytest.skip(
            "monitoring.coreos.com/v1 ServiceMonitor is not served: the test control plane has "
            "no Prometheus Operator CRDs (the manifest is checked offline in test_chart_render)"
        )
    status, body = apply(monitor, dry_run=True)
    assert status in (200, 201), body


def _kubeconfig_args(cluster: devcluster.DevCluster, namespace: str) -> list[str]:
    return ["--kubeconfig", str(cluster.kubeconfig), "--namespace", namespace]


def test_helm_install_upgrade_uninstall(
    helm: Path, kube: Kube, chart_cluster: devcluster.DevCluster, release_namespace: str
) -> None:
    common = _kubeconfig_args(chart_cluster, release_namespace)
    installed = run_helm(
        helm,
        ["install", "wfsched", str(CHART), *common, "--set", "apiToken.create=true"],
    )
    assert installed.returncode == 0, installed.stderr
    notes = installed.stdout
    assert "schedulerName: workflow-scheduler" in notes
    assert "process.pod = [schedulerName: 'workflow-scheduler']" in notes
    assert "k8s.scheduler.name = 'workflow-scheduler'" in notes
    assert f"cws.dns = 'http://wfsched.{release_namespace}.svc:8080/v1'" in notes
    assert "Snakemake" in notes and "snakemake.mutatingPolicy.enabled=true" in notes
    assert "Argo Workflows" in notes

    secret_path = f"/api/v1/namespaces/{release_namespace}/secrets/wfsched-api-token"
    status, secret = kube.request("GET", secret_path)
    assert status == 200
    token = base64.b64decode(secret["data"]["token"])
    assert len(token) == 40

    upgraded = run_helm(
        helm,
        [
            "upgrade",
            "wfsched",
            str(CHART),
            *common,
            "--reuse-values",
            "--set",
            "policies.ranking=fifo",
        ],
    )
    assert upgraded.returncode == 0, upgraded.stderr
    status, secret = kube.request("GET", secret_path)
    assert base64.b64decode(secret["data"]["token"]) == token  # kept across upgrades
    status, cm = kube.request(
        "GET", f"/api/v1/namespaces/{release_namespace}/configmaps/wfsched-config"
    )
    assert "policy: fifo-roundrobin" in cm["data"]["config.yaml"]

    cluster_role = f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{release_namespace}-wfsched"
    assert kube.request("GET", cluster_role)[0] == 200
    removed = run_helm(helm, ["uninstall", "wfsched", *common])
    assert removed.returncode == 0, removed.stderr
    assert kube.request("GET", cluster_role)[0] == 404


def _dry_run_pod(
    kube: Kube, namespace: str, *, labels: dict[str, str], scheduler: str | None = None
) -> str:
    spec: dict[str, Any] = {"containers": [{"name": "main", "image": "busybox"}]}
    if scheduler:
        spec["schedulerName"] = scheduler
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"p-{uuid.uuid4().hex[:6]}", "labels": labels},
        "spec": spec,
    }
    status, body = kube.request(
        "POST", f"/api/v1/namespaces/{namespace}/pods", pod, query={"dryRun": "All"}
    )
    assert status == 201, body
    name: str = body["spec"]["schedulerName"]
    return name


def test_snakemake_policy_routes_job_pods_at_admission(
    helm: Path, kube: Kube, apply: Applier, release_namespace: str
) -> None:
    selector = {"matchLabels": {"kubernetes.io/metadata.name": release_namespace}}
    values = {"snakemake": {"mutatingPolicy": {"enabled": True, "namespaceSelector": selector}}}
    docs = index(render(helm, values, namespace=release_namespace))
    for kind in ("MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"):
        (doc,) = [d for (k, _), d in docs.items() if k == kind]
        status, body = apply(doc)
        assert status == 201, body

    snakejob = {"batch.kubernetes.io/job-name": "snakejob-3f2a", "job-name": "snakejob-3f2a"}
    deadline = time.monotonic() + 30  # the policy reaches the admission chain asynchronously
    while _dry_run_pod(kube, release_namespace, labels=snakejob) != "workflow-scheduler":
        assert time.monotonic() < deadline, "the MutatingAdmissionPolicy never took effect"
        time.sleep(0.5)

    other_job = {"batch.kubernetes.io/job-name": "nightly-backup"}
    assert _dry_run_pod(kube, release_namespace, labels=other_job) == "default-scheduler"
    assert _dry_run_pod(kube, release_namespace, labels={}) == "default-scheduler"
    # A pod that already names a scheduler keeps it.
    assert _dry_run_pod(kube, release_namespace, labels=snakejob, scheduler="other") == "other"
    # Namespaces outside the selector are left alone.
    assert _dry_run_pod(kube, "default", labels=snakejob) == "default-scheduler"


def test_the_harness_would_catch_an_invalid_manifest(
    helm: Path, apply: Applier, release_namespace: str
) -> None:
    """Strict field validation is on: a misspelt or mistyped field is an error, not a warning."""
    deployment = one(render(helm, namespace=release_namespace), "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["securityContxt"] = container.pop("securityContext")
    status, body = apply(deployment)
    # kube-apiserver 1.36 answers an apply patch that does not fit the schema with HTTP 500
    # "failed to create typed patch object ...: field not declared in schema" (or "expected
    # numeric"), not 4xx; what matters here is that it is refused and names the field.
    assert status >= 400, body
    assert "securityContxt" in body["message"]
    container["securityContext"] = container.pop("securityContxt")
    container["securityContext"]["runAsUser"] = "nobody"
    status, body = apply(deployment)
    assert status >= 400, body
    assert "runAsUser" in body["message"]


def test_scheduler_pod_passes_the_restricted_pod_security_standard(
    helm: Path, kube: Kube, release_namespace: str
) -> None:
    """Pod Security admission, enforcing `restricted`, admits the chart's pod as it is."""
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    status, body = kube.request(
        "PATCH",
        f"/api/v1/namespaces/{release_namespace}",
        {"metadata": {"labels": labels}},
        content_type="application/merge-patch+json",
    )
    assert status == 200, body
    template = one(render(helm, namespace=release_namespace), "Deployment")["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod", **template}
    pod["metadata"] = dict(template["metadata"], name="wfsched-psa")
    pods = f"/api/v1/namespaces/{release_namespace}/pods"
    status, body = kube.request("POST", pods, pod, query={"dryRun": "All"})
    assert status == 201, body
    # Control: the same pod without the capability drop is refused by the same admission.
    del pod["spec"]["containers"][0]["securityContext"]["capabilities"]
    status, body = kube.request("POST", pods, pod, query={"dryRun": "All"})
    assert status == 403, body
    assert "restricted" in body["message"]
