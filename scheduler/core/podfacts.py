"""What the scheduler knows about one pod, read once from its JSON: pure data.

``scheduler.kube.translate`` builds :class:`PodFacts` from the API server's objects; the state
machine, the workflow grouping and the CWS API read them. :class:`Problem` names a malformed
field that was ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from scheduler.core import cluster, constraints, podrequest, resources


@dataclass(frozen=True, slots=True)
class Problem:
    """A malformed field that was ignored: where it is and what is wrong."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True, slots=True, kw_only=True)
class PodFacts:
    """What the scheduler needs to know about one pod, read once from its JSON.

    Attributes:
        ref: namespace, name and uid.
        scheduler_name: ``spec.schedulerName`` (``default-scheduler`` when absent).
        node_name: ``spec.nodeName`` or ``""`` while unbound.
        phase: ``status.phase``.
        terminating: ``metadata.deletionTimestamp`` is set.
        request: The effective request (init containers, sidecars, overhead, resizes).
        constraints: nodeSelector, required node affinity, tolerations.
        scheduling_gates: Names of ``spec.schedulingGates``.
        labels: ``metadata.labels``.
        annotations: ``metadata.annotations``.
        created: ``metadata.creationTimestamp`` as POSIX seconds (0 when unknown).
        problems: Fields that were malformed and ignored.
    """

    ref: cluster.PodRef
    scheduler_name: str
    node_name: str
    phase: str
    terminating: bool
    request: resources.Resources
    constraints: constraints.Constraints
    scheduling_gates: tuple[str, ...]
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    created: float
    resource_version: str = ""
    container_names: tuple[str, ...] = ()
    first_container_memory: tuple[int, int] = (0, 0)
    """Container 0's memory (request, limit) in bytes; 0 when unset."""
    first_container_image: str = ""
    """Container 0's ``image`` (``""`` when unset): with the step, the tool key of priors."""
    memory_basis: podrequest.MemoryBasis | None = None
    """How ``request``'s memory follows container 0's memory request (``None``: no container)."""
    started: float = 0.0
    """``status.startTime`` as POSIX seconds (0 when unknown)."""
    finished_at: float = 0.0
    """Latest ``finishedAt`` of a terminated container (0 when none)."""
    termination_reason: str = ""
    """The first container's ``state.terminated.reason`` (e.g. ``OOMKilled``)."""
    scheduling_group: str = ""
    """``spec.schedulingGroup.podGroupName``: the PodGroup the pod belongs to (``""``: none)."""
    problems: tuple[Problem, ...] = field(default=())

    @property
    def finished(self) -> bool:
        """The pod reached a terminal phase."""
        return self.phase in ("Succeeded", "Failed")

    @property
    def memory_limit_follows_request(self) -> bool:
        """True when a memory resize of container 0 must lower its limit with its request.

        Only where the limit equals the request (Guaranteed-style; a request left unset
        defaults to the limit): moving both keeps the QoS class. A limit above the request is a
        headroom the user chose and stays; without a limit there is nothing to change.
        """
        request, limit = self.first_container_memory
        return limit > 0 and limit == request

    @property
    def runtime_s(self) -> float | None:
        """Seconds from start to the last container's termination, when both are known."""
        if self.started <= 0 or self.finished_at < self.started:
            return None
        return self.finished_at - self.started


def pod_info(facts: PodFacts) -> cluster.PodInfo:
    """Return the accounting record of a bound pod."""
    return cluster.PodInfo(
        uid=facts.ref.uid,
        node_name=facts.node_name,
        request=facts.request,
        namespace=facts.ref.namespace,
        name=facts.ref.name,
    )
