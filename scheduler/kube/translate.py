"""Pure translation between raw API objects (JSON dicts) and the scheduling core's types.

Nothing here performs I/O. Malformed fields never raise out of this module: each translation
returns what it could read plus a list of ``Problem``s (field and message) for the caller to
log, count and report as a Warning Event, so a bad label or quantity never blocks a pod.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scheduler.core import cluster, constraints, podrequest, resources
from scheduler.core.podfacts import PodFacts, Problem
from scheduler.kube import snakemake

_ZERO = resources.Resources()


def _mapping(raw: Any, where: str, problems: list[Problem]) -> Mapping[str, Any]:
    """``raw`` if a mapping; else ``{}`` (with a problem when it is present but of another type)."""
    if isinstance(raw, Mapping):
        return raw
    if raw is not None:
        problems.append(Problem(where, f"expected a mapping, got {type(raw).__name__}"))
    return {}


def _list(raw: Any, where: str, problems: list[Problem]) -> Sequence[Any]:
    """``raw`` if a list; else ``()`` (with a problem when it is present but of another type)."""
    if isinstance(raw, list):
        return raw
    if raw is not None:
        problems.append(Problem(where, f"expected a list, got {type(raw).__name__}"))
    return ()


def _quantities(raw: Any, where: str, problems: list[Problem]) -> resources.Resources:
    if raw is None:
        return _ZERO
    if not isinstance(raw, Mapping):
        problems.append(Problem(where, "expected a mapping of resource quantities"))
        return _ZERO
    good: dict[str, str | int | float] = {}
    for name, value in raw.items():
        try:
            resources.Resources.from_quantities({str(name): value})
        except (ValueError, ArithmeticError, TypeError) as exc:
            problems.append(Problem(f"{where}.{name}", f"invalid quantity {value!r}: {exc}"))
            continue
        good[str(name)] = value
    return resources.Resources.from_quantities(good)


def _container_resources(
    container: Mapping[str, Any],
    status: Mapping[str, Any] | None,
    where: str,
    problems: list[Problem],
    *,
    init: bool,
) -> podrequest.ContainerResources:
    spec_resources = _mapping(container.get("resources"), f"{where}.resources", problems)
    requests = _quantities(spec_resources.get("requests"), f"{where}.resources.requests", problems)
    limits = _quantities(spec_resources.get("limits"), f"{where}.resources.limits", problems)
    # Kubernetes defaults a missing request to the limit.
    if limits != _ZERO:
        requests = resources.Resources.of(
            cpu_millis=requests.cpu_millis or limits.cpu_millis,
            memory_bytes=requests.memory_bytes or limits.memory_bytes,
            extended={**dict(limits.extended), **dict(requests.extended)},
        )
    allocated = actual = None
    if status:
        if status.get("allocatedResources"):
            allocated = _quantities(status["allocatedResources"], f"{where}.allocated", problems)
        reported = _mapping(status.get("resources"), f"{where}.status.resources", []).get(
            "requests"
        )
        if reported:
            actual = _quantities(reported, f"{where}.status.resources", problems)
    return podrequest.ContainerResources(
        requests=requests,
        sidecar=init and container.get("restartPolicy") == "Always",
        allocated=allocated,
        actual=actual,
    )


def _tolerations(raw: Any, problems: list[Problem]) -> tuple[constraints.Toleration, ...]:
    out: list[constraints.Toleration] = []
    if not isinstance(raw, list):
        if raw is not None:
            problems.append(Problem("spec.tolerations", "expected a list"))
        return ()
    for i, item in enumerate(raw):
        try:
            op = constraints.TolerationOperator(item.get("operator") or "Equal")
            effect_raw = item.get("effect") or ""
            effect = constraints.TaintEffect(effect_raw) if effect_raw else None
            out.append(
                constraints.Toleration(
                    key=str(item.get("key") or ""),
                    operator=op,
                    value=str(item.get("value") or ""),
                    effect=effect,
                )
            )
        except (ValueError, AttributeError, TypeError) as exc:
            problems.append(Problem(f"spec.tolerations[{i}]", f"ignored: {exc}"))
    return tuple(out)


def _requirements(
    raw: Any, where: str, problems: list[Problem]
) -> tuple[constraints.NodeSelectorRequirement, ...] | None:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.append(Problem(where, "expected a list"))
        return None
    out = []
    for i, item in enumerate(raw):
        try:
            out.append(
                constraints.NodeSelectorRequirement(
                    key=str(item["key"]),
                    operator=constraints.SelectorOperator(item["operator"]),
                    values=tuple(str(v) for v in item.get("values") or ()),
                )
            )
        except (KeyError, ValueError, AttributeError, TypeError) as exc:
            problems.append(Problem(f"{where}[{i}]", f"invalid requirement: {exc}"))
            return None
    return tuple(out)


def _required_terms(
    spec: Mapping[str, Any], problems: list[Problem]
) -> tuple[constraints.NodeSelectorTerm, ...] | None:
    where = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
    # A part we cannot read must not widen placement: it becomes a term matching no node.
    matches_nothing = constraints.NodeSelectorTerm()
    required: Any = spec
    for key, path in (
        ("affinity", "spec.affinity"),
        ("nodeAffinity", "spec.affinity.nodeAffinity"),
        ("requiredDuringSchedulingIgnoredDuringExecution", where),
    ):
        required = required.get(key)
        if not required:
            return None
        if not isinstance(required, Mapping):
            problems.append(Problem(path, f"expected a mapping, got {type(required).__name__}"))
            return (matches_nothing,)
    raw_terms = required.get("nodeSelectorTerms")
    if raw_terms is not None and not isinstance(raw_terms, list):
        problems.append(Problem(f"{where}.nodeSelectorTerms", "expected a list"))
        return (matches_nothing,)
    terms = []
    for i, term in enumerate(raw_terms or ()):
        if not isinstance(term, Mapping):
            problems.append(Problem(f"{where}.nodeSelectorTerms[{i}]", "expected a mapping"))
            terms.append(matches_nothing)
            continue
        exprs = _requirements(
            term.get("matchExpressions"),
            f"{where}.nodeSelectorTerms[{i}].matchExpressions",
            problems,
        )
        fields = _requirements(
            term.get("matchFields"), f"{where}.nodeSelectorTerms[{i}].matchFields", problems
        )
        if exprs is None or fields is None:
            terms.append(matches_nothing)
            continue
        terms.append(constraints.NodeSelectorTerm(match_expressions=exprs, match_fields=fields))
    return tuple(terms)


def _timestamp(raw: Any) -> float:
    if not isinstance(raw, str):
        return 0.0
    try:
        return datetime.datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _string_map(raw: Any, where: str, problems: list[Problem]) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problems.append(Problem(where, "expected a mapping"))
        return {}
    return {str(k): str(v) for k, v in raw.items()}


def pod_facts(pod: Mapping[str, Any]) -> PodFacts:
    """Read one pod; never raises on malformed content (see ``PodFacts.problems``).

    Raises:
        ValueError: only when the object has no usable identity (namespace, name, uid).
    """
    problems: list[Problem] = []
    meta = _mapping(pod.get("metadata"), "metadata", problems)
    spec = _mapping(pod.get("spec"), "spec", problems)
    status = _mapping(pod.get("status"), "status", problems)
    name, namespace, uid = meta.get("name"), meta.get("namespace"), meta.get("uid")
    if not (isinstance(name, str) and isinstance(namespace, str) and isinstance(uid, str)):
        raise ValueError("pod without metadata.name, metadata.namespace or metadata.uid")
    statuses = {
        str(s.get("name")): s
        for s in _list(status.get("containerStatuses"), "status.containerStatuses", problems)
        if isinstance(s, Mapping)
    }
    containers = [
        c
        for c in _list(spec.get("containers"), "spec.containers", problems)
        if isinstance(c, Mapping)
    ]
    app = [
        _container_resources(
            c, statuses.get(str(c.get("name"))), f"spec.containers[{i}]", problems, init=False
        )
        for i, c in enumerate(containers)
    ]
    init = [
        _container_resources(c, None, f"spec.initContainers[{i}]", problems, init=True)
        for i, c in enumerate(_list(spec.get("initContainers"), "spec.initContainers", problems))
        if isinstance(c, Mapping)
    ]
    overhead = _quantities(spec.get("overhead"), "spec.overhead", problems)
    pod_level_raw = _mapping(spec.get("resources"), "spec.resources", problems).get("requests")
    pod_level = (
        _quantities(pod_level_raw, "spec.resources.requests", problems) if pod_level_raw else None
    )
    request = podrequest.effective_request(
        containers=app, init_containers=init, overhead=overhead, pod_level=pod_level
    )
    basis = (
        podrequest.memory_basis(
            containers=app, index=0, init_containers=init, overhead=overhead, pod_level=pod_level
        )
        if app
        else None
    )
    selector = _string_map(spec.get("nodeSelector"), "spec.nodeSelector", problems)
    first_memory = (0, 0)
    if containers:
        res = _mapping(containers[0].get("resources"), "", [])
        req = _quantities(res.get("requests"), "spec.containers[0].resources.requests", [])
        lim = _quantities(res.get("limits"), "spec.containers[0].resources.limits", [])
        first_memory = (req.memory_bytes or lim.memory_bytes, lim.memory_bytes)
    return PodFacts(
        ref=cluster.PodRef(uid=uid, namespace=namespace, name=name),
        scheduler_name=str(spec.get("schedulerName") or "default-scheduler"),
        node_name=str(spec.get("nodeName") or ""),
        phase=str(status.get("phase") or "Pending"),
        terminating=bool(meta.get("deletionTimestamp")),
        request=request,
        constraints=constraints.Constraints.of(
            node_selector=selector,
            required_terms=_required_terms(spec, problems),
            tolerations=_tolerations(spec.get("tolerations"), problems),
        ),
        scheduling_gates=tuple(
            str(g.get("name"))
            for g in _list(spec.get("schedulingGates"), "spec.schedulingGates", problems)
            if isinstance(g, Mapping)
        ),
        scheduling_group=_pod_group_name(spec.get("schedulingGroup"), problems),
        labels=_pod_labels(meta, containers, problems),
        annotations=_string_map(meta.get("annotations"), "metadata.annotations", problems),
        created=_timestamp(meta.get("creationTimestamp")),
        resource_version=str(meta.get("resourceVersion") or ""),
        container_names=tuple(str(c.get("name")) for c in containers),
        first_container_memory=first_memory,
        first_container_image=str(containers[0].get("image") or "") if containers else "",
        memory_basis=basis,
        started=_timestamp(status.get("startTime")),
        finished_at=max(
            (_timestamp(_terminated(st).get("finishedAt")) for st in statuses.values()),
            default=0.0,
        ),
        termination_reason=_termination_reason(containers, statuses),
        problems=tuple(problems),
    )


def _pod_group_name(raw: Any, problems: list[Problem]) -> str:
    """``spec.schedulingGroup.podGroupName`` (Kubernetes 1.36), or ``""`` when absent."""
    if raw is None:
        return ""
    group = _mapping(raw, "spec.schedulingGroup", problems)
    name = group.get("podGroupName")
    if name is None:
        return ""
    if not isinstance(name, str) or not name:
        problems.append(Problem("spec.schedulingGroup.podGroupName", "not a non-empty string"))
        return ""
    return name


@dataclass(frozen=True, slots=True)
class PodGroupInfo:
    """What wfsched reads of a ``PodGroup`` (``scheduling.k8s.io/v1alpha2``).

    Attributes:
        namespace: The PodGroup's namespace (its pods live there too).
        name: Its name, as pods give it in ``spec.schedulingGroup.podGroupName``.
        min_count: ``spec.schedulingPolicy.gang.minCount``; ``None`` for the ``basic`` policy
            (the pods are scheduled one by one) or a malformed gang policy (see ``problem``).
        problem: Why the gang policy was ignored, if it was.
    """

    namespace: str
    name: str
    min_count: int | None
    problem: str = ""


def pod_group_info(obj: Mapping[str, Any]) -> PodGroupInfo:
    """Read one PodGroup; never raises on a malformed policy.

    Raises:
        ValueError: only when the object has no name or namespace.
    """
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    name, namespace = meta.get("name"), meta.get("namespace")
    if not (isinstance(name, str) and isinstance(namespace, str) and name and namespace):
        raise ValueError("PodGroup without metadata.name or metadata.namespace")
    spec = obj.get("spec")
    policy = spec.get("schedulingPolicy") if isinstance(spec, Mapping) else None
    gang = policy.get("gang") if isinstance(policy, Mapping) else None
    if gang is None:
        return PodGroupInfo(namespace, name, None)
    count = gang.get("minCount") if isinstance(gang, Mapping) else None
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        return PodGroupInfo(
            namespace, name, None, problem=f"spec.schedulingPolicy.gang.minCount: {count!r}"
        )
    return PodGroupInfo(namespace, name, count)


def slim_pod_group(obj: dict[str, Any]) -> dict[str, Any]:
    """What the PodGroup informer keeps: identity and the scheduling policy."""
    meta = obj.get("metadata")
    spec = obj.get("spec")
    out: dict[str, Any] = {"metadata": _pick(meta, _IDENTITY)}
    if isinstance(spec, Mapping):
        out["spec"] = {"schedulingPolicy": spec.get("schedulingPolicy")}
    return out


def _pod_labels(
    meta: Mapping[str, Any], containers: Sequence[Any], problems: list[Problem]
) -> dict[str, str]:
    """The pod's labels, plus those derived from a Snakemake job's command (pod's own win)."""
    labels = _string_map(meta.get("labels"), "metadata.labels", problems)
    if snakemake.is_snakemake_pod(labels):
        return {**snakemake.derived_labels(containers), **labels}
    return labels


def _termination_reason(
    containers: Sequence[Mapping[str, Any]], statuses: Mapping[str, Mapping[str, Any]]
) -> str:
    if not containers:
        return ""
    status = statuses.get(str(containers[0].get("name")))
    return str(_terminated(status).get("reason") or "") if status else ""


def _terminated(status: Mapping[str, Any]) -> Mapping[str, Any]:
    """A container status's ``state.terminated`` (``{}`` when absent or malformed)."""
    state = _mapping(status.get("state"), "", [])
    return _mapping(state.get("terminated"), "", [])


def node_info(
    node: Mapping[str, Any], usage: resources.Resources | None = None
) -> tuple[cluster.NodeInfo, tuple[Problem, ...]]:
    """Read one node (allocatable, labels, taints, readiness, cordon)."""
    problems: list[Problem] = []
    meta = node.get("metadata") or {}
    spec = node.get("spec") or {}
    status = node.get("status") or {}
    conditions = {
        str(c.get("type")): str(c.get("status"))
        for c in status.get("conditions") or ()
        if isinstance(c, Mapping)
    }
    taints: list[constraints.Taint] = []
    for i, raw in enumerate(spec.get("taints") or ()):
        try:
            taints.append(
                constraints.Taint(
                    key=str(raw["key"]),
                    value=str(raw.get("value") or ""),
                    effect=constraints.TaintEffect(raw["effect"]),
                )
            )
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            problems.append(Problem(f"spec.taints[{i}]", f"ignored: {exc}"))
    info = cluster.NodeInfo(
        name=str(meta.get("name") or ""),
        allocatable=_quantities(status.get("allocatable"), "status.allocatable", problems),
        labels=_string_map(meta.get("labels"), "metadata.labels", problems),
        taints=tuple(taints),
        ready=conditions.get("Ready") == "True",
        unschedulable=bool(spec.get("unschedulable")),
        conditions=conditions,
        usage=usage,
    )
    return info, tuple(problems)


def usage_from_metrics(item: Mapping[str, Any]) -> resources.Resources | None:
    """Read a NodeMetrics item's usage; ``None`` when it is malformed."""
    usage = item.get("usage")
    if not isinstance(usage, Mapping):
        return None
    try:
        return resources.Resources.from_quantities(
            {k: v for k, v in usage.items() if k in ("cpu", "memory")}
        )
    except (ValueError, ArithmeticError, TypeError):
        return None


# --- what the informers keep -----------------------------------------------------------------
#
# Informers hold every pod and node of the cluster. They keep only what ``pod_facts`` and
# ``node_info`` read (no managedFields, env, volumes, node images, messages; a container keeps
# its image, the tool key of memory priors), and of a finished pod
# only its identity: the loop has handled its finish, and the relist diff needs no more to
# emit its deletion. Values are copied as received, malformed ones included, so translating the
# trimmed object gives the same facts and the same problems as translating the original.

_IDENTITY = ("name", "namespace", "uid", "resourceVersion")
_POD_METADATA = (*_IDENTITY, "labels", "annotations", "creationTimestamp", "deletionTimestamp")
_POD_SPEC = (
    "schedulerName",
    "nodeName",
    "nodeSelector",
    "tolerations",
    "schedulingGates",
    "schedulingGroup",
    "overhead",
    "resources",
)
_CONTAINER = ("name", "image", "resources", "restartPolicy")
_CONTAINER_STATUS = ("name", "allocatedResources", "resources")
_NODE_METADATA = (*_IDENTITY, "labels")
_REQUIRED_AFFINITY = "requiredDuringSchedulingIgnoredDuringExecution"


def _pick(raw: Any, fields: Sequence[str]) -> Any:
    """``raw`` restricted to ``fields`` when it is a mapping, else ``raw`` unchanged."""
    if not isinstance(raw, Mapping):
        return raw
    return {name: raw[name] for name in fields if name in raw}


def _pick_each(raw: Any, fields: Sequence[str]) -> Any:
    """Each mapping of a list restricted to ``fields``; anything else unchanged."""
    if not isinstance(raw, list):
        return raw
    return [_pick(item, fields) for item in raw]


def _slim_container_status(raw: Any) -> Any:
    if not isinstance(raw, Mapping):
        return raw
    slim = _pick(raw, _CONTAINER_STATUS)
    state = raw.get("state")
    if isinstance(state, Mapping) and "terminated" in state:
        slim["state"] = {"terminated": _pick(state["terminated"], ("reason", "finishedAt"))}
    elif state is not None and not isinstance(state, Mapping):
        slim["state"] = state
    return slim


def _is_snakemake(meta: Any) -> bool:
    labels = meta.get("labels") if isinstance(meta, Mapping) else None
    return isinstance(labels, Mapping) and snakemake.is_snakemake_pod(labels)


def slim_pod(pod: dict[str, Any]) -> dict[str, Any]:
    """Return the parts of a pod that ``pod_facts`` reads; never raises.

    ``pod_facts(slim_pod(p)) == pod_facts(p)`` for every pod ``p``, malformed or not.
    """
    slim: dict[str, Any] = {}
    if "metadata" in pod:
        slim["metadata"] = _pick(pod["metadata"], _POD_METADATA)
    spec = pod.get("spec")
    if isinstance(spec, Mapping):
        slim_spec = _pick(spec, _POD_SPEC)
        for name in ("containers", "initContainers"):
            if name in spec:
                slim_spec[name] = _pick_each(spec[name], _CONTAINER)
        if "containers" in spec and _is_snakemake(pod.get("metadata")):
            # The run and rule of a Snakemake job are read from its command and env.
            slim_spec["containers"] = _pick_each(
                spec["containers"], (*_CONTAINER, *snakemake.CONTAINER_FIELDS)
            )
        affinity = spec.get("affinity")
        if isinstance(affinity, Mapping):
            slim_spec["affinity"] = {}
            node_affinity = affinity.get("nodeAffinity")
            if node_affinity is not None:
                slim_spec["affinity"]["nodeAffinity"] = _pick(node_affinity, (_REQUIRED_AFFINITY,))
        elif affinity is not None:
            slim_spec["affinity"] = affinity
        slim["spec"] = slim_spec
    elif spec is not None:
        slim["spec"] = spec
    status = pod.get("status")
    if isinstance(status, Mapping):
        slim_status = _pick(status, ("phase", "startTime"))
        statuses = status.get("containerStatuses")
        if isinstance(statuses, list):
            slim_status["containerStatuses"] = [_slim_container_status(s) for s in statuses]
        elif statuses is not None:
            slim_status["containerStatuses"] = statuses
        slim["status"] = slim_status
    elif status is not None:
        slim["status"] = status
    return slim


def stored_pod(pod: dict[str, Any]) -> dict[str, Any]:
    """What an informer's cache keeps of a (slim) pod: a finished pod shrinks to its identity.

    The loop has handled a finished pod when its terminal state arrived; the cache only needs
    to notice its deletion, also across a re-list (name, namespace, uid, resourceVersion).
    """
    status = pod.get("status")
    phase = status.get("phase") if isinstance(status, Mapping) else None
    if phase not in ("Succeeded", "Failed"):
        return pod
    return {"metadata": _pick(pod.get("metadata"), _IDENTITY), "status": {"phase": phase}}


def slim_node(node: dict[str, Any]) -> dict[str, Any]:
    """Return the parts of a node that ``node_info`` reads; never raises.

    ``node_info(slim_node(n)) == node_info(n)`` for every node ``n``.
    """
    slim: dict[str, Any] = {}
    if "metadata" in node:
        slim["metadata"] = _pick(node["metadata"], _NODE_METADATA)
    if "spec" in node:
        slim["spec"] = _pick(node["spec"], ("taints", "unschedulable"))
    status = node.get("status")
    if isinstance(status, Mapping):
        slim_status = _pick(status, ("allocatable",))
        if "conditions" in status:
            slim_status["conditions"] = _pick_each(status["conditions"], ("type", "status"))
        slim["status"] = slim_status
    elif status is not None:
        slim["status"] = status
    return slim


def binding_body(ref: cluster.PodRef, node: str) -> dict[str, Any]:
    """Return the ``v1.Binding`` for ``ref`` onto ``node`` (with a uid precondition)."""
    return {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": ref.name, "namespace": ref.namespace, "uid": ref.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    }


def memory_resize_patch(
    container: str, memory_bytes: int, *, set_limit: bool
) -> list[dict[str, Any]]:
    """Return the container list for a ``pods/resize`` strategic-merge patch.

    The value is written as a whole number of MiB (``"<n>Mi"``), as CWS and nf-cws expect.

    Args:
        container: The container to resize.
        memory_bytes: Its new memory request.
        set_limit: Write the same value as its limit too; pass
            ``PodFacts.memory_limit_follows_request`` (limit equal to the request), so that a
            limit above the request is kept and the QoS class never changes.
    """
    mib = -(-memory_bytes // (1 << 20))
    amount = f"{mib}Mi"
    res: dict[str, Any] = {"requests": {"memory": amount}}
    if set_limit:
        res["limits"] = {"memory": amount}
    return [{"name": container, "resources": res}]


def names(items: Sequence[Mapping[str, Any]]) -> list[str]:
    """Return ``metadata.name`` of each object (for logs)."""
    return [str((i.get("metadata") or {}).get("name")) for i in items]
