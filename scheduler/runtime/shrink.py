"""Shrink in place in the daemon: running tasks that started before their step was known.

:class:`ShrinkTracker` belongs to the state machine (pure: no threads, no clock, no I/O). It
remembers the running pods of ours that the memory model could not plan when they were bound
(their memory is still what the engine asked for), indexed by the model's (workflow, step) key.
When the model learns about a step (``MemoryModel.drain_learned``), or when such a pod is first
seen running, the next ``due`` (the state machine's tick, leader only) asks the model for the
step's plan and ``scheduler.core.shrink`` for a decision, and hands the shell a
:class:`ShrinkMemory` instruction: send the resize, record ``wfsched.io/original-memory`` on
the pod, tell the user with an Event, report a :class:`ShrinkReported`.

One decision per pod: a pod is shrunk at most once and never retried after a refusal; a pod that
already carries ``wfsched.io/original-memory`` (resized by us before its binding or shrunk by
an earlier leader) or a grow count is never tracked. The node's room grows when the watch shows
the resize actuated (the cache counts the larger of spec and node status while it is in flight).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scheduler.core import cluster, podfacts, shrink, workflow
from scheduler.kube import keys
from scheduler.runtime import grow as grow_mod
from scheduler.runtime import workflows

if TYPE_CHECKING:
    from scheduler.runtime import memory as memory_mod
    from scheduler.runtime import metrics as metrics_mod

MemoryKey = tuple[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class ShrinkMemory:
    """Lower a running pod's container memory (request, and the limit when it equals it)."""

    ref: cluster.PodRef
    container: str
    request_bytes: int
    limit_bytes: int
    """The new limit; 0 when the container has none (only the request is sent then)."""
    old_request_bytes: int
    old_limit_bytes: int
    step: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ShrinkReported:
    """The shell's report of one ``ShrinkMemory``."""

    instruction: ShrinkMemory
    ok: bool
    status: int = 0
    reason: str = ""


@dataclass(slots=True)
class _Candidate:
    facts: podfacts.PodFacts
    task: workflow.Task
    key: MemoryKey


class ShrinkTracker:
    """Running pods of ours that may shrink once their step is known; see the module docstring.

    Args:
        policy: Thresholds of ``scheduler.core.shrink``.
        memory: The daemon's memory model (plans and the keys it learned).
        metrics: ``memory_shrinks{result}`` is counted for every decision and report.
    """

    def __init__(
        self,
        policy: shrink.ShrinkPolicy,
        memory: memory_mod.MemoryModel,
        metrics: metrics_mod.Metrics,
    ) -> None:
        self.policy = policy
        self.memory = memory
        self.memory.follow_learned()
        self.metrics = metrics
        self._candidates: dict[str, _Candidate] = {}
        self._by_key: dict[MemoryKey, set[str]] = {}
        self._fresh: set[str] = set()
        """uids tracked since the last ``due``."""
        self._settled: set[str] = set()
        """uids decided on (shrunk, or not trackable) while they run: never looked at again."""

    def __len__(self) -> int:
        return len(self._candidates)

    def pod_seen(
        self, facts: podfacts.PodFacts, labels: Callable[[], workflows.TaskLabels]
    ) -> None:
        """Track a running pod of ours (decided at the next ``due``), or update what is known.

        ``labels`` is called only for a pod not tracked yet.
        """
        uid = facts.ref.uid
        if uid in self._settled or facts.phase != "Running" or not facts.node_name:
            return
        if not _trackable(facts):  # e.g. grown in the meantime
            self.pod_gone(uid)
            self._settled.add(uid)
            return
        known = self._candidates.get(uid)
        if known is not None:
            known.facts = facts
            return
        found = labels()
        self.memory.set_workflow(found.run, found.workflow_name)
        key = self.memory.key(found.run, found.step)
        task = workflow.Task(
            key=workflow.TaskKey(found.run, found.task_id),
            step=found.step,
            submission=0,
            request=facts.request,
            input_size=found.input_size,
            attempt=found.attempt,
            pod=facts.ref,
            memory_basis=facts.memory_basis,
        )
        self._candidates[uid] = _Candidate(facts=facts, task=task, key=key)
        self._by_key.setdefault(key, set()).add(uid)
        self._fresh.add(uid)

    def pod_gone(self, uid: str) -> None:
        """Forget a pod that finished or was deleted."""
        self._settled.discard(uid)
        self._fresh.discard(uid)
        candidate = self._candidates.pop(uid, None)
        if candidate is None:
            return
        siblings = self._by_key.get(candidate.key)
        if siblings is not None:
            siblings.discard(uid)
            if not siblings:
                del self._by_key[candidate.key]

    def due(self, usage: Mapping[tuple[str, str], int]) -> list[ShrinkMemory]:
        """Decide on new pods and on the siblings of steps the model learned about.

        The pods are those first seen since the last call and the running siblings of every
        step the model learned about since then; ``usage``: (namespace, name) → the largest
        usage sampled (metrics.k8s.io).
        """
        uids = set(self._fresh)
        self._fresh.clear()
        for key in self.memory.drain_learned():
            uids.update(self._by_key.get(key, ()))
        return self._decide(sorted(uids), usage) if uids else []

    def reported(self, report: ShrinkReported) -> None:
        """Count the outcome of a resize (a refused shrink is not tried again)."""
        self.metrics.memory_shrinks.labels(result="shrunk" if report.ok else "refused").inc()

    def _decide(self, uids: list[str], usage: Mapping[tuple[str, str], int]) -> list[ShrinkMemory]:
        out: list[ShrinkMemory] = []
        for uid in uids:
            candidate = self._candidates.get(uid)
            if candidate is None:
                continue
            planned = self.memory.plan(candidate.task)
            if planned is None:
                continue
            facts = candidate.facts
            request, limit = facts.first_container_memory
            decision = shrink.plan_shrink(
                request_bytes=request,
                limit_bytes=limit,
                planned_bytes=planned,
                usage_bytes=usage.get((facts.ref.namespace, facts.ref.name), 0),
                policy=self.policy,
            )
            if decision is None:
                continue
            self.pod_gone(uid)
            self._settled.add(uid)
            self.metrics.memory_shrinks.labels(result="decided").inc()
            out.append(
                ShrinkMemory(
                    ref=facts.ref,
                    container=facts.container_names[0],
                    request_bytes=decision.new_request_bytes,
                    limit_bytes=decision.new_limit_bytes,
                    old_request_bytes=request,
                    old_limit_bytes=limit,
                    step=str(candidate.task.step),
                )
            )
        return out


def _trackable(facts: podfacts.PodFacts) -> bool:
    """One container with a memory request, never resized by us nor grown."""
    return (
        len(facts.container_names) == 1
        and facts.first_container_memory[0] > 0
        and keys.ORIGINAL_MEMORY_ANNOTATION not in facts.annotations
        and grow_mod.GROWS_ANNOTATION not in facts.annotations
    )
