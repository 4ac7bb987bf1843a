"""Memory scaling in the daemon: observations in, planned memory out (the core's planner).

``MemoryModel`` keeps one predictor per (workflow, step), where the workflow is the
``wfsched.io/workflow`` name when the pods carry one (so later runs reuse what earlier runs
taught) and the run id otherwise. It learns only from tasks that finished before the one being
planned: peaks arrive through ``observe`` (from the REST task-metrics endpoint, the
``wfsched.io/peak-memory-bytes`` annotation, or the largest working set metrics.k8s.io reported
while the pod ran), OOM kills through ``observe_failure``.

It implements ``scheduler.core.interfaces.MemoryPlanner``: ``plan(task)`` returns the planned
memory in bytes (floor, cap, round up to MiB, never above the task's own request) or ``None``.
Tasks the loop marks unscalable (more than one container, a refused resize) are never planned.

Per-task and per-run state is dropped by ``retain`` once tasks and runs are gone.
Observations are bounded (``max_per_step`` newest per step, ``max_steps`` steps; a predictor
is refitted on them once it holds twice that many) and
serialisable with ``export``/``restore``, so the daemon can keep them in a ConfigMap and a new
leader rebuilds identical models by replaying them in order. Owned by the loop thread; pure.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict, deque
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from predictors import allocation, base
from scheduler import registry
from scheduler.core import workflow

STORE_FORMAT = 1
STORE_KEY = "observations.json"
"""Key of the exported observations in the daemon's ConfigMap."""
MAX_STORE_BYTES = 900_000
"""Exports are trimmed (oldest observations first) below this, under the 1 MiB object limit."""


@dataclass(slots=True)
class _StepModel:
    predictor: base.MemoryPredictor
    history: deque[tuple[int, float, float]] = field(default_factory=deque)
    """(kind, input bytes, peak or failed allocation); kind 1 = peak, 0 = failure."""
    fed: int = 0
    """Observations the predictor holds (it keeps every sample it is given)."""


class MemoryModel:
    """Per-(workflow, step) predictors behind the core's ``MemoryPlanner`` protocol."""

    def __init__(
        self,
        spec: registry.PredictorSpec,
        *,
        floor_bytes: int = allocation.DEFAULT_FLOOR_BYTES,
        cap_bytes: int | None = None,
        max_per_step: int = 500,
        max_steps: int = 2000,
    ) -> None:
        self.spec = spec
        self.policy = allocation.AllocationPolicy(floor_bytes=floor_bytes, cap_bytes=cap_bytes)
        self.max_per_step = max_per_step
        self.max_steps = max_steps
        self._models: OrderedDict[tuple[str, str], _StepModel] = OrderedDict()
        self._workflow_of_run: dict[workflow.RunId, str] = {}
        self._unscalable: set[workflow.TaskKey] = set()
        self.version = 0
        """Increases with every stored observation (for persistence)."""

    @property
    def name(self) -> str:
        """The predictor spec, for metrics labels."""
        return self.spec.text

    # --- identity ---------------------------------------------------------------------------

    def set_workflow(self, run: workflow.RunId, workflow_name: str) -> None:
        """Learn across runs of ``workflow_name``: tasks of ``run`` share its models."""
        if workflow_name:
            self._workflow_of_run[run] = workflow_name

    def key(self, run: workflow.RunId, step: str) -> tuple[str, str]:
        """Return the model key of a step of a run."""
        return self._workflow_of_run.get(run, str(run)), step

    def mark_unscalable(self, task: workflow.TaskKey) -> None:
        """Never plan this task (multi-container pod, refused resize, ...)."""
        self._unscalable.add(task)

    def is_unscalable(self, task: workflow.TaskKey) -> bool:
        """True when ``task`` was marked unscalable (other planners honour the mark too)."""
        return task in self._unscalable

    def forget_task(self, task: workflow.TaskKey) -> None:
        """Drop per-task state of a task that left the queue."""
        self._unscalable.discard(task)

    def retain(
        self, *, tasks: Collection[workflow.TaskKey], runs: Collection[workflow.RunId]
    ) -> None:
        """Keep per-task marks only for ``tasks`` and workflow names only for ``runs``.

        The loop calls it periodically with its queued and binding tasks and its known runs,
        so marks of tasks that were bound or deleted, and names of forgotten runs, do not pile
        up. What was learned per step (the models) is bounded separately (``max_steps``).
        """
        self._unscalable.intersection_update(tasks)
        for run in [run for run in self._workflow_of_run if run not in runs]:
            del self._workflow_of_run[run]

    @property
    def tracked(self) -> tuple[int, int]:
        """``(unscalable task marks, runs with a workflow name)`` held now."""
        return len(self._unscalable), len(self._workflow_of_run)

    # --- learning ---------------------------------------------------------------------------

    def _model(self, key: tuple[str, str]) -> _StepModel:
        model = self._models.get(key)
        if model is None:
            model = _StepModel(predictor=self.spec.make())
            self._models[key] = model
            while len(self._models) > self.max_steps:
                self._models.popitem(last=False)
        else:
            self._models.move_to_end(key)
        return model

    def observe(self, key: tuple[str, str], input_bytes: float, peak_bytes: float) -> bool:
        """Store a successful task's peak; returns False for an invalid observation."""
        if not (math.isfinite(input_bytes) and input_bytes >= 0):
            return False
        if not (math.isfinite(peak_bytes) and peak_bytes > 0):
            return False
        model = self._model(key)
        model.predictor.observe(input_bytes, peak_bytes)
        self._remember(model, (1, input_bytes, peak_bytes))
        return True

    def observe_failure(self, key: tuple[str, str], input_bytes: float, allocated: float) -> bool:
        """Store an OOM kill at ``allocated`` bytes (the peak was at least that)."""
        if not (math.isfinite(input_bytes) and input_bytes >= 0 and allocated > 0):
            return False
        model = self._model(key)
        model.predictor.observe_failure(input_bytes, allocated)
        self._remember(model, (0, input_bytes, allocated))
        return True

    def _remember(self, model: _StepModel, item: tuple[int, float, float]) -> None:
        model.history.append(item)
        if len(model.history) > self.max_per_step:
            model.history.popleft()
        model.fed += 1
        if model.fed > 2 * self.max_per_step:
            self._refit(model)
        self.version += 1

    def _refit(self, model: _StepModel) -> None:
        """Replace the predictor by one fed only the kept history (bounded memory).

        Predictors keep every sample they see; refitting once they hold twice the history
        bounds them at ``2 * max_per_step`` samples for a replay of ``max_per_step`` every
        ``max_per_step`` observations, and gives the model a restart from ``export`` would.
        """
        model.predictor = self.spec.make()
        for kind, x, y in model.history:
            if kind == 1:
                model.predictor.observe(x, y)
            else:
                model.predictor.observe_failure(x, y)
        model.fed = len(model.history)

    @property
    def observations(self) -> int:
        """Stored observations over all steps."""
        return sum(len(m.history) for m in self._models.values())

    # --- planning ---------------------------------------------------------------------------

    def predict(self, key: tuple[str, str], input_bytes: float) -> float | None:
        """The raw prediction for a step (``None``: no opinion)."""
        model = self._models.get(key)
        return None if model is None else model.predictor.predict(input_bytes)

    def plan(self, task: workflow.Task) -> int | None:
        """Planned memory for ``task`` in bytes, or ``None`` to keep its request."""
        if task.key in self._unscalable or task.attempt > 0:
            return None
        request = task.resizable_memory_bytes
        if request <= 0:
            return None
        prediction = self.predict(self.key(task.run, task.step), float(task.input_size))
        if prediction is None:
            return None
        planned = self.policy.allocate(prediction, request_bytes=request)
        return planned if planned < request else None

    # --- persistence ------------------------------------------------------------------------

    def export(self, max_bytes: int = MAX_STORE_BYTES) -> str:
        """Serialise the stored observations as JSON of at most ``max_bytes``.

        When everything does not fit, each step keeps only its newest observations (the same
        number for every step), so what a restart loses is the oldest history.
        """
        keep = max((len(m.history) for m in self._models.values()), default=0)
        while True:
            steps = [
                {
                    "workflow": key[0],
                    "step": key[1],
                    "history": [list(h) for h in list(model.history)[-keep:]] if keep else [],
                }
                for key, model in self._models.items()
            ]
            text = json.dumps(
                {"format": STORE_FORMAT, "predictor": self.spec.text, "steps": steps},
                separators=(",", ":"),
            )
            if len(text) <= max_bytes or keep == 0:
                return text
            keep //= 2

    def restore(self, text: str) -> int:
        """Replay observations exported earlier; returns how many were restored.

        Malformed content restores nothing and raises ``ValueError``. Observations stored for a
        different predictor spec are still valid samples and are replayed into this one.
        """
        parsed: list[tuple[tuple[str, str], list[tuple[int, float, float]]]] = []
        try:
            doc: Any = json.loads(text)
            if not isinstance(doc, dict) or doc.get("format") != STORE_FORMAT:
                raise ValueError("not a wfsched observation store of a known format")
            for entry in doc.get("steps", []):
                key = (str(entry["workflow"]), str(entry["step"]))
                history = [(int(k), float(x), float(y)) for k, x, y in entry["history"]]
                parsed.append((key, history))
        except (KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise ValueError(f"malformed observation store: {exc!r}") from None
        restored = 0
        for key, history in parsed:
            for kind, x, y in history:
                ok = self.observe(key, x, y) if kind == 1 else self.observe_failure(key, x, y)
                restored += int(ok)
        return restored
