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

Cold starts (``priors``, on by default): a step the model has never seen is seeded, when its
predictor is created, with the peaks the model already holds for

- the same tool in other workflows: the step's short name (last ``:``-separated part) and its
  pod's first container image without tag (``predictors.priors.tool_of``), learned through
  ``set_image``; a ``base.PriorSource.TOOL`` prior;
- the same step (full name) under another workflow key, e.g. runs of the same pipeline without
  a ``wfsched.io/workflow`` name; a ``base.PriorSource.RUN`` prior. Earlier runs of the same
  named workflow need no prior: they share the model itself (the key is the workflow name).

Predictors without a ``seed`` hook ignore priors. The priors a model was seeded with are part of
its stored state, so a new leader restores the very same seeds rather than recomputing them.

Step runtimes across runs are kept by ``history.WorkflowHistory`` (whether or not memory is
scaled); :func:`stored_runtimes` reads those an older store kept here, for it to import.

Per-task and per-run state is dropped by ``retain`` once tasks and runs are gone.
Observations are bounded (``max_per_step`` newest per step, ``max_steps`` steps; a predictor
is refitted on them once it holds twice that many) and
serialisable with ``export``/``restore``, so the daemon can keep them in a ConfigMap and a new
leader rebuilds identical models by replaying them in order. Owned by the loop thread; pure.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import OrderedDict, deque
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from predictors import allocation, base, priors
from scheduler import registry
from scheduler.core import workflow

STORE_FORMAT = 1
"""Version of the store; ``tool`` and ``priors`` per step are optional fields (``runtimes``,
written by older versions, is read only by :func:`stored_runtimes`)."""
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
    tool: tuple[str, str] | None = None
    """(short name, image without tag) of the step, once a pod told its image."""
    priors: tuple[base.Prior, ...] = ()
    """The priors the predictor was seeded with when it was created (replayed on refits)."""


class MemoryModel:
    """Per-(workflow, step) predictors behind the core's ``MemoryPlanner`` protocol."""

    def __init__(
        self,
        spec: registry.PredictorSpec,
        *,
        floor_bytes: int = allocation.DEFAULT_FLOOR_BYTES,
        cap_bytes: int | None = None,
        floor_bytes_per_cpu: int = 0,
        max_per_step: int = 500,
        max_steps: int = 2000,
        use_priors: bool = True,
    ) -> None:
        self.spec = spec
        self.policy = allocation.AllocationPolicy(
            floor_bytes=floor_bytes, cap_bytes=cap_bytes, floor_bytes_per_cpu=floor_bytes_per_cpu
        )
        self.max_per_step = max_per_step
        self.max_steps = max_steps
        self.use_priors = use_priors
        self._models: OrderedDict[tuple[str, str], _StepModel] = OrderedDict()
        self._tools: OrderedDict[tuple[str, str], tuple[str, str]] = OrderedDict()
        """Tool of each model key whose pods were seen (bounded by ``max_steps``)."""
        self._no_prior: dict[tuple[str, str], int] = {}
        """Keys found without any prior, with the ``version`` they were looked up at."""
        self._workflow_of_run: dict[workflow.RunId, str] = {}
        self._unscalable: set[workflow.TaskKey] = set()
        self._learned: set[tuple[str, str]] | None = None
        """Keys observed since the last ``drain_learned``; ``None`` until someone follows them
        (``follow_learned``), so a daemon without shrinking keeps no such set."""
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

    def set_image(self, key: tuple[str, str], image: str, tool_name: str = "") -> None:
        """Record the image the pods of a step run and the tool's name (default: the step's).

        The tool key is ``(short name, image without tag)``; the short name is the part of
        ``tool_name`` (or the step name) after its last ``:``. Label values cannot hold ``:``,
        so engines whose step labels lose it name the tool explicitly.
        """
        if not image:
            return
        tool = priors.tool_of(tool_name or key[1], image)
        if self._tools.get(key) != tool:
            self._no_prior.pop(key, None)
        self._tools[key] = tool
        self._tools.move_to_end(key)
        while len(self._tools) > self.max_steps:
            self._tools.popitem(last=False)
        model = self._models.get(key)
        if model is not None and model.tool != tool:
            model.tool = tool
            self.version += 1

    def tool(self, key: tuple[str, str]) -> tuple[str, str] | None:
        """The tool key of a step, if known."""
        return self._tools.get(key)

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
            found = self.priors_for(key) if self.use_priors else ()
            model = self._create(key, self._tools.get(key), found)
        else:
            self._models.move_to_end(key)
        return model

    def _create(
        self, key: tuple[str, str], tool: tuple[str, str] | None, seeds: tuple[base.Prior, ...]
    ) -> _StepModel:
        model = _StepModel(predictor=self._seeded(seeds), tool=tool, priors=seeds)
        self._models[key] = model
        self._no_prior.pop(key, None)
        while len(self._models) > self.max_steps:
            self._models.popitem(last=False)
        self.version += 1
        return model

    def _seeded(self, seeds: tuple[base.Prior, ...]) -> base.MemoryPredictor:
        predictor = self.spec.make()
        if isinstance(predictor, base.SeedablePredictor):
            for prior in seeds:
                predictor.seed(prior)
        return predictor

    def priors_for(self, key: tuple[str, str]) -> tuple[base.Prior, ...]:
        """Priors for a step from what the model holds for other workflows (tool, then run).

        Peaks come from the stored observations of other workflow keys, most recently used
        steps first, at most ``max_per_step`` per source. Empty when nothing matches.
        """
        tool = self._tools.get(key)
        tool_peaks: list[float] = []
        run_peaks: list[float] = []
        for other, model in reversed(self._models.items()):
            if other[0] == key[0]:
                continue
            if other[1] == key[1]:
                into = run_peaks
            elif tool is not None and model.tool == tool:
                into = tool_peaks
            else:
                continue
            peaks = (y for kind, _, y in reversed(model.history) if kind == 1)
            into.extend(itertools.islice(peaks, self.max_per_step - len(into)))
        found: list[base.Prior] = []
        if tool_peaks:
            found.append(base.Prior(source=base.PriorSource.TOOL, peaks=tuple(tool_peaks)))
        if run_peaks:
            found.append(base.Prior(source=base.PriorSource.RUN, peaks=tuple(run_peaks)))
        return tuple(found)

    def observe(self, key: tuple[str, str], input_bytes: float, peak_bytes: float) -> bool:
        """Store a successful task's peak; returns False for an invalid observation."""
        if not (math.isfinite(input_bytes) and input_bytes >= 0):
            return False
        if not (math.isfinite(peak_bytes) and peak_bytes > 0):
            return False
        model = self._model(key)
        model.predictor.observe(input_bytes, peak_bytes)
        self._remember(model, (1, input_bytes, peak_bytes))
        if self._learned is not None:
            self._learned.add(key)
        return True

    def observe_failure(self, key: tuple[str, str], input_bytes: float, allocated: float) -> bool:
        """Store an OOM kill at ``allocated`` bytes (the peak was at least that)."""
        if not (math.isfinite(input_bytes) and input_bytes >= 0 and allocated > 0):
            return False
        model = self._model(key)
        model.predictor.observe_failure(input_bytes, allocated)
        self._remember(model, (0, input_bytes, allocated))
        if self._learned is not None:
            self._learned.add(key)
        return True

    def follow_learned(self) -> None:
        """Start recording the keys observed, for ``drain_learned`` (idempotent)."""
        if self._learned is None:
            self._learned = set()

    def drain_learned(self) -> set[tuple[str, str]]:
        """The keys observed (peaks or OOM kills) since the last call; empties the set.

        Counted from ``follow_learned`` on; always empty while nobody follows them.
        """
        learned = self._learned or set()
        if self._learned is not None:
            self._learned = set()
        return learned

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
        model.predictor = self._seeded(model.priors)
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
        """The raw prediction for a step (``None``: no opinion).

        A step never seen before gets its model here when priors exist for it, so its first
        task is planned from them; lookups that find none are cached until the next change.
        """
        model = self._models.get(key)
        if model is None and self.use_priors and self._no_prior.get(key) != self.version:
            found = self.priors_for(key)
            if found:
                model = self._create(key, self._tools.get(key), found)
            else:
                if len(self._no_prior) >= self.max_steps:
                    self._no_prior.clear()
                self._no_prior[key] = self.version
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
        planned = self.policy.allocate(
            prediction, request_bytes=request, cpus=task.request.cpu_millis / 1000
        )
        return planned if planned < request else None

    # --- persistence ------------------------------------------------------------------------

    def export(self, max_bytes: int = MAX_STORE_BYTES) -> str:
        """Serialise the stored observations as JSON of at most ``max_bytes``.

        Each step carries its tool key and the priors it was seeded with. When everything does
        not fit, each step keeps only its newest observations and prior peaks (the same number
        for every step), so a restart loses the oldest history.
        """
        keep = max(
            (
                max([len(m.history), *(len(p.peaks) for p in m.priors)])
                for m in self._models.values()
            ),
            default=0,
        )
        while True:
            steps = [self._export_step(key, model, keep) for key, model in self._models.items()]
            text = json.dumps(
                {"format": STORE_FORMAT, "predictor": self.spec.text, "steps": steps},
                separators=(",", ":"),
            )
            if len(text) <= max_bytes or keep == 0:
                return text
            keep //= 2

    @staticmethod
    def _export_step(key: tuple[str, str], model: _StepModel, keep: int) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "workflow": key[0],
            "step": key[1],
            "history": [list(h) for h in list(model.history)[-keep:]] if keep else [],
        }
        if model.tool is not None:
            entry["tool"] = list(model.tool)
        entry["priors"] = [
            {"source": p.source.value, "peaks": list(p.peaks[:keep])} for p in model.priors if keep
        ]
        return entry

    def restore(self, text: str) -> int:
        """Replay observations exported earlier; returns how many were restored.

        Malformed content restores nothing and raises ``ValueError``. Observations stored for a
        different predictor spec are still valid samples and are replayed into this one. Steps
        stored with their priors are seeded with exactly those (a store without them is seeded
        from what was restored before it).
        """
        parsed = _parse_store(text)
        restored = 0
        for stored in parsed:
            key = stored.key
            if stored.tool is not None:
                self._tools[key] = stored.tool
            if stored.priors is not None and key not in self._models:
                self._create(key, stored.tool, stored.priors)
            for kind, x, y in stored.history:
                ok = self.observe(key, x, y) if kind == 1 else self.observe_failure(key, x, y)
                restored += int(ok)
        while len(self._tools) > self.max_steps:
            self._tools.popitem(last=False)
        return restored


def stored_runtimes(text: str) -> dict[tuple[str, str], list[float]]:
    """Step runtimes an older store kept per (workflow, step), oldest first (for the history).

    Raises:
        ValueError: the store is malformed.
    """
    return {step.key: step.runtimes for step in _parse_store(text) if step.runtimes}


def _parse_store(text: str) -> list[_StoredStep]:
    """Every stored step of an exported store; ``ValueError`` when it is malformed."""
    try:
        doc: Any = json.loads(text)
        if not isinstance(doc, dict) or doc.get("format") != STORE_FORMAT:
            raise ValueError("not a wfsched observation store of a known format")
        return [_parse_step(entry) for entry in doc.get("steps", [])]
    except (KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise ValueError(f"malformed observation store: {exc!r}") from None


@dataclass(frozen=True, slots=True)
class _StoredStep:
    key: tuple[str, str]
    history: list[tuple[int, float, float]]
    tool: tuple[str, str] | None
    priors: tuple[base.Prior, ...] | None
    runtimes: list[float]


def _parse_step(entry: Any) -> _StoredStep:
    """Read one stored step; raises KeyError/TypeError/ValueError on malformed content."""
    tool_raw = entry.get("tool")
    tool = (str(tool_raw[0]), str(tool_raw[1])) if tool_raw is not None else None
    priors_raw = entry.get("priors")
    seeds = (
        tuple(
            base.Prior(
                source=base.PriorSource(str(p["source"])),
                peaks=tuple(float(v) for v in p["peaks"]),
            )
            for p in priors_raw
            if p["peaks"]
        )
        if priors_raw is not None
        else None
    )
    return _StoredStep(
        key=(str(entry["workflow"]), str(entry["step"])),
        history=[(int(k), float(x), float(y)) for k, x, y in entry["history"]],
        tool=tool,
        priors=seeds,
        runtimes=[float(v) for v in entry.get("runtimes", [])],
    )
