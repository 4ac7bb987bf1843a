"""What earlier runs of a workflow taught the daemon: step runtimes and step edges.

``WorkflowHistory`` keeps, per workflow key (the ``wfsched.io/workflow`` name when pods carry
one, else the run id):

- the last ``max_runtimes`` successful runtimes of each step (container start to finish);
  ``runtime_estimates`` gives their medians, which a new run's DAG uses for a step until a task
  of the step has finished in that run (``WorkflowDag.prior_runtimes``);
- the step-level edges its runs showed (a task's step after the steps of its parents), which a
  new run of the workflow starts with, so rankings that look down the DAG (``critical_path``,
  ``rank_*``) see the steps to come before their first task exists.

It is kept whether or not memory prediction is on, and saved next to the memory observations
(the same ConfigMap, key ``HISTORY_KEY``) so a restarted daemon or a new leader starts
informed. Bounded: ``max_workflows`` workflow keys (least recently used dropped first) and
``max_steps`` steps and ``4 * max_steps`` edges per workflow. Owned by the loop thread; pure.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

HISTORY_KEY = "history.json"
"""Key of the exported history in the store ConfigMap."""
HISTORY_FORMAT = 1
"""Version of the exported document."""
MAX_HISTORY_BYTES = 200_000
"""Exports are trimmed (fewest runtimes per step first) below this."""

StepEdge = tuple[str, str]


@dataclass(slots=True)
class _Workflow:
    runtimes: dict[str, deque[float]] = field(default_factory=dict)
    edges: set[StepEdge] = field(default_factory=set)


class WorkflowHistory:
    """Step runtimes and step edges per workflow key, across runs (see the module doc)."""

    def __init__(
        self, *, max_runtimes: int = 20, max_workflows: int = 256, max_steps: int = 500
    ) -> None:
        if min(max_runtimes, max_workflows, max_steps) < 1:
            raise ValueError("history bounds must be at least 1")
        self.max_runtimes = max_runtimes
        self.max_workflows = max_workflows
        self.max_steps = max_steps
        self.max_edges = 4 * max_steps
        """Step edges kept per workflow."""
        self._workflows: OrderedDict[str, _Workflow] = OrderedDict()
        self.version = 0
        """Increases with every change (for persistence)."""

    def __len__(self) -> int:
        """Number of workflow keys held."""
        return len(self._workflows)

    def _entry(self, workflow_key: str) -> _Workflow:
        entry = self._workflows.get(workflow_key)
        if entry is None:
            entry = self._workflows[workflow_key] = _Workflow()
            while len(self._workflows) > self.max_workflows:
                self._workflows.popitem(last=False)
        else:
            self._workflows.move_to_end(workflow_key)
        return entry

    # --- runtimes ----------------------------------------------------------------------------

    def observe_runtime(self, workflow_key: str, step: str, seconds: float) -> bool:
        """Store a successful task's runtime; False (nothing stored) for an invalid one."""
        if not workflow_key or not step or not (math.isfinite(seconds) and seconds >= 0):
            return False
        entry = self._entry(workflow_key)
        kept = entry.runtimes.get(step)
        if kept is None:
            if len(entry.runtimes) >= self.max_steps:
                return False
            kept = entry.runtimes[step] = deque(maxlen=self.max_runtimes)
        kept.append(float(seconds))
        self.version += 1
        return True

    def runtime_estimates(self, workflow_key: str) -> dict[str, float]:
        """Median of the kept runtimes of every step of ``workflow_key`` (empty: none)."""
        entry = self._workflows.get(workflow_key)
        if entry is None:
            return {}
        return {step: statistics.median(kept) for step, kept in entry.runtimes.items() if kept}

    # --- step edges --------------------------------------------------------------------------

    def step_edges(self, workflow_key: str) -> frozenset[StepEdge]:
        """The step edges learned for ``workflow_key``."""
        entry = self._workflows.get(workflow_key)
        return frozenset() if entry is None else frozenset(entry.edges)

    def learn_step_edges(self, workflow_key: str, edges: Iterable[StepEdge]) -> None:
        """Add step edges seen in a run of ``workflow_key`` (self-loops are ignored)."""
        new = {(a, b) for a, b in edges if a and b and a != b}
        if not workflow_key or not new:
            return
        entry = self._entry(workflow_key)
        new -= entry.edges
        room = self.max_edges - len(entry.edges)
        if new and room > 0:
            entry.edges.update(sorted(new)[:room])
            self.version += 1

    def forget_step_edges(self, workflow_key: str) -> None:
        """Drop the step edges of ``workflow_key`` (they contradict each other)."""
        entry = self._workflows.get(workflow_key)
        if entry is not None and entry.edges:
            entry.edges.clear()
            self.version += 1

    # --- persistence -------------------------------------------------------------------------

    def export(self, max_bytes: int = MAX_HISTORY_BYTES) -> str:
        """Serialise as JSON of at most ``max_bytes`` where possible.

        When everything does not fit, each step keeps fewer of its newest runtimes (the same
        number for every step); the edges are always kept.
        """
        keep = self.max_runtimes
        while True:
            text = json.dumps(
                {
                    "format": HISTORY_FORMAT,
                    "workflows": [
                        {
                            "workflow": name,
                            "runtimes": {
                                step: [round(v, 3) for v in list(kept)[-keep:]] if keep else []
                                for step, kept in entry.runtimes.items()
                            },
                            "edges": [list(edge) for edge in sorted(entry.edges)],
                        }
                        for name, entry in self._workflows.items()
                    ],
                },
                separators=(",", ":"),
            )
            if len(text) <= max_bytes or keep == 0:
                return text
            keep //= 2

    def restore(self, text: str) -> int:
        """Merge a document written by ``export``; returns the runtimes and edges restored.

        Raises:
            ValueError: the document is malformed (nothing is restored then).
        """
        try:
            doc: Any = json.loads(text)
            if not isinstance(doc, dict) or doc.get("format") != HISTORY_FORMAT:
                raise ValueError("not a wfsched workflow history of a known format")
            parsed = [_parse_workflow(item) for item in doc.get("workflows", [])]
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
            raise ValueError(f"malformed workflow history: {exc}") from None
        restored = 0
        for name, runtimes, edges in parsed:
            for step, values in runtimes.items():
                restored += sum(self.observe_runtime(name, step, v) for v in values)
            before = len(self.step_edges(name))
            self.learn_step_edges(name, edges)
            restored += len(self.step_edges(name)) - before
        return restored

    def import_runtimes(self, runtimes: Mapping[tuple[str, str], Iterable[float]]) -> int:
        """Add runtimes by ``(workflow key, step)``, oldest first (an older store's); count."""
        return sum(
            self.observe_runtime(name, step, seconds)
            for (name, step), values in runtimes.items()
            for seconds in values
        )


def _parse_workflow(item: Any) -> tuple[str, dict[str, list[float]], list[StepEdge]]:
    """One stored workflow; raises KeyError/TypeError/ValueError on malformed content."""
    name = item["workflow"]
    if not isinstance(name, str):
        raise TypeError("workflow must be a string")
    raw_runtimes = item.get("runtimes", {})
    if not isinstance(raw_runtimes, dict):
        raise TypeError("runtimes must be an object")
    runtimes = {str(step): [float(v) for v in values] for step, values in raw_runtimes.items()}
    edges: list[StepEdge] = []
    for pair in item.get("edges", []):
        source, target = pair
        if not isinstance(source, str) or not isinstance(target, str):
            raise TypeError("an edge is a pair of step names")
        edges.append((source, target))
    return name, runtimes, edges
