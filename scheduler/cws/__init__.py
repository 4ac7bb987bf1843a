"""CWS executions, DAGs, batches and task registrations: the state behind the REST API.

Data flow::

    REST handler threads ──(parsed request)──► LoopCommand ──► CwsState method (loop thread)
                                                                  │ vertices/edges
                                                                  ▼
                                      WorkflowRegistry DAG of run "<namespace>/<execution>"
    pod events ──► SchedulerLoop ──► TaskHook.describe ──► CwsState.describe (labels, held)

``CwsState`` is owned by the loop thread and is pure: no I/O, no threads, no clock (every
time-dependent method takes ``now``). What the loop must do afterwards (re-describe held pods,
re-describe one pod, feed an observation to the loop's memory model, count batch timeouts) is
collected as :class:`Effects` and taken by the caller with :meth:`CwsState.take_effects`.

Semantics (cws-semantics.md sections 1.2-1.7, 5.2, with the fixes of section 7):

* An execution is registered once (a second registration is a ``DUPLICATE``, D20) with a
  strategy and an optional memory predictor; both are validated with ``scheduler.registry``.
  Its DAG vertices and edges go into the SAME ``WorkflowDag`` the loop ranks with, the run
  ``"<namespace>/<execution>"``; REST vertices are keyed ``("cws", uid)`` there, and PROCESS
  vertices are found by label, so task labels (steps) and REST processes are one thing.
* Tasks are registered before their pods exist and are matched to pods by pod name
  (``runName``). ``describe`` maps a matched pod to the task's process (step), id, input size
  and attempt, and holds it while its batch is unreleased.
* A batch is released when it is closed and every registered task's pod was seen, or
  ``batch_timeout_s`` after ``endBatch`` (D10); ``endBatch`` without a batch is a no-op (D21).
  ``DELETE task`` drops the task from its batch and its pod from the queue (D9).
* A pod with a per-execution scheduler name but no registration is held for
  ``registration_grace_s``, then scheduled as a task of its own (D22).
* Task metrics feed the execution's predictor of the task's process (one per process and
  execution, created lazily); a repeated post is an idempotent no-op (D21).
"""

from scheduler.cws.model import (
    MAX_EXECUTIONS,
    CwsError,
    Edge,
    Effects,
    ErrorKind,
    Execution,
    Observation,
    Registration,
    TaskMetrics,
    TaskRegistration,
    TaskState,
    Vertex,
)
from scheduler.cws.state import CwsState

__all__ = [
    "MAX_EXECUTIONS",
    "CwsError",
    "CwsState",
    "Edge",
    "Effects",
    "ErrorKind",
    "Execution",
    "Observation",
    "Registration",
    "TaskMetrics",
    "TaskRegistration",
    "TaskState",
    "Vertex",
]
