"""Find the task that makes a scheduling cycle fail, so the rest of the queue keeps moving.

A cycle is a pure function of its inputs, so when one raises (a ranking policy that breaks its
contract, a predictor that chokes on one task's numbers) the shell can re-run it on parts of
the queue without side effects. :func:`find_failing_task` halves the queue until one task alone
reproduces the failure (``O(log n)`` trial cycles), then checks that another task alone does
not fail: a failure that every task triggers is the policy's, not a task's, and nothing is set
aside for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from scheduler.core import workflow

Trial = Callable[[Sequence[workflow.Task]], bool]
"""Runs a cycle over the given tasks only; True when it fails."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Isolation:
    """The outcome of :func:`find_failing_task`.

    Attributes:
        task: The task that fails alone while another task alone does not; ``None`` when no
            single task could be blamed (every task fails alone, only a combination fails, or
            the failure did not reproduce).
        trials: How many trial cycles were run.
    """

    task: workflow.Task | None
    trials: int


def find_failing_task(tasks: Sequence[workflow.Task], fails: Trial) -> Isolation:
    """Bisect ``tasks`` for one task that makes ``fails`` true on its own.

    Args:
        tasks: The queue in its order.
        fails: Runs a trial cycle over a subset; must not have side effects that matter.

    Returns:
        The task to set aside (if any) and the number of trials used.
    """
    trials = 0

    def trial(subset: Sequence[workflow.Task]) -> bool:
        nonlocal trials
        trials += 1
        return fails(subset)

    suspects = list(tasks)
    if not suspects or not trial(suspects):
        return Isolation(task=None, trials=trials)
    while len(suspects) > 1:
        half = len(suspects) // 2
        first, second = suspects[:half], suspects[half:]
        if trial(first):
            suspects = first
        elif trial(second):
            suspects = second
        else:
            return Isolation(task=None, trials=trials)  # only a combination fails
    culprit = suspects[0]
    witness = next((t for t in tasks if t.key != culprit.key), None)
    if witness is not None and trial([witness]):
        return Isolation(task=None, trials=trials)  # every task fails: the policy is broken
    return Isolation(task=culprit, trials=trials)
