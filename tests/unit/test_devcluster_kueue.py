"""The documents the local control plane applies for Kueue (pure; no cluster)."""

from pathlib import Path

import yaml

from scheduler.devtools import kueue

MANIFESTS = """
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: mutating-webhook-configuration
webhooks:
- name: mjob.kb.io
  clientConfig: {service: {name: webhook-service, namespace: system, path: /mutate-batch-v1-job}}
  rules: [{apiGroups: [batch], apiVersions: [v1], operations: [CREATE], resources: [jobs]}]
- name: mpod.kb.io
  clientConfig: {service: {name: webhook-service, namespace: system, path: /mutate--v1-pod}}
  rules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods]}]
- name: mrayjob.kb.io
  clientConfig: {service: {name: webhook-service, namespace: system, path: /mutate-ray}}
  rules: [{apiGroups: [ray.io], apiVersions: [v1], operations: [CREATE], resources: [rayjobs]}]
- name: mworkload.kb.io
  clientConfig: {service: {name: webhook-service, namespace: system, path: /mutate-wl}}
  rules: [{apiGroups: [kueue.x-k8s.io], apiVersions: [v1beta2], operations: [CREATE],
           resources: [workloads]}]
"""


def test_webhooks_point_at_the_local_manager_and_only_see_queued_workloads() -> None:
    (config,) = kueue.webhook_configurations(
        MANIFESTS, base_url="https://127.0.0.1:9443", ca_bundle_b64="Q0E="
    )
    assert config["metadata"] == {"name": "kueue-mutating-webhook-configuration"}
    hooks = {h["name"]: h for h in config["webhooks"]}
    # Integrations that are not enabled are not registered (their webhooks are not served).
    assert set(hooks) == {"mjob.kb.io", "mpod.kb.io", "mworkload.kb.io"}
    assert hooks["mjob.kb.io"]["clientConfig"] == {
        "url": "https://127.0.0.1:9443/mutate-batch-v1-job",
        "caBundle": "Q0E=",
    }
    queued = {"matchExpressions": [{"key": kueue.QUEUE_NAME_LABEL, "operator": "Exists"}]}
    assert hooks["mjob.kb.io"]["objectSelector"] == queued
    assert hooks["mpod.kb.io"]["objectSelector"] == queued
    (expr,) = hooks["mpod.kb.io"]["namespaceSelector"]["matchExpressions"]
    assert expr["operator"] == "NotIn" and set(expr["values"]) == {"kube-system", kueue.NAMESPACE}
    assert "objectSelector" not in hooks["mworkload.kb.io"]


def test_crds_with_several_served_versions_convert_through_the_webhook(tmp_path: Path) -> None:
    def crd(name: str, versions: list[str]) -> dict:
        return {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": name},
            "spec": {"versions": [{"name": v, "served": True} for v in versions]},
        }

    (tmp_path / "a.yaml").write_text(
        yaml.safe_dump(crd("workloads.kueue.x-k8s.io", ["v1beta1", "v1beta2"]))
    )
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(crd("topologies.kueue.x-k8s.io", ["v1beta2"])))
    out = {
        c["metadata"]["name"]: c
        for c in kueue.crd_documents(
            tmp_path.glob("*.yaml"),
            conversion_url="https://127.0.0.1:1/convert",
            ca_bundle_b64="Q0E=",
        )
    }
    conversion = out["workloads.kueue.x-k8s.io"]["spec"]["conversion"]
    assert conversion["strategy"] == "Webhook"
    assert conversion["webhook"]["clientConfig"]["url"] == "https://127.0.0.1:1/convert"
    assert "conversion" not in out["topologies.kueue.x-k8s.io"]["spec"]


def test_manager_configuration_binds_to_loopback_with_the_enabled_integrations() -> None:
    config = kueue.manager_configuration(
        webhook_port=1, cert_dir=Path("/c"), health_port=2, metrics_port=3
    )
    assert config["webhook"] == {"host": "127.0.0.1", "port": 1, "certDir": "/c"}
    assert config["internalCertManagement"] == {"enable": False}
    assert config["integrations"]["frameworks"] == ["batch/job", "pod"]
    assert config["leaderElection"] == {"leaderElect": False}
