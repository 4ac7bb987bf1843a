"""The binding cycle of one gang: all members bound, or the partial binding undone.

The scheduling cycle placed every member at once and the state machine assumed them all, so
the gang's room is held while this runs. The members are bound one after the other by one bind
worker. When a Binding fails (the pod was deleted, changed or bound by someone else):

- members not yet sent are **never sent**: they are reported ``abandoned``, which returns
  them to the queue at their place without a penalty. That is always safe: an unbound pod
  stays pending and the gang is placed again as a whole;
- members already bound are **deleted** (grace period 0, uid precondition), because a
  Binding cannot be taken back. For pods owned by a controller (Job, JobSet, LeaderWorkerSet,
  an MPI or Flux operator) that is how a gang restarts: the controller creates them again and
  the new pods form the gang afresh. The uid precondition makes sure only the pod that was
  bound is deleted, never a successor of the same name. Their outcomes are reported ``ok``
  (they were bound); the watch then reports the deletion.

If leadership is lost midway the remaining members are not sent (the client's write guard
refuses them) and nothing is deleted: writes are no longer ours. The new leader counts the bound
members toward ``minCount`` and places the rest when they fit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from scheduler.runtime.gangs import StartGangBind
from scheduler.runtime.state import GANG_NOT_SENT, BindOutcome, StartBind

log = logging.getLogger(__name__)

BindOne = Callable[[StartBind], BindOutcome]
"""Binds one member and reports its outcome (the loop's ``_resize_and_bind``)."""
DeletePod = Callable[[str, str, str], object]
"""Deletes a pod by namespace, name and uid (``KubeClient.delete_pod``)."""


def bind_gang(
    start: StartGangBind, *, bind_one: BindOne, delete_pod: DeletePod | None
) -> list[BindOutcome]:
    """Bind the gang's members in order; on the first failure undo as the module says.

    Returns one outcome per member, in the members' order. Never raises.
    """
    outcomes: list[BindOutcome] = []
    failed: BindOutcome | None = None
    for member in start.members:
        if failed is not None:
            outcomes.append(
                BindOutcome(bind=member.bind, ok=False, abandoned=True, reason=GANG_NOT_SENT)
            )
            continue
        try:
            outcome = bind_one(member)
        except Exception as exc:  # reported as a failed bind, like the single-pod worker
            log.exception("gang bind failed", extra={"gang": start.gang})
            outcome = BindOutcome(bind=member.bind, ok=False, reason=str(exc)[:300])
        outcomes.append(outcome)
        if not outcome.ok:
            failed = outcome
    if failed is None or failed.abandoned:
        return outcomes
    bound = [o.bind for o in outcomes if o.ok]
    log.warning(
        "gang binding failed; undoing it",
        extra={
            "gang": start.gang,
            "status": failed.status,
            "reason": failed.reason[:200],
            "deleted": len(bound),
            "not_sent": len(start.members) - len(outcomes[: outcomes.index(failed) + 1]),
        },
    )
    for bind in bound:
        if bind.pod is None or delete_pod is None:
            continue
        try:
            delete_pod(bind.pod.namespace, bind.pod.name, bind.pod.uid)
        except Exception:  # logged; the pod stays bound and counts toward minCount
            log.warning(
                "deleting a partially bound gang member failed",
                exc_info=True,
                extra={"gang": start.gang, "pod": f"{bind.pod.namespace}/{bind.pod.name}"},
            )
    return outcomes
