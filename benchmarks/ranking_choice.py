"""Which ranking to run, chosen leaving one workflow out, from the simulator.

python benchmarks/ranking_choice.py [--workflows rnaseq,...] [--trace 1] [--earlier-trace 2 |
--first-run] [--time-scale 0.06 --min-runtime 3] [--nodes 4 --node-cpu 32 --node-memory 128Gi]
[--rankings rank,rank_min,...] [--runtime-jitter 0.3] [--seeds 4] [--json-out scores.json]
[--from-json scores.json]

For each workflow of ``../shared/data/nfcore-traces`` (every directory holding the trace, by
name, or ``--workflows``) the simulator runs ``trace-<N>.csv`` as
``benchmarks/makespan.py`` replays it (same plan, scale, floor and cluster) under its model of
kube-scheduler and under every candidate ranking (``roundrobin`` placement, no memory
prediction). Unless ``--first-run``, each ranking starts with what an earlier trace of the same
workflow taught (``--earlier-trace``), as the replay's ``+earlier`` set-ups do. Every run is
repeated over ``--seeds`` instances whose runtimes are lengthened by a seeded uniform draw from
``[0, --runtime-jitter]`` (``simulate.with_runtime_jitter``): in a replay the tasks of one release
do not end at one instant, and an order that only pays when they do should not be chosen.

A ranking's score on a workflow is the geometric mean over the seeds of its makespan over the
kube-scheduler model's on the same instance. Then, for each workflow in turn, the ranking with
the lowest geometric mean over the *other* workflows is chosen and scored on the held-out one, so
no choice sees the workflow it is scored on. Printed: the scores (Markdown), the choice per
held-out workflow, and the geometric mean of the held-out scores. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from scheduler import registry
from scheduler.core import resources
from scheduler.devtools import nftrace, replay, runstats, simulate

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nfcore-traces"
LEFT_OUT_RANKINGS = ("random",)
"""Candidates by default: every registered ranking but these (a fresh shuffle every cycle is not
an order anyone would choose to run)."""

Scores = dict[str, dict[str, list[float]]]
"""Per workflow, per ranking: the makespan over the kube-scheduler model's, one per seed."""


@dataclass(frozen=True, slots=True)
class Choice:
    """The ranking chosen for one held-out workflow.

    Attributes:
        held_out: The workflow the choice is scored on and did not see.
        ranking: The ranking with the lowest geometric mean over the other workflows.
        on_others: That geometric mean.
        on_held_out: The chosen ranking's score on the held-out workflow.
        best_on_held_out: The ranking that would have been best on the held-out workflow
            (hindsight, for comparison only).
    """

    held_out: str
    ranking: str
    on_others: float
    on_held_out: float
    best_on_held_out: str


def workflows_with_trace(data: Path, trace: int) -> list[str]:
    """The directories of ``data`` that hold ``trace-<trace>.csv``, by name (none if ``data``
    is not a directory)."""
    if not data.is_dir():
        return []
    return sorted(p.name for p in data.iterdir() if (p / f"trace-{trace}.csv").is_file())


def read_scores(path: Path) -> Scores:
    """The scores a ``--json-out`` wrote.

    Raises:
        OSError: If ``path`` cannot be read.
        ValueError: If it is not JSON of workflow -> ranking -> non-empty list of positive ratios.
    """
    document = json.loads(path.read_text(encoding="utf-8"))
    valid = isinstance(document, dict) and all(
        isinstance(row, dict)
        and all(
            isinstance(ratios, list)
            and ratios
            and all(isinstance(r, int | float) and r > 0 for r in ratios)
            for ratios in row.values()
        )
        for row in document.values()
    )
    if not valid:
        raise ValueError("not scores of --json-out (workflow -> ranking -> list of ratios)")
    return {
        workflow: {ranking: [float(r) for r in ratios] for ranking, ratios in row.items()}
        for workflow, row in document.items()
    }


def workflow_scores(scores: Scores) -> dict[str, dict[str, float]]:
    """Per workflow and ranking, the geometric mean of the per-seed ratios."""
    return {
        workflow: {ranking: runstats.geometric_mean(ratios) for ranking, ratios in row.items()}
        for workflow, row in scores.items()
    }


def leave_one_out(scores: Mapping[str, Mapping[str, float]]) -> list[Choice]:
    """For each workflow of ``scores``, the ranking chosen on all the others and its score.

    Every workflow must score the same rankings. Ties go to the ranking listed first.

    Raises:
        ValueError: With fewer than two workflows, or if the workflows score different rankings.
    """
    workflows = list(scores)
    if len(workflows) < 2:
        raise ValueError("leaving one workflow out needs at least two workflows")
    rankings = list(scores[workflows[0]])
    if any(list(scores[workflow]) != rankings for workflow in workflows):
        raise ValueError("every workflow must score the same rankings")
    choices = []
    for held_out in workflows:
        others = [workflow for workflow in workflows if workflow != held_out]
        on_others = {
            ranking: runstats.geometric_mean([scores[w][ranking] for w in others])
            for ranking in rankings
        }
        chosen = min(rankings, key=on_others.__getitem__)
        held = scores[held_out]
        choices.append(
            Choice(
                held_out=held_out,
                ranking=chosen,
                on_others=on_others[chosen],
                on_held_out=held[chosen],
                best_on_held_out=min(rankings, key=held.__getitem__),
            )
        )
    return choices


def simulate_scores(args: argparse.Namespace, rankings: Sequence[str]) -> Scores:
    """Run the simulator for every workflow, seed and ranking (see the module docstring)."""
    spec = simulate.ClusterSpec(
        nodes=args.nodes,
        node_cpu_millis=resources.cpu_millis(args.node_cpu),
        node_memory_bytes=resources.integer_value(args.node_memory),
    )

    def instance(name: str, trace: int) -> simulate.Instance:
        return replay.simulation_instance(
            nftrace.load_trace(args.data / name / f"trace-{trace}.csv"),
            time_scale=args.time_scale,
            min_runtime_s=args.min_runtime,
            cluster=spec,
        )

    scores: Scores = {}
    for index, name in enumerate(args.workflows, start=1):
        recorded = instance(name, args.trace)
        earlier = None if args.first_run else simulate.earlier_runs(instance(name, args.earlier))
        row: dict[str, list[float]] = {ranking: [] for ranking in rankings}
        for seed in range(args.seeds):
            jittered = simulate.with_runtime_jitter(
                recorded, jitter_s=args.runtime_jitter, seed=seed
            )
            kube = simulate.simulate_kube_scheduler(jittered, cluster_spec=spec).makespan_s
            for ranking in rankings:
                result = simulate.simulate(
                    jittered,
                    strategy=registry.PolicySpec(ranking=ranking, assignment=args.assignment),
                    cluster_spec=spec,
                    earlier=earlier,
                )
                row[ranking].append(result.makespan_s / kube)
            print(f"[{index}/{len(args.workflows)}] {name}: seed {seed} done", file=sys.stderr)
        scores[f"{name}/trace-{args.trace}"] = row
    return scores


def score_table(scores: Mapping[str, Mapping[str, float]]) -> str:
    """Markdown: per workflow each ranking's score, then the geometric mean per ranking."""
    rankings = list(next(iter(scores.values())))
    lines = [
        "| workflow | " + " | ".join(f"`{ranking}`" for ranking in rankings) + " |",
        "|---|" + "---:|" * len(rankings),
    ]
    for workflow, row in scores.items():
        lines.append(f"| {workflow} | " + " | ".join(f"{row[r]:.3f}" for r in rankings) + " |")
    means = [runstats.geometric_mean([row[r] for row in scores.values()]) for r in rankings]
    lines.append("| **geometric mean** | " + " | ".join(f"**{m:.3f}**" for m in means) + " |")
    return "\n".join(lines)


def choice_table(choices: Sequence[Choice]) -> str:
    """Markdown: per held-out workflow the ranking chosen on the others and its scores, then the
    geometric mean of the held-out scores (the figure to report)."""
    lines = [
        "| held-out workflow | chosen on the others | its score on the others "
        "| its score on the held-out | best on the held-out (hindsight) |",
        "|---|---|---:|---:|---|",
    ]
    for choice in choices:
        lines.append(
            f"| {choice.held_out} | `{choice.ranking}` | {choice.on_others:.3f} "
            f"| {choice.on_held_out:.3f} | `{choice.best_on_held_out}` |"
        )
    mean = runstats.geometric_mean([choice.on_held_out for choice in choices])
    lines.append(f"| **geometric mean, held out** | | | **{mean:.3f}** | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run (or reprint with ``--from-json``) the choice; exit status 0, 2 on bad options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument(
        "--workflows",
        default=None,
        help="comma list (default: every directory of --data that holds the trace, by name)",
    )
    parser.add_argument("--trace", type=int, default=1, help="which trace-<N>.csv (default 1)")
    parser.add_argument(
        "--earlier-trace",
        dest="earlier",
        type=int,
        default=2,
        help="the earlier run every ranking starts with (default trace-2)",
    )
    parser.add_argument(
        "--first-run", action="store_true", help="no earlier run: the workflow's first run"
    )
    parser.add_argument("--time-scale", type=float, default=0.06)
    parser.add_argument("--min-runtime", type=float, default=3.0)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--node-cpu", default="32")
    parser.add_argument("--node-memory", default="128Gi")
    parser.add_argument("--assignment", default=registry.DEFAULT_ASSIGNMENT)
    parser.add_argument(
        "--rankings", default=None, help="comma list (default: every registered but random)"
    )
    parser.add_argument(
        "--runtime-jitter",
        type=float,
        default=0.3,
        metavar="SECONDS",
        help="each runtime lengthened by a uniform draw from [0, SECONDS] (default 0.3: about "
        "the spread of the bind times of one release in the replay)",
    )
    parser.add_argument("--seeds", type=int, default=4, help="jittered instances per workflow")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--from-json", type=Path, help="reprint the tables of a --json-out")
    args = parser.parse_args(argv)
    if args.from_json:
        try:
            scores = read_scores(args.from_json)
        except (OSError, ValueError) as exc:
            parser.error(f"--from-json {args.from_json}: {exc}")
    else:
        args.workflows = (
            [name for name in args.workflows.split(",") if name]
            if args.workflows is not None
            else workflows_with_trace(args.data, args.trace)
        )
        if not args.workflows:
            parser.error(f"no workflow under {args.data} holds trace-{args.trace}.csv")
        if args.seeds < 1:
            parser.error("--seeds must be at least 1")
        if not math.isfinite(args.runtime_jitter) or args.runtime_jitter < 0:
            parser.error("--runtime-jitter must be a number of seconds >= 0")
        if not args.first_run and args.earlier == args.trace:
            parser.error("--earlier-trace must name another trace than --trace")
        try:
            names = (
                [registry.ranking(name).name for name in args.rankings.split(",")]
                if args.rankings
                else [name for name in registry.RANKINGS if name not in LEFT_OUT_RANKINGS]
            )
            args.assignment = registry.assignment(args.assignment).name
        except registry.UnknownPolicyError as exc:
            parser.error(str(exc))
        missing = [
            path
            for name in args.workflows
            for trace in ([args.trace] if args.first_run else [args.trace, args.earlier])
            if not (path := args.data / name / f"trace-{trace}.csv").is_file()
        ]
        if missing:
            parser.error(f"no such trace: {', '.join(str(path) for path in missing)}")
        scores = simulate_scores(args, names)
        if args.json_out:
            args.json_out.write_text(json.dumps(scores, indent=1) + "\n", encoding="utf-8")
    per_workflow = workflow_scores(scores)
    print(score_table(per_workflow))
    print()
    try:
        print(choice_table(leave_one_out(per_workflow)))
    except ValueError as exc:
        print(f"ranking_choice: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
