"""One scheduling cycle as a pure function: snapshot + queue + DAGs + policies → decisions.

``run_cycle`` is the core of wfsched; the daemon's loop and the offline simulator both call it.
Steps (cws-semantics 2.2, with wfsched's fixes):

1. **Plan memory** (optional :class:`~scheduler.core.interfaces.MemoryPlanner`): first attempts
   with a memory request may get less memory than requested; CPU is never planned.
2. **Rank** the whole queue (backing-off and gated tasks included, so their place in the
   persistent order evolves exactly like CWS's in-place sort).
3. **Assign** in ranked order: skip gated and backing-off tasks; compute the feasible nodes
   (static filters + working free resources); let the assignment policy choose; re-check the
   choice and subtract the planned request from the working copy. Lower-ranked tasks that fit
   backfill ahead of tasks that do not (no reservation, as in CWS).
4. **Explain** the tasks that fit nowhere: one ``Reject`` each (after all ``Bind``s), with
   kube-scheduler's message computed against the cycle's final working state, plus a
   ``MarkUnschedulable`` when the reason differs from the last one reported.

Nothing here mutates the snapshot, the queue or the DAGs; policies may only mutate their own
state. The returned ``CycleResult.order`` is the queue's order for the next cycle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from scheduler.core import (
    cluster,
    context,
    decisions,
    errors,
    gang,
    interfaces,
    nodetable,
    workflow,
)
from scheduler.core.queue import SchedulingQueue


def planned_memory(task: workflow.Task, planner: interfaces.MemoryPlanner | None) -> int | None:
    """Return the memory request to resize the task's container to, or ``None`` to keep it.

    Retries (``attempt > 0``) and tasks without a memory request are never planned; plans that
    are not finite and positive are ignored; a plan above the container's request is capped at
    it; a resize that would not lower what the pod is accounted for (init containers or a
    pod-level request dominate) is not made. Gang members are never planned: a refused resize
    would fail one member's bind and with it the whole gang.
    """
    current = task.resizable_memory_bytes
    if planner is None or task.attempt > 0 or task.request.memory_bytes <= 0 or current <= 0:
        return None
    if task.gang is not None:
        return None
    plan = planner.plan(task)
    if plan is None or isinstance(plan, bool) or not math.isfinite(plan) or plan <= 0:
        return None
    memory = min(math.ceil(plan), current)
    if memory == current or task.memory_after_resize(memory) >= task.request.memory_bytes:
        return None
    return memory


def _check_permutation(
    given: Sequence[workflow.Task], ranked: Sequence[workflow.Task], policy: str
) -> None:
    if len(ranked) != len(given) or {t.key for t in ranked} != {t.key for t in given}:
        raise errors.PolicyContractError(
            f"ranking policy {policy!r} did not return a permutation of the queue"
        )


def unplaced_decisions(
    unplaced: Sequence[tuple[workflow.Task, nodetable.Candidates | _Refusal]],
    nodes: nodetable.WorkingNodes,
    queue: SchedulingQueue,
    ctx: context.CycleContext,
    decided: Sequence[decisions.Decision],
) -> tuple[list[decisions.Decision], tuple[tuple[workflow.TaskKey, str], ...]]:
    """A ``Reject`` per task that found no node, and a ``MarkUnschedulable`` per new reason.

    The second is emitted only where the reason differs from the one last reported for the task
    and that report is ``ctx.settings.unschedulable_report_interval_s`` old: each report is a
    write of the pod's status and an Event, and on a full cluster the node counts of a reason
    change at almost every placement. A change that comes sooner is returned second, for
    ``CycleResult.unreported``; the kept changes of tasks this cycle neither placed (a ``Bind``
    in ``decided``) nor tried are reported here once due.
    """
    interval_s = ctx.settings.unschedulable_report_interval_s
    out: list[decisions.Decision] = []
    unreported: list[tuple[workflow.TaskKey, str]] = []
    for task, failure in unplaced:
        reason, code = failure if isinstance(failure, tuple) else nodes.explain(failure)
        out.append(decisions.Reject(cycle_id=ctx.cycle_id, task=task.key, code=code, reason=reason))
        if queue.report_due(task.key, reason, ctx.now, interval_s):
            out.append(_mark(task, reason, ctx))
        elif queue.reported_reason(task.key) != reason:
            unreported.append((task.key, reason))
    due = list(queue.due_reports(ctx.now, interval_s))
    if due:
        tried = {task.key for task, _ in unplaced}
        tried.update(d.task for d in decided if isinstance(d, decisions.Bind))
        out.extend(_mark(task, reason, ctx) for task, reason in due if task.key not in tried)
    return out, tuple(unreported)


def _mark(task: workflow.Task, reason: str, ctx: context.CycleContext) -> decisions.Decision:
    return decisions.MarkUnschedulable(
        cycle_id=ctx.cycle_id, task=task.key, pod=task.pod, reason=reason, at=ctx.now
    )


def run_cycle(
    *,
    snapshot: cluster.ClusterSnapshot,
    queue: SchedulingQueue,
    dags: Mapping[workflow.RunId, workflow.WorkflowDag],
    policies: interfaces.Policies,
    ctx: context.CycleContext,
    gangs: gang.GangBoard | None = None,
) -> decisions.CycleResult:
    """Rank the queue and place what fits; return the decisions.

    Args:
        snapshot: Frozen cluster view (assumed pods already counted).
        queue: The scheduling queue; read only.
        dags: Workflow DAG per run; read only.
        policies: Ranking, assignment and optional memory planner.
        ctx: Cycle id, time and random generator.
        gangs: Bound members and waiting times of gangs (``scheduler.core.gang``); tasks with
            a ``gang`` are ranked as one task per gang and placed all or nothing.

    Returns:
        The cycle's decisions; every bound node had room for the planned request at the time
        of the decision, whatever the policies returned.

    Raises:
        PolicyContractError: If the ranking policy does not return a permutation.
    """
    plan = gang.GangPlan(queue.tasks())
    tasks = plan.rankable()
    ranked = policies.ranking.rank(tasks, workflow.WorkflowView(dags), ctx)
    _check_permutation(tasks, ranked, policies.ranking.name)
    extra = {name for task in tasks if task.request.extended for name, _ in task.request.extended}
    nodes = nodetable.WorkingNodes(snapshot, extra_resources=extra)
    out: list[decisions.Decision] = []
    unplaced: list[tuple[workflow.Task, nodetable.Candidates | _Refusal]] = []
    gated: list[workflow.TaskKey] = []
    backing_off: list[workflow.TaskKey] = []
    max_binds = ctx.settings.max_binds
    bound = 0
    board = gangs if gangs is not None else gang.GangBoard()
    for task in ranked:
        members = plan.gang(task) if plan else None
        if members is not None:
            if max_binds is not None and bound >= max_binds:
                break
            placed = gang.place_gang(
                members,
                nodes=nodes,
                queue=queue,
                board=board,
                ctx=ctx,
                out=out,
                place_one=lambda t, n, o: _place(t, nodes=n, policies=policies, ctx=ctx, out=o),
            )
            bound += placed.placed
            if placed.blocks:
                break
            continue
        if task.gated:
            gated.append(task.key)
            continue
        if queue.backing_off(task.key, ctx.now):
            backing_off.append(task.key)
            continue
        if max_binds is not None and bound >= max_binds:
            break
        failure = _place(task, nodes=nodes, policies=policies, ctx=ctx, out=out)
        if failure is None:
            bound += 1
        else:
            unplaced.append((task, failure))
    # Explanations are computed once per request class against the final working state:
    # free resources only shrink during a cycle, so a task that did not fit when its turn came
    # still does not fit, and the reasons describe the cluster as the next cycle will find it.
    reports, unreported = unplaced_decisions(unplaced, nodes, queue, ctx, out)
    out.extend(reports)
    return decisions.CycleResult(
        cycle_id=ctx.cycle_id,
        order=plan.expand(ranked),
        decisions=tuple(out),
        gated=tuple(gated),
        backing_off=tuple(backing_off),
        unreported=unreported,
    )


_Refusal = tuple[str, decisions.RejectCode]


def _place(
    task: workflow.Task,
    *,
    nodes: nodetable.WorkingNodes,
    policies: interfaces.Policies,
    ctx: context.CycleContext,
    out: list[decisions.Decision],
) -> nodetable.Candidates | _Refusal | None:
    """Place one task; ``None`` on success, else what is needed to explain the failure."""
    resized = planned_memory(task, policies.memory_planner)
    if resized is None:
        planned, original = task.request, None
    else:
        # Reserve what kube-scheduler will account for the resized pod (init containers,
        # sidecars and overhead included), not the container's new request alone.
        planned = task.request.with_memory(task.memory_after_resize(resized))
        original = task.request
    candidates = nodes.candidates(task, planned, original=original)
    if not candidates.any():
        return candidates
    choice = policies.assignment.select(candidates, ctx)
    index = _accepted_index(choice, candidates)
    name = policies.assignment.name
    if index is None and choice is None:
        return f"assignment policy {name} declined all feasible nodes", _UNSCHEDULABLE
    if index is None:
        return f"assignment policy {name} chose infeasible node {choice!r}", _POLICY_ERROR
    nodes.place(index, candidates.vector)
    if resized is not None:
        out.append(
            decisions.Resize(
                cycle_id=ctx.cycle_id,
                task=task.key,
                pod=task.pod,
                memory_bytes=resized,
                original_memory_bytes=task.resizable_memory_bytes,
            )
        )
    out.append(
        decisions.Bind(
            cycle_id=ctx.cycle_id,
            task=task.key,
            pod=task.pod,
            node=nodes.names[index],
            request=planned,
        )
    )
    return None


_UNSCHEDULABLE = decisions.RejectCode.UNSCHEDULABLE
_POLICY_ERROR = decisions.RejectCode.POLICY_ERROR


def _accepted_index(choice: object, candidates: nodetable.Candidates) -> int | None:
    """Return ``choice`` as a node index if it is feasible and still fits, else ``None``."""
    if isinstance(choice, bool) or not isinstance(choice, int | np.integer):
        return None
    index = int(choice)
    nodes = candidates.nodes
    if not 0 <= index < len(nodes) or not candidates.is_feasible(index):
        return None
    return index if nodes.row_fits(index, candidates.vector, candidates.original) else None
