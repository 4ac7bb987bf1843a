"""Feasibility rules kube-scheduler enforces, and its wording for failures.

Per node, the static filters run in kube-scheduler's order and the first failing one gives the
node's reason: NodeUnschedulable (cordoned, unless the pod tolerates the
``node.kubernetes.io/unschedulable`` taint), readiness (unless the pod tolerates
``node.kubernetes.io/not-ready``), TaintToleration (NoSchedule and NoExecute are hard;
PreferNoSchedule is only a scoring preference), NodeAffinity (``nodeSelector`` and required node
affinity). Nodes that pass get NodeResourcesFit reasons, one per requested resource that does not
fit. :func:`fit_error_message` turns the per-reason node counts into the familiar
``"0/12 nodes are available: 8 Insufficient memory, 4 node(s) had untolerated taint
{key: value}."`` (counts descending, then reason text).

Scheduling gates are not a node filter: gated tasks are skipped before any node is considered.
"""

from __future__ import annotations

from collections.abc import Mapping

from scheduler.core import cluster, constraints, resources

REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_NOT_READY = "node(s) were not ready"
REASON_AFFINITY = "node(s) didn't match Pod's node affinity/selector"

_UNSCHEDULABLE_TAINT = constraints.Taint(key=constraints.UNSCHEDULABLE_TAINT_KEY)
_NOT_READY_TAINT = constraints.Taint(key=constraints.NOT_READY_TAINT_KEY)


def taint_reason(taint: constraints.Taint) -> str:
    """kube-scheduler's reason for an untolerated taint."""
    return f"node(s) had untolerated taint {{{taint.key}: {taint.value}}}"


def insufficient_reason(resource: str) -> str:
    """kube-scheduler's reason for a resource that does not fit (``Too many pods`` for pods)."""
    return "Too many pods" if resource == resources.PODS else f"Insufficient {resource}"


def static_reason(node: cluster.NodeInfo, pod: constraints.Constraints) -> str | None:
    """Return why ``node`` can never take a pod with these constraints, or ``None`` if it can.

    Only request-independent filters are checked here; resources are checked separately.
    """
    if node.unschedulable and not pod.tolerates(_UNSCHEDULABLE_TAINT):
        return REASON_UNSCHEDULABLE
    if not node.ready and not pod.tolerates(_NOT_READY_TAINT):
        return REASON_NOT_READY
    for taint in node.taints:
        if taint.effect.is_hard and not pod.tolerates(taint):
            return taint_reason(taint)
    if not pod.matches_node(node_name=node.name, labels=node.labels):
        return REASON_AFFINITY
    return None


def prefer_no_schedule_count(node: cluster.NodeInfo, pod: constraints.Constraints) -> int:
    """Count the node's PreferNoSchedule taints the pod does not tolerate (a soft penalty)."""
    return sum(
        1
        for taint in node.taints
        if taint.effect is constraints.TaintEffect.PREFER_NO_SCHEDULE and not pod.tolerates(taint)
    )


def fit_error_message(total_nodes: int, counts: Mapping[str, int]) -> str:
    """Format per-reason node counts like kube-scheduler's ``FitError``.

    Args:
        total_nodes: Number of nodes considered.
        counts: Reason → number of nodes that failed with it (a node may count under several
            resource reasons).
    """
    if total_nodes == 0:
        return "0/0 nodes are available: no nodes available to schedule pods."
    parts = sorted(
        ((n, reason) for reason, n in counts.items() if n > 0), key=lambda item: (-item[0], item[1])
    )
    detail = ", ".join(f"{n} {reason}" for n, reason in parts)
    return f"0/{total_nodes} nodes are available: {detail}."
