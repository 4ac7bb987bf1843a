"""``wfsched predict evaluate``: score memory predictors offline on recorded workflow runs.

Reads Nextflow trace files and WfFormat instances (directories are searched recursively for
``trace*.csv`` and ``*.json``), replays every run with each requested predictor under the
protocol of ``predictors.replay`` and prints a table (or JSON with ``--json``). This module is
the I/O shell: it reads files, resolves specs through ``scheduler.registry`` and formats output;
parsing and replay are pure code in ``predictors``.

Exit status: 0 on success, 2 on a bad spec, an unreadable file or a path without runs (one line
on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import csv
import json
import pathlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from predictors import allocation, base, grammar, lowo, replay, traces, variants
from scheduler import registry

USER_DEFAULT = "user-default"
"""The pseudo-spec of the no-prediction reference row (every task keeps its request)."""

ALL_SPECS = (USER_DEFAULT, "const0", "lr", "lr2", "mean", "ponder", "poly2", "envelope")
"""What ``--predictor all`` expands to: the baselines of memory-evaluation.md 9 and ours."""

_LABELS = {"const0": "const0 (max observed)"}

LOWO_FIXED = (USER_DEFAULT, "const0", "lr", "lr2", "ponder", "tovar")
"""Rows of ``--leave-one-workflow-out`` with published or fixed constants (``lr`` is Witt-LR
with the max-under-prediction offset)."""

LOWO_TUNED: dict[str, tuple[str, ...]] = {
    "wittlr": tuple(f"wittlr-offset={k}std" for k in (1, 2, 3)),
    "wittpct": tuple(f"wittpct({p})" for p in (90, 95, 99)),
    "envelope": tuple(f"envelope({k})" for k in ("0.5", "1", "1.5", "2", "3")),
    "steady": tuple(f"steady({k},{c})" for k in (1, 2, 3, 4) for c in ("0.5", "1")),
}
"""Rows of ``--leave-one-workflow-out`` whose parameter is chosen per held-out workflow from
these candidates (grids fixed before any held-out result was seen)."""

LOWO_REFERENCE = "ponder"
"""The row whose training failures bound the choice of the tuned rows."""

LOWO_PRIOR_ROWS = (
    ("envelope+tool", "envelope", lowo.PriorMode.TOOL),
    ("steady+tool", "steady", lowo.PriorMode.TOOL),
    ("steady+tool+runs", "steady", lowo.PriorMode.TOOL_AND_RUNS),
)
"""Rows that reuse a tuned row's choice and seed its predictors with priors."""


class UsageError(Exception):
    """A problem with the command line or its inputs, reported as one line with exit code 2."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Evaluation:
    """The replay of every run with one predictor."""

    spec: str
    results: list[replay.RunResult]

    @property
    def overall(self) -> replay.Metrics:
        """Totals over all runs (MAQ recomputed from the summed components)."""
        return sum((r.metrics for r in self.results), replay.Metrics())

    def as_dict(self, options: replay.Options) -> dict[str, Any]:
        """Return the JSON object of this predictor."""
        return {
            "predictor": self.spec,
            "workflows": {r.run: r.metrics.as_dict() for r in self.results},
            "overall": self.overall.as_dict(),
            "protocol": options.as_dict(),
        }


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``predict evaluate`` to the ``wfsched`` command line."""
    predict = subparsers.add_parser("predict", help="memory predictors (offline evaluation)")
    commands = predict.add_subparsers(dest="predict_command", metavar="SUBCOMMAND", required=True)
    parser = commands.add_parser(
        "evaluate",
        help="replay traces with memory predictors and report MAQ, wastage and failures",
        description=(
            "Replay Nextflow traces / WfFormat instances with memory predictors. Protocol: one "
            "predictor per process and run; decision at task start; history = same-process "
            "tasks completed by then; floor, cap at the request, round up to MiB; an attempt "
            "below the peak fails (costs allocation x runtime) and is retried at the request. "
            "GB = 1e9 bytes."
        ),
    )
    parser.add_argument("paths", nargs="+", metavar="TRACE_OR_DIR", type=pathlib.Path)
    parser.add_argument(
        "--predictor",
        action="append",
        metavar="SPEC",
        help=f"predictor spec (repeatable): {registry.predictor_syntax()}, with optional "
        f"-offset=<{'|'.join(grammar.OFFSET_FORMS)}>; {USER_DEFAULT!r} for the no-prediction "
        "row; 'all' for every baseline",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--decision", choices=list(replay.Decision), default="start")
    parser.add_argument("--retry", choices=list(replay.Retry), default="user")
    parser.add_argument("--floor-mib", type=float, default=128.0, help="allocation floor")
    parser.add_argument(
        "--floor-mib-per-cpu",
        type=float,
        default=0.0,
        help="allocation floor per requested CPU (trace column cpus; 0: none)",
    )
    parser.add_argument("--cap-mib", type=float, default=None, help="allocation cap")
    parser.add_argument(
        "--no-failure-feedback",
        action="store_true",
        help="do not feed OOM-killed attempts back to the predictors (CWS behaviour)",
    )
    parser.add_argument(
        "--default-request",
        metavar="SIZE",
        help="request for WfFormat tasks (e.g. '4 GB'); default: per-process power-of-two preset",
    )
    parser.add_argument(
        "--per-run", action="store_true", help="with several predictors, also one table per run"
    )
    parser.add_argument("--tasks-csv", metavar="FILE", type=pathlib.Path, help="per-task CSV")
    parser.add_argument(
        "--leave-one-workflow-out",
        action="store_true",
        help="hold out each workflow (the directory of its traces) in turn, choose tunable "
        "predictors' parameters on the others, score the held-out one; evaluates a fixed set "
        "of predictors (no --predictor)",
    )
    parser.add_argument(
        "--synthetic-production",
        action="store_true",
        help="replay production-like variants of the runs instead (requests ~2.6x peaks, large "
        "peaks, flat steps; predictors.variants); the report says what the variants achieved",
    )
    parser.add_argument(
        "--score-synthetic",
        action="store_true",
        help="with --leave-one-workflow-out: choose parameters on the runs as recorded, score "
        "the held-out workflow's production-like variants (tuned on test profiles, deployed on "
        "production)",
    )
    parser.add_argument(
        "--grow-in-place",
        action="store_true",
        help="grow a task below its peak in place instead of failing it (see --grow-delay-s, "
        "--grow-room)",
    )
    parser.add_argument(
        "--grow-delay-s",
        type=float,
        default=10.0,
        help="cost of one growth: seconds at the grown allocation (default 10)",
    )
    parser.add_argument(
        "--grow-from",
        type=float,
        default=0.5,
        help="fraction of a grown task's run time at which it is grown "
        "(default 0.5; 0 = at the start, pessimistic)",
    )
    parser.add_argument(
        "--grow-room",
        type=float,
        default=1.0,
        help="probability that the node has room to grow a task (default 1 = always)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``predict evaluate``; return the exit status."""
    if args.leave_one_workflow_out:
        return _run_lowo(args)
    try:
        if not args.predictor:
            raise UsageError("--predictor is required (or use --leave-one-workflow-out)")
        if args.score_synthetic:
            raise UsageError("--score-synthetic needs --leave-one-workflow-out")
        specs = _expand(args.predictor)
        factories = {spec: _factory(spec) for spec in specs}
        options = _options(args)
        runs = _maybe_synthetic(
            args, load_runs(args.paths, default_request=_size(args.default_request))
        )
    except (UsageError, grammar.SpecError) as error:
        print(f"wfsched predict evaluate: error: {error}", file=sys.stderr)
        return 2
    evaluations = [
        Evaluation(spec=spec, results=replay.replay_runs(runs, factory, options))
        for spec, factory in factories.items()
    ]
    if args.json:
        payload = [e.as_dict(options) for e in evaluations]
        print(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
    else:
        print(render_tables(evaluations, runs, options, per_run=args.per_run))
    if args.tasks_csv is not None:
        try:
            _write_tasks_csv(args.tasks_csv, evaluations)
        except OSError as error:
            print(f"wfsched predict evaluate: error: {args.tasks_csv}: {error}", file=sys.stderr)
            return 2
    return 0


def _run_lowo(args: argparse.Namespace) -> int:
    """Execute ``predict evaluate --leave-one-workflow-out``; return the exit status."""
    try:
        if args.predictor or args.tasks_csv or args.per_run:
            raise UsageError(
                "--leave-one-workflow-out evaluates a fixed set of predictors; drop --predictor, "
                "--per-run and --tasks-csv"
            )
        options = _options(args)
        if args.score_synthetic and args.synthetic_production:
            raise UsageError("use either --synthetic-production or --score-synthetic")
        recorded = load_runs(args.paths, default_request=_size(args.default_request))
        runs = _maybe_synthetic(args, recorded)
        scored = _synthetic(recorded) if args.score_synthetic else None
        report = lowo.evaluate(
            runs, lowo_rows(), reference=LOWO_REFERENCE, options=options, scored=scored
        )
    except (UsageError, ValueError) as error:
        print(f"wfsched predict evaluate: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(lowo_json(report, options), indent=2))
    else:
        print(render_lowo(report, runs, options))
    return 0


def _maybe_synthetic(args: argparse.Namespace, runs: list[traces.Run]) -> list[traces.Run]:
    """With ``--synthetic-production``, the runs' production-like variants (stats on stderr)."""
    return _synthetic(runs) if args.synthetic_production else runs


def _synthetic(runs: list[traces.Run]) -> list[traces.Run]:
    """The runs' production-like variants; what each achieved goes to stderr."""
    rewritten = []
    for run in runs:
        variant, stats = variants.production_variant(run)
        rewritten.append(variant)
        print(
            f"synthetic variant of {run.name}: request/peak {stats.request_ratio:.2f}, "
            f"p90 peak {stats.p90_peak / 1e9:.1f} GB, memory-time above 16 GB "
            f"{stats.heavy_share:.0%}, heavy steps {stats.heavy_steps}, flat steps "
            f"{stats.flat_steps}",
            file=sys.stderr,
        )
    return rewritten


def lowo_rows() -> list[lowo.Row]:
    """The rows of the leave-one-workflow-out report (fixed, tuned, with priors)."""
    rows = [
        lowo.Row(label=_LABELS.get(spec, spec), candidates=((spec, _factory(spec)),))
        for spec in LOWO_FIXED
    ]
    rows += [
        lowo.Row(label=name, candidates=tuple((c, _factory(c)) for c in grid))
        for name, grid in LOWO_TUNED.items()
    ]
    rows += [
        lowo.Row(
            label=label,
            candidates=tuple((c, _factory(c)) for c in LOWO_TUNED[base_row]),
            priors=mode,
            base=base_row,
        )
        for label, base_row, mode in LOWO_PRIOR_ROWS
    ]
    return rows


def lowo_json(report: lowo.Report, options: replay.Options) -> dict[str, Any]:
    """Return the JSON object of a leave-one-workflow-out report."""
    return {
        "protocol": {**options.as_dict(), "selection": lowo.select.__doc__, "runs": report.runs},
        "reference": report.reference,
        "workflows": list(report.workflows),
        "rows": [
            {
                "predictor": row.label,
                "priors": str(row.priors),
                "choices": row.choices,
                "per_workflow": {w: m.as_dict() for w, m in row.per_workflow.items()},
                "overall": row.overall.as_dict(),
            }
            for row in report.rows
        ],
    }


def render_lowo(report: lowo.Report, runs: Sequence[traces.Run], options: replay.Options) -> str:
    """Return the human-readable leave-one-workflow-out report."""
    held_out = ", ".join(f"{w} ({n} runs)" for w, n in report.runs.items())
    parts = [
        _protocol_line(options, runs),
        "leave one workflow out: each workflow is scored with parameters chosen on the others "
        f"(rule: min training wastage with training failures <= {report.reference}'s); "
        f"workflows: {held_out}",
    ]
    rows = [_row(r.label, r.overall) for r in report.rows]
    parts.append("overall (held-out scores)\n" + _table(["predictor", *_COLUMNS], rows))
    matrix = [
        [
            w,
            *(
                f"{r.per_workflow[w].wastage_gbh:.2f} ({r.per_workflow[w].failed_attempts})"
                for r in report.rows
            ),
        ]
        for w in report.workflows
    ]
    header = ["held out", *(r.label for r in report.rows)]
    parts.append("wastage GBh (failed attempts) per held-out workflow\n" + _table(header, matrix))
    quality = [[w, *(_maq_cold(r.per_workflow[w]) for r in report.rows)] for w in report.workflows]
    parts.append("MAQ / cold-start share per held-out workflow\n" + _table(header, quality))
    tuned = [r for r in report.rows if r.label in LOWO_TUNED]  # rows with priors reuse steady's
    if tuned:
        choice_rows = [[w, *(r.choices[w] for r in tuned)] for w in report.workflows]
        parts.append(
            "parameters chosen per held-out workflow\n"
            + _table(["held out", *(r.label for r in tuned)], choice_rows)
        )
    return "\n\n".join(parts)


def _maq_cold(metrics: replay.Metrics) -> str:
    d = metrics.as_dict()
    return f"{_fmt(d['maq'], '.3f')} / {_fmt(d['cold_start_share'], '.0%')}"


def _expand(specs: Sequence[str]) -> list[str]:
    expanded: list[str] = []
    for spec in specs:
        for item in ALL_SPECS if spec.strip().lower() == "all" else (spec,):
            if item not in expanded:
                expanded.append(item)
    return expanded


def _factory(spec: str) -> replay.PredictorFactory | None:
    if spec.strip().lower() == USER_DEFAULT:
        return None
    parsed = registry.parse_predictor(spec)
    for warning in parsed.warnings:
        print(f"wfsched predict evaluate: warning: {warning}", file=sys.stderr)
    return parsed.make


def _size(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        value = traces.parse_size(text)
    except ValueError as error:
        raise UsageError(f"--default-request: {error}") from error
    if not value:
        raise UsageError("--default-request must be > 0")
    return value


def _options(args: argparse.Namespace) -> replay.Options:
    if args.floor_mib < 0 or (args.cap_mib is not None and args.cap_mib <= 0):
        raise UsageError("--floor-mib must be >= 0 and --cap-mib > 0")
    if args.floor_mib_per_cpu < 0:
        raise UsageError("--floor-mib-per-cpu must be >= 0")
    if args.grow_delay_s < 0 or not 0 <= args.grow_room <= 1 or not 0 <= args.grow_from <= 1:
        raise UsageError("--grow-delay-s must be >= 0, --grow-room and --grow-from within 0..1")
    grow = (
        replay.GrowInPlace(
            delay_ms=args.grow_delay_s * 1000.0,
            grown_from=args.grow_from,
            room_probability=args.grow_room,
        )
        if args.grow_in_place
        else None
    )
    cap = None if args.cap_mib is None else round(args.cap_mib * base.MIB)
    return replay.Options(
        policy=allocation.AllocationPolicy(
            floor_bytes=round(args.floor_mib * base.MIB),
            cap_bytes=cap,
            floor_bytes_per_cpu=round(args.floor_mib_per_cpu * base.MIB),
        ),
        decision=replay.Decision(args.decision),
        retry=replay.Retry(args.retry),
        failure_feedback=not args.no_failure_feedback,
        grow=grow,
    )


def load_runs(paths: Sequence[pathlib.Path], *, default_request: int | None) -> list[traces.Run]:
    """Read every trace and instance under ``paths`` (files, or directories searched recursively).

    Raises:
        UsageError: A path that does not exist or holds no run, or a file that cannot be read.
    """
    files: list[pathlib.Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted({*path.rglob("trace*.csv"), *path.rglob("*.json")})
            if not found:
                raise UsageError(f"{path}: no trace*.csv or *.json file below this directory")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise UsageError(f"{path}: no such file or directory")
    runs = []
    for file in files:
        name = f"{file.parent.name}/{file.stem}" if file.suffix != ".json" else file.stem
        try:
            text = file.read_text(encoding="utf-8")
            if file.suffix == ".json":
                runs.append(traces.parse_wfformat(text, name=name, default_request=default_request))
            else:
                runs.append(traces.parse_nextflow_trace(text, name=name))
        except (OSError, UnicodeDecodeError, traces.TraceError) as error:
            raise UsageError(f"{file}: {error}") from error
    return runs


def _fmt(value: float | int | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


_COLUMNS = (
    "MAQ",
    "over GBh",
    "under GBh",
    "waste GBh",
    "fail",
    "tasks w/ fail",
    "tasks",
    "cold",
    "excl",
)


def _row(label: str, metrics: replay.Metrics) -> list[str]:
    d = metrics.as_dict()
    return [
        label,
        _fmt(d["maq"], ".3f"),
        _fmt(d["over_gbh"], ".3f"),
        _fmt(d["under_gbh"], ".3f"),
        _fmt(d["wastage_gbh"], ".3f"),
        _fmt(d["failures"], "d"),
        _fmt(d["tasks_with_failures"], "d"),
        _fmt(d["tasks"], "d"),
        _fmt(d["cold_start_share"], ".1%"),
        _fmt(d["excluded"], "d"),
    ]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    lines = [header, ["-" * w for w in widths], *rows]
    return "\n".join(
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    )


def render_tables(
    evaluations: Sequence[Evaluation],
    runs: Sequence[traces.Run],
    options: replay.Options,
    *,
    per_run: bool,
) -> str:
    """Return the human-readable report: per-run tables and/or the comparison table."""
    parts = [_protocol_line(options, runs)]
    if len(evaluations) == 1 or per_run:
        for evaluation in evaluations:
            rows = [_row(r.run, r.metrics) for r in evaluation.results]
            rows.append(_row("overall", evaluation.overall))
            parts.append(f"predictor: {evaluation.spec}\n" + _table(["run", *_COLUMNS], rows))
    if len(evaluations) > 1:
        rows = [_row(_LABELS.get(e.spec, e.spec), e.overall) for e in evaluations]
        parts.append(f"overall, {len(runs)} runs\n" + _table(["predictor", *_COLUMNS], rows))
        parts.append(_workflow_matrix(evaluations))
    return "\n\n".join(parts)


def _workflow_matrix(evaluations: Sequence[Evaluation]) -> str:
    """Wastage GB·h (failed attempts) per workflow (runs grouped by directory) and predictor."""
    groups: dict[str, list[int]] = {}
    for index, result in enumerate(evaluations[0].results):
        groups.setdefault(result.run.split("/")[0], []).append(index)
    rows = []
    for group, indices in groups.items():
        row = [group]
        for evaluation in evaluations:
            total = sum((evaluation.results[i].metrics for i in indices), replay.Metrics())
            row.append(f"{total.wastage_gbh:.2f} ({total.failed_attempts})")
        rows.append(row)
    header = ["workflow", *(e.spec for e in evaluations)]
    return "wastage GBh (failed attempts) per workflow\n" + _table(header, rows)


def _protocol_line(options: replay.Options, runs: Sequence[traces.Run]) -> str:
    counts: dict[str, int] = {}
    for r in runs:
        for reason, count in {**r.dropped, **r.notes}.items():
            counts[reason] = counts.get(reason, 0) + count
    policy = options.policy
    cap = "none" if policy.cap_bytes is None else f"{policy.cap_bytes / base.MIB:g} MiB"
    feedback = "on" if options.failure_feedback else "off"
    if options.grow is not None:
        feedback += (
            f", grow in place=on (doubling; delay {options.grow.delay_ms / 1000:g} s at the "
            f"grown allocation; growth at {options.grow.grown_from:g} of the run time; "
            f"room probability {options.grow.room_probability:g})"
        )
    notes = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "none"
    per_cpu = (
        f" (at least {policy.floor_bytes_per_cpu / base.MIB:g} MiB per requested CPU)"
        if policy.floor_bytes_per_cpu
        else ""
    )
    return (
        f"protocol: decision={options.decision}, floor={policy.floor_bytes / base.MIB:g} MiB"
        f"{per_cpu}, cap={cap}, retry={options.retry}, failure feedback={feedback}, "
        "x=rchar (traces) or input file sizes (WfFormat), y=peak_rss, GB=1e9 bytes\n"
        f"rows not replayed or adjusted: {notes}"
    )


def _write_tasks_csv(path: pathlib.Path, evaluations: Sequence[Evaluation]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "predictor",
                "run",
                "process",
                "task",
                "input_bytes",
                "peak_bytes",
                "request_bytes",
                "prediction_bytes",
                "allocation_bytes",
                "failed_attempts",
                "final_bytes",
                "realtime_ms",
            ]
        )
        for evaluation in evaluations:
            for result in evaluation.results:
                for o in result.outcomes:
                    writer.writerow(
                        [
                            evaluation.spec,
                            result.run,
                            o.task.process,
                            o.task.name,
                            o.task.input_bytes,
                            o.task.peak_bytes,
                            o.task.request_bytes,
                            o.prediction,
                            o.allocation,
                            len(o.failed),
                            o.final,
                            o.task.realtime_ms,
                        ]
                    )
