"""The chart's RBAC lets the daemon do its job against a real API server, and nothing more.

The rendered ServiceAccount, ClusterRole(Binding) and lease Role(Binding) are applied to the
live kube-apiserver (RBAC on). SubjectAccessReviews for the service account then show that every
verb the daemon needs is allowed (and was not before the chart), and that dangerous ones are
forbidden. A second test impersonates the service account and makes the daemon's real calls:
list and watch, resize, label, status condition, events, binding, leader-election lease; and the
forbidden ones answer 403.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from scheduler.devtools import devcluster

from .chart_helpers import Applier, Kube, render, service_account_user

pytestmark = pytest.mark.integration

LEASE = "wfsched"
MEMORY_STORE = "wfsched-memory"
CWS_STATE = "wfsched-cws-0123456789abcdef-a0"  # one ConfigMap per CWS execution: any name
VALUES = {"policies": {"predictor": "ponder"}}  # a predictor: the daemon keeps a memory store
WORKLOAD_NS = "genomics"  # any namespace other than the release's

# (verb, group, resource, subresource); checked cluster-wide and in a workload namespace.
NEEDED_NAMESPACED = [
    ("get", "", "pods", ""),
    ("list", "", "pods", ""),
    ("watch", "", "pods", ""),
    ("patch", "", "pods", ""),
    ("create", "", "pods", "binding"),
    ("patch", "", "pods", "status"),
    ("get", "", "pods", "resize"),
    ("patch", "", "pods", "resize"),
    ("create", "", "events", ""),
    ("patch", "", "events", ""),
    ("create", "events.k8s.io", "events", ""),
    ("patch", "events.k8s.io", "events", ""),
    ("get", "", "configmaps", ""),
    ("list", "", "configmaps", ""),
    ("watch", "", "configmaps", ""),
    ("get", "metrics.k8s.io", "pods", ""),
    ("list", "metrics.k8s.io", "pods", ""),
    ("list", "scheduling.k8s.io", "podgroups", ""),
    ("watch", "scheduling.k8s.io", "podgroups", ""),
]
NEEDED_CLUSTER = [
    ("get", "", "nodes", ""),
    ("list", "", "nodes", ""),
    ("watch", "", "nodes", ""),
    ("get", "metrics.k8s.io", "nodes", ""),
    ("list", "metrics.k8s.io", "nodes", ""),
]
FORBIDDEN_NAMESPACED = [
    ("create", "", "bindings", ""),  # the legacy path; the daemon uses pods/binding
    ("create", "", "pods", ""),
    ("update", "", "pods", ""),
    ("delete", "", "pods", ""),
    ("deletecollection", "", "pods", ""),
    ("create", "", "pods", "eviction"),
    ("create", "", "pods", "exec"),
    ("get", "", "pods", "log"),
    ("update", "", "pods", "status"),
    ("get", "", "secrets", ""),
    ("list", "", "secrets", ""),
    ("watch", "", "secrets", ""),
    ("create", "", "configmaps", ""),
    ("update", "", "configmaps", ""),
    ("patch", "", "configmaps", ""),
    ("delete", "", "configmaps", ""),
    ("delete", "", "events", ""),
    ("create", "apps", "deployments", ""),
    ("patch", "apps", "deployments", ""),
    ("create", "batch", "jobs", ""),
    ("get", "argoproj.io", "workflows", ""),
    ("create", "", "serviceaccounts", "token"),
    ("create", "rbac.authorization.k8s.io", "rolebindings", ""),
    ("create", "coordination.k8s.io", "leases", ""),
    ("get", "coordination.k8s.io", "leases", ""),
]
FORBIDDEN_CLUSTER = [
    ("create", "", "nodes", ""),
    ("update", "", "nodes", ""),
    ("patch", "", "nodes", ""),
    ("delete", "", "nodes", ""),
    ("patch", "", "nodes", "status"),
    ("create", "", "namespaces", ""),
    ("delete", "", "namespaces", ""),
    ("create", "rbac.authorization.k8s.io", "clusterroles", ""),
    ("escalate", "rbac.authorization.k8s.io", "clusterroles", ""),
    ("bind", "rbac.authorization.k8s.io", "clusterroles", ""),
    ("create", "rbac.authorization.k8s.io", "clusterrolebindings", ""),
    ("list", "", "secrets", ""),
    ("create", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", ""),
]


def _rbac_docs(helm: Path, namespace: str) -> list[dict[str, Any]]:
    kinds = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    docs = [d for d in render(helm, VALUES, namespace=namespace) if d["kind"] in kinds]
    assert sorted(d["kind"] for d in docs) == sorted(kinds)
    return docs


def _denials(
    kube: Kube, user: tuple[str, list[str]], release_ns: str
) -> tuple[list[str], list[str], int]:
    """Return (needed checks that are denied, forbidden checks that are allowed, needed count)."""
    denied_needed: list[str] = []
    allowed_forbidden: list[str] = []
    needed = 0

    def check(expect: bool, verb: str, group: str, resource: str, sub: str, **kw: str) -> None:
        nonlocal needed
        needed += expect
        allowed = kube.can(user, verb=verb, group=group, resource=resource, subresource=sub, **kw)
        if allowed != expect:
            what = f"{verb} {group or 'core'}/{resource}{'/' + sub if sub else ''} {kw}"
            (denied_needed if expect else allowed_forbidden).append(what)

    for rule in NEEDED_NAMESPACED:
        check(True, *rule)  # all namespaces (list/watch across the cluster)
        check(True, *rule, namespace=WORKLOAD_NS)
    for rule in NEEDED_CLUSTER:
        check(True, *rule)
    lease = ("coordination.k8s.io", "leases", "")
    check(True, "create", *lease, namespace=release_ns)
    check(True, "get", *lease, namespace=release_ns, name=LEASE)
    check(True, "update", *lease, namespace=release_ns, name=LEASE)
    check(True, "create", "", "configmaps", "", namespace=release_ns)
    check(True, "get", "", "configmaps", "", namespace=release_ns, name=MEMORY_STORE)
    check(True, "patch", "", "configmaps", "", namespace=release_ns, name=MEMORY_STORE)
    for verb in ("get", "list", "patch", "delete"):  # CWS executions kept for the next leader
        check(True, verb, "", "configmaps", "", namespace=release_ns, name=CWS_STATE)

    for rule in FORBIDDEN_NAMESPACED:
        check(False, *rule, namespace=WORKLOAD_NS)
    for rule in FORBIDDEN_CLUSTER:
        check(False, *rule)
    check(False, "get", *lease, namespace=release_ns, name="someone-elses-lease")
    check(False, "update", *lease, namespace=release_ns, name="someone-elses-lease")
    check(False, "delete", *lease, namespace=release_ns, name=LEASE)
    check(False, "patch", *lease, namespace=release_ns, name=LEASE)
    check(False, "list", *lease, namespace=release_ns)
    check(False, "watch", *lease, namespace=release_ns)
    check(False, "update", *lease, namespace="kube-system", name=LEASE)
    check(False, "get", "", "secrets", "", namespace=release_ns)
    # The CWS state ConfigMaps are named after executions, so their verbs cannot be limited
    # by name: in the release namespace the daemon may patch and delete any ConfigMap (update
    # stays forbidden: server-side apply is a patch).
    check(False, "update", "", "configmaps", "", namespace=release_ns, name=MEMORY_STORE)
    check(False, "update", "", "configmaps", "", namespace=release_ns, name=CWS_STATE)
    return denied_needed, allowed_forbidden, needed


def test_subject_access_reviews_match_the_daemons_needs(
    helm: Path, kube: Kube, apply: Applier, release_namespace: str
) -> None:
    user = service_account_user(release_namespace, "wfsched")
    # Before the chart, the service account may do none of it: the grants come from the chart.
    before_denied, before_allowed, needed = _denials(kube, user, release_namespace)
    assert not before_allowed
    assert len(before_denied) == needed == 2 * len(NEEDED_NAMESPACED) + len(NEEDED_CLUSTER) + 10

    for doc in _rbac_docs(helm, release_namespace):
        status, body = apply(doc)
        assert status in (200, 201), body

    denied, allowed, _ = _denials(kube, user, release_namespace)
    assert not denied, "needed but denied:\n" + "\n".join(denied)
    assert not allowed, "forbidden but allowed:\n" + "\n".join(allowed)


@pytest.fixture
def kwok_node(chart_cluster: devcluster.DevCluster) -> Iterator[str]:
    (name,) = chart_cluster.create_nodes(1, prefix=f"rbac-{uuid.uuid4().hex[:4]}-")
    yield name
    chart_cluster.admin().request("DELETE", f"/api/v1/nodes/{name}")


@pytest.fixture
def workload_namespace(kube: Kube) -> Iterator[str]:
    name = kube.create_namespace("work")
    yield name
    kube.request("DELETE", f"/api/v1/namespaces/{name}/pods", query={"gracePeriodSeconds": "0"})
    kube.request("DELETE", f"/api/v1/namespaces/{name}")


def test_service_account_can_run_the_daemons_calls(
    helm: Path,
    kube: Kube,
    apply: Applier,
    release_namespace: str,
    workload_namespace: str,
    kwok_node: str,
) -> None:
    for doc in _rbac_docs(helm, release_namespace):
        assert apply(doc)[0] in (200, 201)
    sa = service_account_user(release_namespace, "wfsched")
    ns = workload_namespace
    node = kwok_node

    def as_sa(method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return kube.request(method, path, body, as_user=sa, **kw)

    # Set-up by the admin: a pending task pod of ours, a secret, somebody else's lease.
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "task-1"},
        "spec": {
            "schedulerName": "workflow-scheduler",
            "containers": [
                {
                    "name": "main",
                    "image": "busybox",
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "512Mi"},
                        "limits": {"memory": "1Gi"},
                    },
                }
            ],
        },
    }
    assert kube.request("POST", f"/api/v1/namespaces/{ns}/pods", pod)[0] == 201
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {}}
    assert kube.request("POST", f"/api/v1/namespaces/{ns}/secrets", secret)[0] == 201
    leases = f"/apis/coordination.k8s.io/v1/namespaces/{release_namespace}/leases"
    other = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "x"}}
    assert kube.request("POST", leases, other)[0] == 201

    # Informers: list and watch everything they need, cluster-wide.
    for path in ("/api/v1/pods", "/api/v1/nodes", "/api/v1/configmaps"):
        status, body = as_sa("GET", path, query={"limit": "500"})
        assert status == 200, (path, body)
    status, _ = as_sa("GET", "/api/v1/pods", query={"watch": "true", "timeoutSeconds": "1"})
    assert status == 200
    pod_path = f"/api/v1/namespaces/{ns}/pods/task-1"

    # Memory right-sizing before binding (pods/resize), then the CWS label.
    resize = {
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "resources": {"requests": {"memory": "256Mi"}, "limits": {"memory": "512Mi"}},
                }
            ]
        }
    }
    status, body = as_sa(
        "PATCH", f"{pod_path}/resize", resize, content_type="application/strategic-merge-patch+json"
    )
    assert status == 200, body
    assert body["spec"]["containers"][0]["resources"]["requests"]["memory"] == "256Mi"
    label = {"metadata": {"labels": {"commonworkflowscheduler/memoryscaled": "true"}}}
    status, body = as_sa("PATCH", pod_path, label, content_type="application/merge-patch+json")
    assert status == 200, body

    # Unschedulable condition and events, as kube-scheduler reports them.
    condition = {
        "status": {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/1 nodes are available",
                }
            ]
        }
    }
    status, body = as_sa(
        "PATCH",
        f"{pod_path}/status",
        condition,
        content_type="application/strategic-merge-patch+json",
    )
    assert status == 200, body
    event = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "task-1.1", "namespace": ns},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "wfsched.io/workflow-scheduler",
        "reportingInstance": "wfsched-0",
        "action": "Scheduling",
        "reason": "FailedScheduling",
        "type": "Warning",
        "note": "0/1 nodes are available",
        "regarding": {"apiVersion": "v1", "kind": "Pod", "namespace": ns, "name": "task-1"},
    }
    status, body = as_sa("POST", f"/apis/events.k8s.io/v1/namespaces/{ns}/events", event)
    assert status == 201, body
    core_event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "task-1.2", "namespace": ns},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": ns, "name": "task-1"},
        "reason": "Scheduled",
        "message": f"assigned {ns}/task-1 to {node}",
        "type": "Normal",
        "source": {"component": "workflow-scheduler"},
    }
    status, body = as_sa("POST", f"/api/v1/namespaces/{ns}/events", core_event)
    assert status == 201, body

    # Leader election: create and renew our lease; other leases are out of reach.
    mine = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": LEASE},
        "spec": {"holderIdentity": "wfsched-0", "leaseDurationSeconds": 15},
    }
    status, body = as_sa("POST", leases, mine)
    assert status == 201, body
    status, current = as_sa("GET", f"{leases}/{LEASE}")
    assert status == 200
    current["spec"]["holderIdentity"] = "wfsched-1"
    status, body = as_sa("PUT", f"{leases}/{LEASE}", current)
    assert status == 200, body
    assert as_sa("GET", f"{leases}/x")[0] == 403
    assert as_sa("DELETE", f"{leases}/{LEASE}")[0] == 403

    # The memory store: created and updated with server-side apply, as put_configmap does.
    def store(name: str) -> int:
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": release_namespace},
            "data": {"observations": "{}"},
        }
        status, _ = as_sa(
            "PATCH",
            f"/api/v1/namespaces/{release_namespace}/configmaps/{name}",
            yaml.safe_dump(body),
            content_type="application/apply-patch+yaml",
            query={"fieldManager": "wfsched", "force": "true"},
        )
        return status

    assert store(MEMORY_STORE) == 201
    assert store(MEMORY_STORE) == 200

    # CWS executions for the next leader: written, listed by label, removed.
    assert store(CWS_STATE) == 201
    assert store(CWS_STATE) == 200
    configmaps = f"/api/v1/namespaces/{release_namespace}/configmaps"
    status, listing = as_sa("GET", configmaps, query={"labelSelector": "wfsched.io/cws-state"})
    assert status == 200, listing
    assert as_sa("DELETE", f"{configmaps}/{CWS_STATE}")[0] == 200

    # The leader labels its own pod (in the release namespace) and unlabels a stale one.
    replica = dict(pod, metadata={"name": "wfsched-0"})
    assert kube.request("POST", f"/api/v1/namespaces/{release_namespace}/pods", replica)[0] == 201
    own = f"/api/v1/namespaces/{release_namespace}/pods/wfsched-0"
    for value in (LEASE, None):
        leader = {"metadata": {"labels": {"wfsched.io/leader": value}}}
        status, body = as_sa("PATCH", own, leader, content_type="application/merge-patch+json")
        assert status == 200, body
    status, listing = as_sa(
        "GET",
        f"/api/v1/namespaces/{release_namespace}/pods",
        query={"labelSelector": f"wfsched.io/leader={LEASE}"},
    )
    assert status == 200, listing

    # Bind the pod.
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "task-1"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    }
    status, body = as_sa("POST", f"{pod_path}/binding", binding)
    assert status == 201, body
    status, bound = kube.request("GET", pod_path)
    assert bound["spec"]["nodeName"] == node

    # And what it must never do.
    assert as_sa("DELETE", pod_path)[0] == 403
    assert as_sa("GET", f"/api/v1/namespaces/{ns}/secrets/s")[0] == 403
    assert as_sa("GET", "/api/v1/secrets")[0] == 403
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    assert as_sa("POST", f"/api/v1/namespaces/{ns}/configmaps", cm)[0] == 403
    unschedulable = {"spec": {"unschedulable": True}}
    assert (
        as_sa(
            "PATCH",
            f"/api/v1/nodes/{node}",
            unschedulable,
            content_type="application/merge-patch+json",
        )[0]
        == 403
    )
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }
    assert as_sa("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", deployment)[0] == 403
    new_pod = dict(pod, metadata={"name": "task-2"})
    assert as_sa("POST", f"/api/v1/namespaces/{ns}/pods", new_pod)[0] == 403
