"""Kueue on the local control plane: its configuration, CRDs and webhook registrations.

Kueue's manager runs outside the cluster like the other components: it reads the admin
kubeconfig, serves its admission and conversion webhooks on ``127.0.0.1`` with the API
server's serving certificate (issued by ``pki.py`` for ``127.0.0.1``, so the API server trusts
it through the cluster CA), and the webhook configurations and CRD conversion settings point
to that URL instead of an in-cluster Service.

Only the ``batch/job`` and ``pod`` integrations are enabled, and only objects that name a
queue (``kueue.x-k8s.io/queue-name``) are sent to the Job and Pod webhooks: Kueue's webhooks
fail closed, so a stopped Kueue never blocks the Jobs and pods of workloads it does not manage.

Everything here builds documents; ``DevCluster`` applies them.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

NAMESPACE = "kueue-system"
"""Namespace Kueue believes it runs in (its configuration's ``namespace``)."""
FRAMEWORKS = ("batch/job", "pod")
"""Kueue integrations enabled on the local control plane."""
QUEUE_NAME_LABEL = "kueue.x-k8s.io/queue-name"
METRICS_CERT_DIR = Path("/etc/kueue/metrics/certs")
"""Kueue v0.17 reads its metrics serving certificate from this fixed path whenever its
internal certificate management is off; it exits at start when the files are missing."""
FEATURE_GATES = "VisibilityOnDemand=false"
"""The on-demand visibility API is an aggregated API server of its own with certificates in a
fixed in-container path; the local control plane does not register it."""

# API groups whose webhooks are registered: Kueue's own objects, Jobs and pods.
_WEBHOOK_GROUPS = frozenset({"kueue.x-k8s.io", "batch", ""})
# Webhooks that see user workloads: restricted to objects that name a queue.
_WORKLOAD_GROUPS = frozenset({"batch", ""})
_SYSTEM_NAMESPACES = ("kube-system", NAMESPACE)


def manager_configuration(
    *, webhook_port: int, cert_dir: Path, health_port: int, metrics_port: int
) -> dict[str, Any]:
    """Return Kueue's ``Configuration`` (config.kueue.x-k8s.io/v1beta2) for a local manager."""
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": NAMESPACE,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "metrics": {"bindAddress": f"127.0.0.1:{metrics_port}"},
        "webhook": {"host": "127.0.0.1", "port": webhook_port, "certDir": str(cert_dir)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "manageJobsWithoutQueueName": False,
        "clientConnection": {"qps": 50, "burst": 100},
        "integrations": {"frameworks": list(FRAMEWORKS)},
    }


def ca_bundle(ca_crt: Path) -> str:
    """The cluster CA as the base64 ``caBundle`` of a webhook client config."""
    return base64.b64encode(ca_crt.read_bytes()).decode()


def webhook_configurations(
    manifests: str, *, base_url: str, ca_bundle_b64: str
) -> list[dict[str, Any]]:
    """Turn the release's webhook manifests into configurations that call ``base_url``.

    Keeps the webhooks of Kueue's own API group, Jobs and pods; each calls
    ``<base_url><path>`` with the cluster CA. Job and Pod webhooks only match objects with a
    queue name, and Pod webhooks skip the system namespaces as upstream's kustomization does.
    Configuration names get a ``kueue-`` prefix, as in a release install.
    """
    out: list[dict[str, Any]] = []
    for doc in yaml.safe_load_all(manifests):
        if not isinstance(doc, Mapping) or not doc.get("webhooks"):
            continue
        config = copy.deepcopy(dict(doc))
        config["metadata"] = {"name": f"kueue-{doc['metadata']['name']}"}
        kept = []
        for hook in config["webhooks"]:
            groups = {g for rule in hook.get("rules", []) for g in rule.get("apiGroups", [])}
            if not groups <= _WEBHOOK_GROUPS:
                continue
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": f"{base_url}{path}", "caBundle": ca_bundle_b64}
            if groups & _WORKLOAD_GROUPS:
                hook["objectSelector"] = {
                    "matchExpressions": [{"key": QUEUE_NAME_LABEL, "operator": "Exists"}]
                }
            if "" in groups:
                hook["namespaceSelector"] = {
                    "matchExpressions": [
                        {
                            "key": "kubernetes.io/metadata.name",
                            "operator": "NotIn",
                            "values": list(_SYSTEM_NAMESPACES),
                        }
                    ]
                }
            kept.append(hook)
        config["webhooks"] = kept
        out.append(config)
    return out


def crd_documents(
    crd_files: Iterable[Path], *, conversion_url: str, ca_bundle_b64: str
) -> list[dict[str, Any]]:
    """Return the release's CRDs; those serving several versions convert through Kueue.

    Kueue v0.17 serves ``v1beta1`` and ``v1beta2`` of its queue and workload kinds and converts
    between them in its ``/convert`` webhook.
    """
    out: list[dict[str, Any]] = []
    for path in sorted(crd_files):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, Mapping) or doc.get("kind") != "CustomResourceDefinition":
                continue
            crd = copy.deepcopy(dict(doc))
            crd.pop("status", None)
            served = [v for v in crd["spec"]["versions"] if v.get("served")]
            if len(served) > 1:
                crd["spec"]["conversion"] = {
                    "strategy": "Webhook",
                    "webhook": {
                        "clientConfig": {"url": conversion_url, "caBundle": ca_bundle_b64},
                        "conversionReviewVersions": ["v1"],
                    },
                }
            out.append(crd)
    return out
