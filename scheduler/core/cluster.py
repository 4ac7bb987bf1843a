"""Cluster state: nodes, the pods that occupy them, and the assume/forget ledger.

Data flow: watch events (translated to :class:`NodeInfo` and :class:`PodInfo`) update the
mutable :class:`ClusterCache` on the decision thread; at the start of each cycle the loop takes
``cache.snapshot()``, a frozen :class:`ClusterSnapshot` that is the only cluster view the
policies see. When the loop decides to bind a pod it calls :meth:`ClusterCache.assume` at once,
so the next cycle already counts the pod, and the watch later confirms it.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from scheduler.core import constraints, errors, resources

_ZERO = resources.Resources()


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeInfo:
    """One node as the scheduler sees it.

    Attributes:
        name: ``metadata.name``.
        allocatable: ``status.allocatable`` (cpu, memory, pods, extended resources).
        labels: ``metadata.labels``; treat as read-only.
        taints: ``spec.taints``.
        ready: The ``Ready`` condition is ``True``.
        unschedulable: ``spec.unschedulable`` (cordoned).
        conditions: Other conditions, type → status, for diagnostics.
        usage: Current usage from metrics-server (cpu, memory), or ``None`` when unknown;
            unknown never means zero.
    """

    name: str
    allocatable: resources.Resources
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[constraints.Taint, ...] = ()
    ready: bool = True
    unschedulable: bool = False
    conditions: Mapping[str, str] = field(default_factory=dict)
    usage: resources.Resources | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PodRef:
    """Identifies a pod in the API: ``namespace/name`` plus its UID."""

    uid: str
    namespace: str
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PodInfo:
    """A non-terminal pod bound (or assumed bound) to a node, from any scheduler.

    Attributes:
        uid: ``metadata.uid``; the ledger key.
        node_name: ``spec.nodeName``.
        request: The effective request (see ``podrequest.effective_request``).
        namespace: ``metadata.namespace``.
        name: ``metadata.name``.
    """

    uid: str
    node_name: str
    request: resources.Resources
    namespace: str = ""
    name: str = ""


class PodState(enum.StrEnum):
    """A pod's state in the cache ledger (see :class:`ClusterCache`)."""

    INITIAL = "Initial"
    ASSUMED = "Assumed"
    ADDED = "Added"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterSnapshot:
    """A frozen view of the cluster for one cycle.

    Attributes:
        nodes: Every known node, sorted by name.
        requested: Sum of the effective requests of the pods on each node, assumed pods
            included; nodes without pods may be missing (they have zero requested).
        generation: Increases with every cache change; equal generations mean equal content.
    """

    nodes: tuple[NodeInfo, ...]
    requested: Mapping[str, resources.Resources]
    generation: int = 0

    @classmethod
    def build(
        cls, nodes: Iterable[NodeInfo], pods: Iterable[PodInfo] = (), generation: int = 0
    ) -> ClusterSnapshot:
        """Build a snapshot directly from nodes and pods (tests, simulator, benchmarks)."""
        requested: dict[str, resources.Resources] = {}
        for pod in pods:
            requested[pod.node_name] = requested.get(pod.node_name, _ZERO) + pod.request
        return cls(
            nodes=tuple(sorted(nodes, key=lambda node: node.name)),
            requested=types.MappingProxyType(requested),
            generation=generation,
        )

    def requested_on(self, node_name: str) -> resources.Resources:
        """Return what the pods on ``node_name`` request in total."""
        return self.requested.get(node_name, _ZERO)

    def free(self, node_name: str, allocatable: resources.Resources) -> resources.Resources:
        """Return ``allocatable`` minus what is requested on the node (may be negative)."""
        return allocatable - self.requested_on(node_name)


@dataclass(slots=True)
class _Entry:
    pod: PodInfo
    state: PodState
    deadline: float | None = None


class ClusterCache:
    """Mutable cluster state with kube-scheduler's assume/confirm/forget ledger.

    Pod state machine (per UID)::

                         assume()                 upsert_pod()  (watch sees it bound)
          Initial ──────────────────► Assumed ──────────────────────────► Added
             │  ▲                        │                                  │
             │  └──── forget() ──────────┤                                  │
             │  └──── expire() ──────────┘  (finish_binding() + ttl, never  │
             │                               confirmed by the watch)        │
             └──────────── upsert_pod() ──────────────────────────────────►─┤
                                                       remove_pod() ───► Initial (gone)

    Invariants:
        - An assumed or added pod counts against its node's free resources exactly once.
        - Every assume ends in a confirm (``upsert_pod``), a ``forget`` or an ``expire``.
        - ``forget`` of a pod that is not assumed is a no-op (idempotent, safe on every failure
          path); ``assume`` of a pod that is already assumed or added raises ``CacheError``.
        - Pods on nodes the cache does not (yet) know are still counted, under that node name.

    Not thread-safe: the single decision thread owns it.
    """

    def __init__(self) -> None:
        self._nodes: dict[str, NodeInfo] = {}
        self._pods: dict[str, _Entry] = {}
        self._requested: dict[str, resources.Resources] = {}
        self._generation = 0
        self._snapshot: ClusterSnapshot | None = None

    # -- nodes -------------------------------------------------------------------------------

    def upsert_node(self, node: NodeInfo) -> None:
        """Add or replace a node."""
        self._nodes[node.name] = node
        self._changed()

    def remove_node(self, name: str) -> None:
        """Forget a node; pods still reported on it keep being counted under its name."""
        if self._nodes.pop(name, None) is not None:
            self._changed()

    def node(self, name: str) -> NodeInfo | None:
        """Return the node called ``name``, if known."""
        return self._nodes.get(name)

    # -- pods --------------------------------------------------------------------------------

    def pod_state(self, uid: str) -> PodState:
        """Return the ledger state of a pod (``INITIAL`` when unknown)."""
        entry = self._pods.get(uid)
        return PodState.INITIAL if entry is None else entry.state

    def upsert_pod(self, pod: PodInfo) -> None:
        """Record a bound, non-terminal pod seen by the watch (confirms an assumed pod)."""
        self._drop(pod.uid)
        self._pods[pod.uid] = _Entry(pod=pod, state=PodState.ADDED)
        self._account(pod, +1)

    def remove_pod(self, uid: str) -> None:
        """Drop a pod that was deleted or reached a terminal phase (any state)."""
        if self._drop(uid):
            self._changed()

    def assume(self, pod: PodInfo) -> None:
        """Count a pod on its chosen node before the API confirms the binding.

        Raises:
            CacheError: If the pod is already assumed or added.
        """
        if pod.uid in self._pods:
            raise errors.CacheError(f"pod {pod.uid} is already {self._pods[pod.uid].state}")
        self._pods[pod.uid] = _Entry(pod=pod, state=PodState.ASSUMED)
        self._account(pod, +1)

    def finish_binding(self, uid: str, *, now: float, ttl: float) -> None:
        """Start the expiry clock of an assumed pod once its bind call has returned."""
        entry = self._pods.get(uid)
        if entry is not None and entry.state is PodState.ASSUMED:
            entry.deadline = now + ttl

    def forget(self, uid: str) -> PodInfo | None:
        """Undo an assumption (bind failed); returns the pod, or ``None`` if not assumed."""
        entry = self._pods.get(uid)
        if entry is None or entry.state is not PodState.ASSUMED:
            return None
        self._drop(uid)
        self._changed()
        return entry.pod

    def expire(self, *, now: float) -> list[PodInfo]:
        """Forget assumed pods whose binding finished but was never confirmed by ``now``."""
        expired = [
            entry.pod
            for entry in self._pods.values()
            if entry.state is PodState.ASSUMED
            and entry.deadline is not None
            and entry.deadline <= now
        ]
        for pod in expired:
            self.forget(pod.uid)
        return expired

    def assumed(self) -> list[PodInfo]:
        """Return every pod currently in the ``ASSUMED`` state."""
        return [entry.pod for entry in self._pods.values() if entry.state is PodState.ASSUMED]

    def pods(self) -> list[PodInfo]:
        """Return every pod the cache counts on a node (assumed or added)."""
        return [entry.pod for entry in self._pods.values()]

    # -- snapshots ---------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """A counter that increases with every change."""
        return self._generation

    def snapshot(self) -> ClusterSnapshot:
        """Return a frozen view; unchanged caches return the same snapshot object."""
        if self._snapshot is None:
            self._snapshot = ClusterSnapshot(
                nodes=tuple(self._nodes[name] for name in sorted(self._nodes)),
                requested=types.MappingProxyType(dict(self._requested)),
                generation=self._generation,
            )
        return self._snapshot

    # -- internals ---------------------------------------------------------------------------

    def _changed(self) -> None:
        self._generation += 1
        self._snapshot = None

    def _account(self, pod: PodInfo, sign: int) -> None:
        current = self._requested.get(pod.node_name, _ZERO)
        updated = current + pod.request if sign > 0 else current - pod.request
        if updated == _ZERO:
            self._requested.pop(pod.node_name, None)
        else:
            self._requested[pod.node_name] = updated
        self._changed()

    def _drop(self, uid: str) -> bool:
        entry = self._pods.pop(uid, None)
        if entry is None:
            return False
        self._account(entry.pod, -1)
        return True
