"""A pod's effective resource request, computed like kube-scheduler does.

The translation layer reads the containers of a raw pod and passes their parsed requests here as
plain values; no Kubernetes object ever enters the core. The rule (``PodRequests`` in
``k8s.io/component-helpers/resource``) is::

    sidecars  = running sum of restartable init containers (restartPolicy: Always)
    init_peak = max over init containers, in order, of
                  regular init container + sidecars started before it, or
                  the sidecar sum right after a sidecar starts
    request   = max(sum(app containers) + sidecars, init_peak)
    request   = pod-level requests for cpu/memory when set (spec.resources)
    request  += spec.overhead;  request.pods = 1

During an in-place resize each container counts with the maximum of its spec request, its
allocated resources and its actual resources, as the kubelet may still hold the larger one.

``MemoryBasis`` is the same rule for memory alone, as a function of the memory request of one
app container: what a pod will be accounted for once that container is resized.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from scheduler.core import resources

_ZERO = resources.Resources()


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerResources:
    """The resource view of one container.

    Attributes:
        requests: ``resources.requests`` of the container spec.
        sidecar: True for an init container with ``restartPolicy: Always``.
        allocated: ``status.containerStatuses[].allocatedResources`` when present.
        actual: ``status.containerStatuses[].resources.requests`` when present.
    """

    requests: resources.Resources
    sidecar: bool = False
    allocated: resources.Resources | None = None
    actual: resources.Resources | None = None

    @property
    def effective(self) -> resources.Resources:
        """The largest of spec, allocated and actual requests."""
        result = self.requests
        for other in (self.allocated, self.actual):
            if other is not None:
                result = result.maximum(other)
        return result


def effective_request(
    *,
    containers: Sequence[ContainerResources],
    init_containers: Sequence[ContainerResources] = (),
    overhead: resources.Resources | None = None,
    pod_level: resources.Resources | None = None,
) -> resources.Resources:
    """Return what the scheduler must reserve on a node for one pod.

    Args:
        containers: The app containers (``spec.containers``).
        init_containers: The init containers in spec order, sidecars flagged.
        overhead: ``spec.overhead`` (RuntimeClass overhead), if any.
        pod_level: Pod-level ``spec.resources.requests``; its non-zero CPU and memory replace
            the aggregated container values.

    Returns:
        The effective request, always with ``pods == 1``.
    """
    app = _ZERO
    for container in containers:
        app = app + container.effective
    sidecars, init_peak = _init_terms(init_containers)
    request = (app + sidecars).maximum(init_peak)
    if pod_level is not None:
        request = dataclasses.replace(
            request,
            cpu_millis=pod_level.cpu_millis or request.cpu_millis,
            memory_bytes=pod_level.memory_bytes or request.memory_bytes,
        )
    if overhead is not None:
        request = request + overhead
    return dataclasses.replace(request, pods=1)


def _init_terms(
    init_containers: Sequence[ContainerResources],
) -> tuple[resources.Resources, resources.Resources]:
    """Return ``(sidecars, init_peak)`` of the rule in the module docstring."""
    sidecars = _ZERO
    init_peak = _ZERO
    for container in init_containers:
        if container.sidecar:
            sidecars = sidecars + container.effective
            init_peak = init_peak.maximum(sidecars)
        else:
            init_peak = init_peak.maximum(container.effective + sidecars)
    return sidecars, init_peak


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryBasis:
    """How a pod's accounted memory follows the memory request of one of its app containers.

    ``pod_memory(m)`` is what kube-scheduler reserves for the pod once that container requests
    ``m`` bytes: ``(pod_level or max(m + others, init_peak)) + overhead``.

    Attributes:
        container_bytes: The container's memory request now (what a resize may lower).
        others_bytes: Memory of everything running beside it: the other app containers and
            the sidecars.
        init_peak_bytes: The largest memory the init phase needs (init containers with the
            sidecars started before them).
        overhead_bytes: ``spec.overhead`` memory.
        pod_level_bytes: Pod-level ``spec.resources.requests`` memory; 0 when unset. When set
            it replaces the container sum, so resizing a container frees nothing.
    """

    container_bytes: int
    others_bytes: int = 0
    init_peak_bytes: int = 0
    overhead_bytes: int = 0
    pod_level_bytes: int = 0

    def pod_memory(self, container_bytes: int) -> int:
        """Return the pod's accounted memory when the container requests ``container_bytes``."""
        if self.pod_level_bytes:
            return self.pod_level_bytes + self.overhead_bytes
        running = container_bytes + self.others_bytes
        return max(running, self.init_peak_bytes) + self.overhead_bytes


def memory_basis(
    *,
    containers: Sequence[ContainerResources],
    index: int,
    init_containers: Sequence[ContainerResources] = (),
    overhead: resources.Resources | None = None,
    pod_level: resources.Resources | None = None,
) -> MemoryBasis:
    """Return the :class:`MemoryBasis` of app container ``index``.

    Takes the arguments of :func:`effective_request`, and agrees with it:
    ``basis.pod_memory(basis.container_bytes) == effective_request(...).memory_bytes``.

    Raises:
        IndexError: ``index`` is not an app container.
    """
    resized = containers[index].effective.memory_bytes
    others = sum(c.effective.memory_bytes for i, c in enumerate(containers) if i != index)
    sidecars, init_peak = _init_terms(init_containers)
    return MemoryBasis(
        container_bytes=resized,
        others_bytes=others + sidecars.memory_bytes,
        init_peak_bytes=init_peak.memory_bytes,
        overhead_bytes=overhead.memory_bytes if overhead is not None else 0,
        pod_level_bytes=pod_level.memory_bytes if pod_level is not None else 0,
    )
