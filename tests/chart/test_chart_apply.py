"""The rendered chart is accepted by a real kube-apiserver 1.36 and installs with helm.

Each values variant is rendered into a fresh release namespace and every manifest is sent with
server-side apply (``application/apply-patch+yaml``, strict field validation), so the API
server's own schema validation and defaulting run on it; the stored objects must keep every
field that was sent, and a second apply must be a no-op. The real ``helm install`` / ``upgrade``
/ ``uninstall`` run against the same server, and the Snakemake MutatingAdmissionPolicy is shown
to route Snakemake's job pods to wfsched at admission. The ServiceMonitor is checked against the
Prometheus Operator's own CRD, installed into the test control plane.
"""

from __future__ import annotations

import base64
import copy
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from scheduler.devtools import devcluster

from .chart_helpers import (
    CHART,
    FIELD_MANAGER,
    KUBE_VERSION,
    Applier,
    Kube,
    index,
    one,
    render,
    run_helm,
)

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
    helm: Path,
    kube: Kube,
    apply: Applier,
    release_namespace: str,
    variant: str,
    service_monitor_crd: dict[str, Any],
) -> None:
    values = VARIANTS[variant]
    docs = render(helm, values, namespace=release_namespace)
    unserved = [d["kind"] for d in docs if kube.resource(d["apiVersion"], d["kind"]) is None]
    assert unserved == [], f"kinds the API server does not serve: {unserved}"
    applied: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for doc in docs:
        status, body = apply(doc)
        name = f"{doc['kind']} {doc['metadata']['name']}"
        assert status in (200, 201), f"{name}: HTTP {status}: {body}"
        assert body["metadata"]["managedFields"][0]["manager"] == FIELD_MANAGER
        assert_kept(doc.get("spec", {}), body.get("spec", {}), f"{name} spec")
        assert_kept(doc.get("data", {}), body.get("data", {}), f"{name} data")
        assert_kept(doc.get("rules", []), body.get("rules", []), f"{name} rules")
        assert_kept(doc["metadata"]["labels"], body["metadata"]["labels"], f"{name} labels")
        applied.append((doc, body))
    assert len(applied) == len(docs) >= 7
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


def test_service_monitor_is_accepted_by_the_operator_crd(
    helm: Path,
    kube: Kube,
    apply: Applier,
    release_namespace: str,
    service_monitor_crd: dict[str, Any],
) -> None:
    values = {
        "serviceMonitor": {
            "enabled": True,
            "interval": "1m30s",
            "scrapeTimeout": "500ms",
            "labels": {"release": "prom"},
        }
    }
    docs = render(helm, values, namespace=release_namespace)
    monitor = one(docs, "ServiceMonitor")
    status, body = apply(monitor)
    assert status == 201, body
    assert_kept(monitor["spec"], body["spec"], "ServiceMonitor spec")
    assert body["metadata"]["labels"]["release"] == "prom"
    status, stored = kube.request("GET", kube.object_path(monitor))
    assert status == 200
    assert stored["spec"]["endpoints"][0]["interval"] == "1m30s"

    # What Prometheus will scrape: the one Service the selector picks, on the named port, and
    # that Service reaches every replica (the Deployment's pods), not only the leader.
    endpoint = monitor["spec"]["endpoints"][0]
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = [
        d
        for d in docs
        if d["kind"] == "Service"
        and selector.items() <= d["metadata"].get("labels", {}).items()
        and endpoint["port"] in {p.get("name") for p in d["spec"]["ports"]}
    ]
    assert len(selected) == 1, f"{len(selected)} Services expose port {endpoint['port']!r}"
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert selected[0]["spec"]["selector"].items() <= pod_labels.items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [release_namespace]

    # Control: the CRD's schema is enforced, so a misspelt or invalid field is refused.
    misspelt = copy.deepcopy(monitor)
    misspelt["spec"]["endpoints"][0]["intervall"] = "30s"
    status, body = apply(misspelt, dry_run=True)
    assert status >= 400 and "intervall" in body["message"], body
    invalid = copy.deepcopy(monitor)
    invalid["spec"]["endpoints"][0]["scheme"] = "gopher"
    status, body = apply(invalid, dry_run=True)
    assert status >= 400 and "scheme" in body["message"], body["message"]


# Scrape durations: the chart's values schema must refuse what the CRD would refuse at install.
SCRAPE_DURATIONS = ["30s", "1m30s", "2h", "500ms", "1h2m3s4ms", "30s1m", "1s1s", "5m5m", "1d", ""]


@pytest.mark.parametrize("duration", SCRAPE_DURATIONS)
def test_chart_accepts_only_scrape_durations_the_crd_accepts(
    helm: Path,
    apply: Applier,
    release_namespace: str,
    service_monitor_crd: dict[str, Any],
    duration: str,
) -> None:
    monitor = one(
        render(helm, {"serviceMonitor": {"enabled": True}}, namespace=release_namespace),
        "ServiceMonitor",
    )
    monitor["spec"]["endpoints"][0]["interval"] = duration
    crd_status, crd_body = apply(monitor, dry_run=True)
    chart = run_helm(
        helm,
        ["template", "wfsched", str(CHART), "--kube-version", KUBE_VERSION],
        values={"serviceMonitor": {"enabled": True, "interval": duration}},
    )
    if chart.returncode == 0:
        assert crd_status in (200, 201), f"the chart accepts {duration!r}, the CRD: {crd_body}"
    else:
        assert "/serviceMonitor/interval" in chart.stderr, chart.stderr


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
