"""Leave-one-workflow-out evaluation: choose parameters on the other workflows, score the held out.

**Workflow of a run** (:func:`workflow_of`): a Nextflow trace's run is named
``<directory>/<file stem>`` by the loader, and its workflow is that directory's name, i.e. all
trace files in one directory are runs of one workflow (``nfcore-traces/<pipeline>/trace-N.csv``:
the nf-core pipeline). A WfFormat instance's run is named after its file stem, and its workflow
is the application: ``nextflow-<pipeline>-...`` → ``<pipeline>``, else the stem up to the first
``-`` (``montage-chameleon-2mass-...`` → ``montage``).

**Protocol.** For each held-out workflow W and each row of the report:

- a fixed row (one candidate: published constants) is scored on W as it is;
- a tunable row (several candidates) takes the candidate chosen by :func:`select` on the other
  workflows' runs, then is scored on W. The rule was fixed in code before any held-out result
  was seen: among the candidates whose failed attempts on the training workflows are at most the
  reference's (Ponder's) there, the lowest training wastage; if none qualifies, the fewest
  failed attempts (then wastage); ties go to the earlier candidate;
- a row with priors (:class:`PriorMode`) reuses the choice of its base row, and its predictors
  are seeded (``predictors.priors``) with tool priors from the *training* workflows only, and
  (``TOOL_AND_RUNS``) with the same process in earlier runs of W (in run-name order).

Runs are replayed independently (a fresh predictor per process and run), so every candidate is
replayed once per run and the per-workflow totals serve all held-out folds. Pure code.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from predictors import priors, replay, traces


class PriorMode(enum.StrEnum):
    """Which priors a row's predictors are seeded with."""

    NONE = "none"
    TOOL = "tool"
    TOOL_AND_RUNS = "tool+runs"


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One predictor row of the report.

    Attributes:
        label: Display name.
        candidates: (spec, factory) pairs; one = fixed, several = tuned per fold; a ``None``
            factory is the user default.
        priors: Seeding of the predictors.
        base: For a row with priors, the label of the row whose choice it reuses.
    """

    label: str
    candidates: tuple[tuple[str, replay.PredictorFactory | None], ...]
    priors: PriorMode = PriorMode.NONE
    base: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RowResult:
    """A row's held-out scores and choices, per workflow."""

    label: str
    per_workflow: dict[str, replay.Metrics]
    choices: dict[str, str]
    priors: PriorMode = PriorMode.NONE

    @property
    def overall(self) -> replay.Metrics:
        """Totals over every held-out workflow."""
        return sum(self.per_workflow.values(), replay.Metrics())


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """The leave-one-workflow-out results."""

    workflows: tuple[str, ...]
    rows: tuple[RowResult, ...]
    reference: str
    runs: dict[str, int] = field(default_factory=dict)


def workflow_of(run_name: str) -> str:
    """Return the workflow a run belongs to (see the module docstring for the rule)."""
    if "/" in run_name:
        return run_name.rsplit("/", 1)[0].rsplit("/", 1)[-1]
    parts = run_name.split("-")
    if parts[0] == "nextflow" and len(parts) > 1:
        return parts[1]
    return parts[0]


def group_by_workflow(runs: Sequence[traces.Run]) -> dict[str, list[traces.Run]]:
    """Group runs by :func:`workflow_of`, each group in run-name order.

    Raises:
        ValueError: Fewer than two workflows.
    """
    groups: dict[str, list[traces.Run]] = {}
    for run in sorted(runs, key=lambda r: r.name):
        groups.setdefault(workflow_of(run.name), []).append(run)
    if len(groups) < 2:
        found = ", ".join(groups) or "none"
        raise ValueError(
            f"leave-one-workflow-out needs runs of at least 2 workflows, found {len(groups)} "
            f"({found}); a workflow is the directory holding its trace files"
        )
    return dict(sorted(groups.items()))


def select(
    candidates: Sequence[str],
    scores: Mapping[str, Mapping[str, replay.Metrics]],
    reference: Mapping[str, replay.Metrics],
    training: Sequence[str],
) -> str:
    """Return the candidate the fixed rule picks on the training workflows (module docstring)."""
    budget = sum(reference[w].failed_attempts for w in training)
    totals = {c: sum((scores[c][w] for w in training), replay.Metrics()) for c in candidates}
    order = {c: i for i, c in enumerate(candidates)}
    feasible = [c for c in candidates if totals[c].failed_attempts <= budget]
    if feasible:
        return min(feasible, key=lambda c: (totals[c].wastage_gbh, order[c]))
    return min(
        candidates, key=lambda c: (totals[c].failed_attempts, totals[c].wastage_gbh, order[c])
    )


def evaluate(
    runs: Sequence[traces.Run],
    rows: Sequence[Row],
    *,
    reference: str,
    options: replay.Options | None = None,
    scored: Sequence[traces.Run] | None = None,
) -> Report:
    """Run the leave-one-workflow-out protocol.

    Args:
        runs: All runs; grouped with :func:`group_by_workflow`.
        rows: The report's rows; ``reference`` must be the label of a fixed row without priors.
        reference: The row whose training failures bound the tuned rows' choices.
        options: The replay protocol (default: ``replay.Options()``).
        scored: Other versions of the same runs (same names, e.g. synthetic variants) to score
            the held-out workflow on, while parameters are still chosen (and tool priors
            built) on ``runs``: "tuned on these traces, deployed on those".

    Raises:
        ValueError: Fewer than two workflows, or an unknown or tunable reference row.
    """
    options = options or replay.Options()
    groups = group_by_workflow(runs)
    scored_groups = groups if scored is None else group_by_workflow(scored)
    if [[r.name for r in g] for g in scored_groups.values()] != [
        [r.name for r in g] for g in groups.values()
    ]:
        raise ValueError("the scored runs must be versions of the same runs (same names)")
    workflows = tuple(groups)
    by_label = {row.label: row for row in rows}
    if reference not in by_label or len(by_label[reference].candidates) != 1:
        raise ValueError(f"reference row {reference!r} must be one of the fixed rows")
    scores: dict[str, dict[str, replay.Metrics]] = {}
    held_out_scores = scores if scored is None else {}
    factories = {spec: factory for row in rows for spec, factory in row.candidates}
    for row in rows:
        if row.priors is not PriorMode.NONE:
            continue
        for spec, factory in row.candidates:
            if spec not in scores:
                scores[spec] = {
                    w: _total(replay.replay_runs(group, factory, options))
                    for w, group in groups.items()
                }
                if scored is not None:
                    held_out_scores[spec] = {
                        w: _total(replay.replay_runs(group, factory, options))
                        for w, group in scored_groups.items()
                    }
    reference_scores = scores[by_label[reference].candidates[0][0]]
    choices: dict[str, dict[str, str]] = {}
    results: list[RowResult] = []
    for row in rows:
        chosen = choices.setdefault(row.label, {})
        per_workflow: dict[str, replay.Metrics] = {}
        for held_out in workflows:
            training = [w for w in workflows if w != held_out]
            if row.priors is PriorMode.NONE:
                specs = [spec for spec, _ in row.candidates]
                pick = (
                    specs[0]
                    if len(specs) == 1
                    else select(specs, scores, reference_scores, training)
                )
                chosen[held_out] = pick
                per_workflow[held_out] = held_out_scores[pick][held_out]
            else:
                pick = choices[row.base or ""][held_out]
                chosen[held_out] = pick
                per_workflow[held_out] = _with_priors(
                    groups, scored_groups[held_out], held_out, factories[pick], row.priors, options
                )
        results.append(
            RowResult(label=row.label, per_workflow=per_workflow, choices=chosen, priors=row.priors)
        )
    return Report(
        workflows=workflows,
        rows=tuple(results),
        reference=reference,
        runs={w: len(g) for w, g in groups.items()},
    )


def _total(results: Sequence[replay.RunResult]) -> replay.Metrics:
    return sum((r.metrics for r in results), replay.Metrics())


def _with_priors(
    groups: Mapping[str, Sequence[traces.Run]],
    held_out_runs: Sequence[traces.Run],
    held_out: str,
    factory: replay.PredictorFactory | None,
    mode: PriorMode,
    options: replay.Options,
) -> replay.Metrics:
    """Replay the held-out runs seeded from the training workflows (and earlier held-out runs)."""
    book = priors.PriorBook()
    for workflow, group in groups.items():
        if workflow != held_out:
            for run in group:
                book.add_run(run, processes=False)
    total = replay.Metrics()
    for run in held_out_runs:
        total += replay.replay_run(run, factory, options, seeds=book.priors).metrics
        if mode is PriorMode.TOOL_AND_RUNS:
            book.add_run(run, tools=False)
    return total
