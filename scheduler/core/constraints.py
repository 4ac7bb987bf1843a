"""Placement constraints of a pod and the taints of a node, with their matching rules.

These are the hard rules kube-scheduler enforces through its NodeUnschedulable, TaintToleration
and NodeAffinity filters; a secondary scheduler has to enforce them itself. The types hold plain
values so the translation layer can fill them from raw pod and node JSON, and they are frozen
and hashable: pods with equal :class:`Constraints` share one cached feasibility mask per cycle.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

UNSCHEDULABLE_TAINT_KEY = "node.kubernetes.io/unschedulable"
NOT_READY_TAINT_KEY = "node.kubernetes.io/not-ready"
NODE_NAME_FIELD = "metadata.name"


class TaintEffect(enum.StrEnum):
    """What a taint does to pods that do not tolerate it."""

    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"

    @property
    def is_hard(self) -> bool:
        """True for effects that forbid placement (NoSchedule, NoExecute)."""
        return self is not TaintEffect.PREFER_NO_SCHEDULE


@dataclass(frozen=True, slots=True, kw_only=True)
class Taint:
    """A node taint ``key=value:effect``."""

    key: str
    value: str = ""
    effect: TaintEffect = TaintEffect.NO_SCHEDULE


class TolerationOperator(enum.StrEnum):
    """How a toleration compares the taint value."""

    EQUAL = "Equal"
    EXISTS = "Exists"


@dataclass(frozen=True, slots=True, kw_only=True)
class Toleration:
    """A pod toleration; an empty ``key`` with ``Exists`` tolerates every taint.

    Attributes:
        key: Taint key to match; empty matches every key.
        operator: ``Equal`` compares values; ``Exists`` ignores them.
        value: Value compared by ``Equal``.
        effect: Effect to match; ``None`` matches every effect.
    """

    key: str = ""
    operator: TolerationOperator = TolerationOperator.EQUAL
    value: str = ""
    effect: TaintEffect | None = None

    def tolerates(self, taint: Taint) -> bool:
        """Return True when this toleration matches ``taint`` (``ToleratesTaint`` in Kubernetes)."""
        if self.effect is not None and self.effect != taint.effect:
            return False
        if self.key and self.key != taint.key:
            return False
        if self.operator is TolerationOperator.EXISTS:
            return True
        return self.value == taint.value


class SelectorOperator(enum.StrEnum):
    """Operators of a node selector requirement."""

    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"
    GT = "Gt"
    LT = "Lt"


def _as_int(text: str) -> int | None:
    try:
        return int(text, 10)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSelectorRequirement:
    """One ``matchExpressions`` or ``matchFields`` entry: ``key operator values``."""

    key: str
    operator: SelectorOperator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Evaluate the requirement against a label (or field) map.

        ``Gt``/``Lt`` need exactly one integer value and an integer label; anything else fails,
        as in Kubernetes.
        """
        present = self.key in labels
        op = self.operator
        if op is SelectorOperator.EXISTS:
            return present
        if op is SelectorOperator.DOES_NOT_EXIST:
            return not present
        if op is SelectorOperator.IN:
            return present and labels[self.key] in self.values
        if op is SelectorOperator.NOT_IN:
            return not present or labels[self.key] not in self.values
        if not present or len(self.values) != 1:
            return False
        have, want = _as_int(labels[self.key]), _as_int(self.values[0])
        if have is None or want is None:
            return False
        return have > want if op is SelectorOperator.GT else have < want


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSelectorTerm:
    """A node selector term: every expression and every field requirement must hold.

    A term with neither expressions nor fields matches no node (Kubernetes semantics).
    """

    match_expressions: tuple[NodeSelectorRequirement, ...] = ()
    match_fields: tuple[NodeSelectorRequirement, ...] = ()

    def matches(self, *, node_name: str, labels: Mapping[str, str]) -> bool:
        """Return True when the node satisfies every requirement of this term."""
        if not self.match_expressions and not self.match_fields:
            return False
        if not all(req.matches(labels) for req in self.match_expressions):
            return False
        fields = {NODE_NAME_FIELD: node_name}
        return all(req.key == NODE_NAME_FIELD and req.matches(fields) for req in self.match_fields)


@dataclass(frozen=True, slots=True, kw_only=True)
class Constraints:
    """The hard placement constraints of a pod.

    Attributes:
        node_selector: ``spec.nodeSelector`` as sorted ``(key, value)`` pairs; all must match.
        required_terms: ``requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms``
            (ORed), or ``None`` when the pod has no required node affinity.
        tolerations: ``spec.tolerations``.
    """

    node_selector: tuple[tuple[str, str], ...] = ()
    required_terms: tuple[NodeSelectorTerm, ...] | None = None
    tolerations: tuple[Toleration, ...] = ()
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.node_selector:
            object.__setattr__(
                self, "node_selector", tuple(sorted(dict(self.node_selector).items()))
            )
        # Constraints key per-cycle caches for every task: hash once.
        key = (self.node_selector, self.required_terms, self.tolerations)
        object.__setattr__(self, "_hash", hash(key))

    def __hash__(self) -> int:
        return self._hash

    @classmethod
    def of(
        cls,
        *,
        node_selector: Mapping[str, str] | None = None,
        required_terms: Iterable[NodeSelectorTerm] | None = None,
        tolerations: Iterable[Toleration] = (),
    ) -> Constraints:
        """Build from a selector mapping and iterables."""
        return cls(
            node_selector=tuple((node_selector or {}).items()),
            required_terms=None if required_terms is None else tuple(required_terms),
            tolerations=tuple(tolerations),
        )

    @property
    def is_empty(self) -> bool:
        """True when the pod constrains nothing (the common case, with a fast path)."""
        return not self.node_selector and self.required_terms is None and not self.tolerations

    def tolerates(self, taint: Taint) -> bool:
        """Return True when one of the pod's tolerations matches ``taint``."""
        return any(toleration.tolerates(taint) for toleration in self.tolerations)

    def matches_node(self, *, node_name: str, labels: Mapping[str, str]) -> bool:
        """Return True when ``nodeSelector`` and required node affinity both accept the node."""
        for key, value in self.node_selector:
            if labels.get(key) != value:
                return False
        if self.required_terms is None:
            return True
        return any(term.matches(node_name=node_name, labels=labels) for term in self.required_terms)
