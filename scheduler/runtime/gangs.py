"""Gangs in the state machine: which pods form a gang, and who of it is bound (pure).

A pod belongs to a gang when

- it names a PodGroup in ``spec.schedulingGroup.podGroupName`` whose policy is ``gang``
  (``scheduling.k8s.io/v1alpha2``, Kubernetes 1.36); the gang's key is
  ``podgroup:<namespace>/<name>`` and its size the PodGroup's ``minCount``. A pod naming a
  PodGroup that has not been seen waits for it (``min_count`` 0), as in kube-scheduler; a
  PodGroup with the ``basic`` policy makes no gang;
- or it carries ``wfsched.io/gang-size: "<n>"`` (engines that cannot create PodGroups): the
  gang is the pods of that run and step, key ``step:<run>/<step>``, size ``n``.

:class:`GangTracker` answers that for the state machine, counts the members bound or being
bound (they count toward ``minCount``) and keeps the :class:`~scheduler.core.gang.GangBoard`
the cycle reads. :class:`StartGangBind` is the instruction that binds one gang's placements
together (``scheduler.runtime.gangbind`` carries it out).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from scheduler.core import gang, podfacts, workflow
from scheduler.kube import keys, translate
from scheduler.runtime import settings as settings_mod
from scheduler.runtime import workflows

if TYPE_CHECKING:
    from scheduler.runtime.state import StartBind

_I = TypeVar("_I")


@dataclass(frozen=True, slots=True, kw_only=True)
class StartGangBind:
    """Bind the members of one gang placed by the same cycle, all or nothing.

    Attributes:
        gang: The gang's key.
        members: One bind per placed member, in the cycle's order (each reports its own
            ``BindOutcome``).
    """

    gang: str
    members: tuple[StartBind, ...]


def annotation_gang_key(run: str, step: str) -> str:
    """The key of a gang formed by the ``wfsched.io/gang-size`` annotation."""
    return f"step:{run}/{step}"


def pod_group_key(namespace: str, name: str) -> str:
    """The key of a PodGroup's gang."""
    return f"podgroup:{namespace}/{name}"


class GangTracker:
    """PodGroups seen, gang members bound, and the cycle's gang board.

    Args:
        settings: The daemon's gang settings.
    """

    def __init__(self, settings: settings_mod.GangSettings) -> None:
        self.board = gang.GangBoard(
            settings=gang.GangSettings(
                timeout_s=settings.timeout_s,
                reserve_after_s=settings.reserve_after_s,
                reserve_for_s=settings.reserve_for_s,
            )
        )
        self._pod_groups: dict[tuple[str, str], translate.PodGroupInfo] = {}
        self._bound: dict[str, str] = {}
        """uid → gang key of members bound or being bound."""

    # --- PodGroups ----------------------------------------------------------------------------

    def pod_group_changed(self, info: translate.PodGroupInfo, *, deleted: bool) -> bool:
        """Record a PodGroup (or its deletion); True when what its pods form changed."""
        key = (info.namespace, info.name)
        before = self._pod_groups.get(key)
        if deleted:
            self._pod_groups.pop(key, None)
            return before is not None
        self._pod_groups[key] = info
        return before is None or before.min_count != info.min_count

    def ref_for(
        self, facts: podfacts.PodFacts, labels: workflows.TaskLabels
    ) -> tuple[workflow.GangRef | None, list[podfacts.Problem]]:
        """The gang a pod belongs to, and what was wrong with how it said so."""
        if facts.scheduling_group:
            info = self._pod_groups.get((facts.ref.namespace, facts.scheduling_group))
            key = pod_group_key(facts.ref.namespace, facts.scheduling_group)
            if info is None:
                return workflow.GangRef(key=key, min_count=0), []
            if info.min_count is None:
                problems = [podfacts.Problem("PodGroup", info.problem)] if info.problem else []
                return None, problems
            return workflow.GangRef(key=key, min_count=info.min_count), []
        raw = facts.annotations.get(keys.GANG_SIZE_ANNOTATION)
        if raw is None:
            return None, []
        try:
            size = int(raw.strip())
        except ValueError:
            size = 0
        if size < 1:
            problem = podfacts.Problem(
                f"annotation {keys.GANG_SIZE_ANNOTATION}",
                f"{raw!r} is not a positive integer; the pod is scheduled on its own",
            )
            return None, [problem]
        return workflow.GangRef(
            key=annotation_gang_key(labels.run, labels.step), min_count=size
        ), []

    def pod_group_members(
        self, namespace: str, name: str, facts: Iterable[podfacts.PodFacts]
    ) -> list[podfacts.PodFacts]:
        """Those of ``facts`` that name this PodGroup."""
        return [f for f in facts if f.scheduling_group == name and f.ref.namespace == namespace]

    # --- members bound ------------------------------------------------------------------------

    def member_bound(self, uid: str, ref: workflow.GangRef | None) -> None:
        """A member is bound or being bound: it counts toward its gang's ``minCount``."""
        if ref is not None:
            self._bound[uid] = ref.key

    def bound_pod_seen(self, facts: podfacts.PodFacts) -> None:
        """A bound pod seen by the watch (e.g. bound before a restart): count it if a member."""
        if facts.scheduling_group:
            self._bound[facts.ref.uid] = pod_group_key(facts.ref.namespace, facts.scheduling_group)
        elif keys.GANG_SIZE_ANNOTATION in facts.annotations:
            labels = workflows.read_task_labels(facts)
            self._bound[facts.ref.uid] = annotation_gang_key(labels.run, labels.step)

    def member_gone(self, uid: str) -> None:
        """The member was unbound (bind failed), finished or deleted."""
        self._bound.pop(uid, None)

    def board_for_cycle(self) -> gang.GangBoard:
        """The board with the current bound counts."""
        self.board.bound = dict(Counter(self._bound.values()))
        return self.board

    # --- binds --------------------------------------------------------------------------------

    @staticmethod
    def group_binds(
        instructions: Sequence[_I], gang_of: dict[workflow.TaskKey, str]
    ) -> list[_I | StartGangBind]:
        """Replace the binds of each gang's members by one :class:`StartGangBind`.

        ``gang_of`` maps task keys to gang keys; binds of other tasks are left as they are.
        The gang's instruction takes the place of its first member's bind.
        """
        out: list[_I | str] = []
        grouped: dict[str, list[StartBind]] = {}
        for instruction in instructions:
            bind = getattr(instruction, "bind", None)
            key = gang_of.get(bind.task) if bind is not None else None
            if key is None:
                out.append(instruction)
                continue
            if key not in grouped:
                grouped[key] = []
                out.append(key)
            grouped[key].append(instruction)  # type: ignore[arg-type]  # it has a bind
        return [
            StartGangBind(gang=item, members=tuple(grouped[item]))
            if isinstance(item, str)
            else item
            for item in out
        ]
