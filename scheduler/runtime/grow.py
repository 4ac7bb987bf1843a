"""Grow in place in the daemon: running tasks, their usage, and the resizes to send.

:class:`GrowTracker` belongs to the state machine (pure: no threads, no clock, no I/O). It
remembers the running pods of ours that have a memory limit, turns each batch of usage samples
(metrics.k8s.io, polled by the shell) into ``scheduler.core.grow`` decisions, counts every
grow in the cluster cache at once (the node's room shrinks before the watch shows the new
spec, as an assumed binding does), and hands the shell :class:`GrowMemory` instructions (send
the resize, then report a :class:`GrowReported`) and :class:`GrowNotice` instructions (an Event
when a task could not be grown). A refused resize gives the room back.

One decision per task and limit: a task that could not be grown is reported once, not at every
poll; it is considered again once its limit changed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scheduler.core import cluster, grow, podfacts, resources

if TYPE_CHECKING:
    from scheduler.runtime import metrics as metrics_mod

MIB = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class GrowMemory:
    """Resize a running pod's container memory (request and limit), then report it."""

    ref: cluster.PodRef
    container: str
    request_bytes: int
    limit_bytes: int
    old_limit_bytes: int
    usage_bytes: int
    grows: int
    """This task's grows including this one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GrowNotice:
    """Tell the user a task past its threshold was not grown (an Event on the pod)."""

    ref: cluster.PodRef
    outcome: grow.GrowOutcome
    note: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GrowReported:
    """The shell's report of one ``GrowMemory``."""

    instruction: GrowMemory
    ok: bool
    status: int = 0
    reason: str = ""


@dataclass(slots=True)
class _Running:
    facts: podfacts.PodFacts
    grows: int = 0
    granted_limit: int = 0
    """The largest limit we asked for and were granted (the watch may not show it yet)."""
    added_request: int = 0
    """Memory added to the request by our grows, not yet visible in ``facts``."""
    in_flight: bool = False
    noticed_at_limit: int = -1
    """The limit at which a no-grow was last reported."""


def _mib(value: int) -> str:
    return f"{value / MIB:.0f} MiB"


class GrowTracker:
    """Running tasks of ours and their grows; see the module docstring.

    Args:
        policy: When and how much to grow.
        metrics: ``memory_grows{result}`` is counted for every decision and report.
    """

    def __init__(self, policy: grow.GrowPolicy, metrics: metrics_mod.Metrics) -> None:
        self.policy = policy
        self.metrics = metrics
        self._running: dict[str, _Running] = {}

    def __len__(self) -> int:
        return len(self._running)

    def grows_of(self, uid: str) -> int:
        """Grows granted so far to a running pod (0 when unknown)."""
        item = self._running.get(uid)
        return 0 if item is None else item.grows

    # --- what the watch shows --------------------------------------------------------------

    def pod_seen(
        self, facts: podfacts.PodFacts, *, ours: bool, cache: cluster.ClusterCache
    ) -> None:
        """Track (or stop tracking) a bound pod after the cache counted it.

        A pod of ours that runs and has a memory limit on its first container is tracked.
        While a granted grow is not yet visible in the pod (the watch lags), the cache keeps
        counting the grown request.
        """
        uid = facts.ref.uid
        limit = facts.first_container_memory[1]
        if not ours or facts.phase != "Running" or not facts.node_name or limit <= 0:
            self._running.pop(uid, None)
            return
        item = self._running.get(uid)
        if item is None:
            self._running[uid] = _Running(facts=facts)
            return
        item.facts = facts
        if limit >= item.granted_limit:
            item.added_request = 0  # the watch caught up with our grows
        elif item.added_request:
            cache.upsert_pod(self._grown_info(item))

    def pod_gone(self, uid: str) -> None:
        """Forget a pod that finished or was deleted."""
        self._running.pop(uid, None)

    @staticmethod
    def _grown_info(item: _Running) -> cluster.PodInfo:
        info = podfacts.pod_info(item.facts)
        extra = resources.Resources(memory_bytes=item.added_request)
        return dataclasses.replace(info, request=info.request + extra)

    # --- usage in, grows out ----------------------------------------------------------------

    def usage(
        self, peaks: Mapping[tuple[str, str], int], cache: cluster.ClusterCache
    ) -> list[GrowMemory | GrowNotice]:
        """Decide on the tracked pods whose usage is known; count the grows in ``cache``."""
        tasks: list[grow.RunningTask] = []
        for item in self._running.values():
            if item.in_flight:
                continue
            ref = item.facts.ref
            usage = peaks.get((ref.namespace, ref.name), 0)
            if usage <= 0:
                continue
            request, limit = item.facts.first_container_memory
            if item.granted_limit > limit:
                request, limit = request + item.added_request, item.granted_limit
            tasks.append(
                grow.RunningTask(
                    ref=ref,
                    node_name=item.facts.node_name,
                    container=item.facts.container_names[0],
                    request_bytes=request,
                    limit_bytes=limit,
                    usage_bytes=usage,
                    grows=item.grows,
                )
            )
        if not tasks:
            return []
        snapshot = cache.snapshot()
        free = {
            node.name: snapshot.free(node.name, node.allocatable).memory_bytes
            for node in snapshot.nodes
        }
        out: list[GrowMemory | GrowNotice] = []
        for decision in grow.plan_grows(tasks, free, self.policy):
            item = self._running[decision.task.ref.uid]
            task = decision.task
            if decision.outcome is grow.GrowOutcome.GROW:
                item.in_flight = True
                item.grows += 1
                item.granted_limit = decision.new_limit_bytes
                item.added_request += decision.added_bytes
                cache.upsert_pod(self._grown_info(item))
                out.append(
                    GrowMemory(
                        ref=task.ref,
                        container=task.container,
                        request_bytes=decision.new_request_bytes,
                        limit_bytes=decision.new_limit_bytes,
                        old_limit_bytes=task.limit_bytes,
                        usage_bytes=task.usage_bytes,
                        grows=item.grows,
                    )
                )
                continue
            if item.noticed_at_limit == task.limit_bytes:
                continue
            item.noticed_at_limit = task.limit_bytes
            self.metrics.memory_grows.labels(result=str(decision.outcome)).inc()
            out.append(
                GrowNotice(
                    ref=task.ref, outcome=decision.outcome, note=_note(decision, self.policy)
                )
            )
        return out

    def reported(self, report: GrowReported, cache: cluster.ClusterCache) -> None:
        """Apply the outcome of a resize: keep the grow, or give its room back."""
        sent = report.instruction
        self.metrics.memory_grows.labels(result="grown" if report.ok else "refused").inc()
        item = self._running.get(sent.ref.uid)
        if item is None:
            return
        item.in_flight = False
        if report.ok:
            return
        added = sent.limit_bytes - sent.old_limit_bytes
        item.grows -= 1
        item.added_request = max(0, item.added_request - added)
        item.granted_limit = sent.old_limit_bytes if item.added_request else 0
        item.noticed_at_limit = sent.old_limit_bytes  # a refusal is reported by the shell
        if cache.pod_state(sent.ref.uid) is not cluster.PodState.INITIAL:
            cache.upsert_pod(self._grown_info(item))


def _note(decision: grow.GrowDecision, policy: grow.GrowPolicy) -> str:
    task = decision.task
    usage = f"usage {_mib(task.usage_bytes)} of limit {_mib(task.limit_bytes)}"
    if decision.outcome is grow.GrowOutcome.NO_ROOM:
        wanted = grow.grown_limit(task, policy) - task.limit_bytes
        return (
            f"not grown: {usage}; node {task.node_name} has {_mib(max(0, decision.free_bytes))}"
            f" free, about {_mib(wanted)} needed; the task may be OOM-killed and retried"
        )
    if decision.outcome is grow.GrowOutcome.EXHAUSTED:
        return f"not grown: {usage}; already grown {task.grows} times"
    return f"not grown: {usage}; the limit is at the cap"
