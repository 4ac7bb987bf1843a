"""Makespan and memory of real nf-core runs: wfsched versus kube-scheduler, side by side.

    python -m benchmarks.makespan [--workflows sarek,...] [--trace 1]
        [--time-scale 0.02 --min-runtime 1] [--nodes 8 --node-cpu 32 --node-memory 128Gi]
        [--rankings fifo,rank_min,critical_path] [--best-predictor envelope]
        [--predictors none,ponder,envelope] [--min-memory 1Gi] [--floors-per-cpu 0,1Gi]
        [--shrink-running] [--tool-priors [only]] [--earlier-run [only] --earlier-trace 2]
        [--settle [only]] [--kwok-workers 16]
        [--json-out results.json] [--report-dir reports/]

For each workflow of ``../shared/data/nfcore-traces`` (its ``trace-<N>.csv`` and ``dag.html``),
one after another on one KWOK cluster: kube-scheduler, then wfsched with every ranking, each
without memory prediction, with ``ponder`` and with ``--best-predictor``. Each wfsched run gets
a fresh daemon, a fresh namespace, its own workflow name and its own memory store, so no run
learns from another. Tasks are replayed by ``scheduler.devtools.replay`` (the fake kubelet
memory model ``memsim`` OOM-kills attempts below their peak, nf-core retries them, peaks are
reported on success). Per run: makespan, memory allocated and wasted (GiB-hours of trace time),
failed attempts, mean CPU and memory utilisation of the nodes
(``scheduler.devtools.runstats``), and how busy the machine was during the replay (mean cores
per process group and saturated seconds, ``scheduler.devtools.hostload``); then the ratios to
kube-scheduler per workflow and their geometric mean over workflows, as a Markdown table.
Progress goes to stderr.

With several ``--floors-per-cpu``, every set-up with a predictor runs once per floor (the
daemon's ``min_memory_per_cpu_bytes``), and a leave-one-workflow-out table chooses the floor on
the other workflows' runs and scores it on the held-out one (:func:`lowo_floor_table`).
With ``--shrink-running``, every set-up with ``--best-predictor`` also runs with the daemon's
``shrink_running`` on (label ``+shrink``): running tasks that started before their step could be
planned are lowered to the plan once a task of the step has finished. With ``--tool-priors``,
every set-up with ``--best-predictor`` also runs (``--tool-priors only``: runs only) with its
memory store seeded with the peaks of every trace of the *other* workflows (label ``+priors``):
what a cluster that ran those pipelines before would hold, so a step whose tool it saw
elsewhere is not a cold start
(:func:`prior_store`; the held-out workflow never seeds itself). With ``--earlier-run``, every
set-up whose ranking reads the DAG also runs (``only``: runs only) with the daemon's workflow
history seeded from another trace of the same workflow (``--earlier-trace``, label
``+earlier``): the step runtimes and step edges a daemon keeps after running that pipeline
once (:func:`history_store`), no memory peaks. That is the case of a workflow run again.
With ``--settle``, every set-up without prediction whose ranking does not order by arrival
also runs (``only``: runs only) with the daemon waiting for a release to settle before a cycle
(``arrival_settle_s`` :data:`SETTLE_S`, label ``+settle``) instead of deciding as pods arrive;
the simulator tables leave those runs out.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from predictors import traces
from scheduler import registry
from scheduler.core import interfaces, resources
from scheduler.devtools import devcluster, hostload, nftrace, replay, report, runstats, simulate
from scheduler.runtime import history, memory

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nfcore-traces"
WORKFLOWS = (  # fewest tasks first (trace-1), so a cut-short run covers the most workflows
    "sarek",
    "ampliseq",
    "rnaseq",
    "atacseq",
    "chipseq",
    "nanoseq",
    "eager",
    "viralrecon",
    "mag",
)
KUBE = "kube-scheduler"
TIE = 0.02
"""Makespans within 2 % of each other are a tie: sarek, bound by one long task in every set-up,
spreads that much between runs of the same code on an idle machine."""


@dataclass(frozen=True, slots=True)
class Config:
    """One scheduler set-up: kube-scheduler, or a wfsched policy with an optional predictor."""

    label: str
    policy: str | None = None
    predictor: str = ""
    floor_per_cpu: int = 0
    """The daemon's ``min_memory_per_cpu_bytes`` (only with a predictor)."""
    shrink_running: bool = False
    """The daemon's ``shrink_running`` (only with a predictor)."""
    tool_priors: bool = False
    """Seed the daemon's memory store with the other workflows' peaks (:func:`prior_store`)."""
    earlier_run: bool = False
    """Seed the daemon's workflow history with an earlier run of the same workflow
    (:func:`history_store`): its step runtimes and step edges."""
    settle: bool = False
    """The daemon waits for a release to settle (``arrival_settle_s`` :data:`SETTLE_S`)."""


FLOOR_MARK = "+floor "
SHRINK_MARK = "+shrink"
PRIORS_MARK = "+priors"
EARLIER_MARK = "+earlier"
SETTLE_MARK = "+settle"
SETTLE_S = 0.05
"""The daemon's ``arrival_settle_s`` in ``+settle`` set-ups."""


def floor_label(floor_per_cpu: int) -> str:
    """``+floor 1Gi/cpu`` style suffix of a set-up's label (empty for no floor)."""
    if not floor_per_cpu:
        return ""
    for unit, size in (("Gi", 1 << 30), ("Mi", 1 << 20)):
        if floor_per_cpu % size == 0:
            return f"{FLOOR_MARK}{floor_per_cpu // size}{unit}/cpu"
    return f"{FLOOR_MARK}{floor_per_cpu}/cpu"


def configs(
    rankings: Sequence[str],
    assignment: str,
    best: str,
    predictors: Sequence[str] = (),
    floors_per_cpu: Sequence[int] = (0,),
    shrink_running: Sequence[bool] = (False,),
    tool_priors: Sequence[bool] = (False,),
    earlier_run: Sequence[bool] = (False,),
    settle: Sequence[bool] = (False,),
) -> list[Config]:
    """kube-scheduler, then each ranking with each of ``predictors`` ("none": no prediction;
    by default without prediction, with ponder and with ``best``); ``best`` once per floor in
    ``floors_per_cpu``, per ``shrink_running`` and per ``tool_priors`` setting, the others
    (ponder: as CWS ships it) without a floor per CPU, shrinking or priors. Every set-up of a
    ranking that reads the DAG runs once per ``earlier_run`` setting (``fifo``, ``random``,
    ``max``, ``min``: without an earlier run only, which would not change their order).
    Every set-up without prediction of a ranking that does not order by arrival runs once per
    ``settle`` setting (the daemon waiting for a release to settle; ``fifo`` never waits)."""
    chosen = [("" if p == "none" else p) for p in predictors] or ["", "ponder", best]
    result = [Config(KUBE)]
    for ranking in rankings:
        policy = f"{ranking}-{assignment}"
        reads_dag = _reads_dag(registry.ranking(ranking).make(None))
        histories = dict.fromkeys(earlier_run if reads_dag else (False,))
        waits = not interfaces.orders_by_arrival(registry.ranking(ranking).make(None))
        timings = dict.fromkeys(settle if waits else (False,))
        for predictor in dict.fromkeys(chosen):
            if not predictor:
                for earlier, settled in itertools.product(histories, timings):
                    label = (
                        f"{policy}{EARLIER_MARK if earlier else ''}{SETTLE_MARK if settled else ''}"
                    )
                    result.append(Config(label, policy, earlier_run=earlier, settle=settled))
                continue
            variants = itertools.product(
                dict.fromkeys(floors_per_cpu if predictor == best else (0,)),
                dict.fromkeys(shrink_running if predictor == best else (False,)),
                dict.fromkeys(tool_priors if predictor == best else (False,)),
                histories,
            )
            for floor, shrink, seeded, earlier in variants:
                label = (
                    f"{policy}+{predictor}{floor_label(floor)}"
                    f"{SHRINK_MARK if shrink else ''}{PRIORS_MARK if seeded else ''}"
                    f"{EARLIER_MARK if earlier else ''}"
                )
                result.append(Config(label, policy, predictor, floor, shrink, seeded, earlier))
    return result


def _reads_dag(policy: interfaces.RankingPolicy) -> bool:
    """Whether a ranking's order can depend on the DAG: it declares what of the DAG its keys
    read (``random``, a fresh shuffle every cycle, declares nothing and reads nothing)."""
    depends = getattr(policy, "key_dependencies", interfaces.KeyDependency.NONE)
    return bool(depends != interfaces.KeyDependency.NONE)


DAEMON_NAMESPACE = "kube-system"
"""Where a benchmark daemon keeps its memory store (its lease namespace; leases are off)."""


def prior_store(predictor: str, data: Path, workflows: Sequence[str]) -> str:
    """A memory store holding every peak of every trace of ``workflows``, as JSON.

    Each workflow's steps are kept under that workflow's name, with the tool (process short name
    and container image) its trace recorded: what the daemon would have learned from running
    those pipelines. The daemon seeds a step it has never seen from them (tool priors).
    """
    model = memory.MemoryModel(registry.parse_predictor(predictor))
    for name in workflows:
        for path in sorted((data / name).glob("trace-*.csv")):
            run = traces.parse_nextflow_trace(path.read_text(encoding="utf-8"), name=name)
            for task in run.tasks:
                if task.peak_bytes is None or task.input_bytes is None:
                    continue
                key = (name, task.process)
                model.set_image(key, task.container, task.process)
                model.observe(key, float(task.input_bytes), float(task.peak_bytes))
    return model.export()


def history_store(trace: nftrace.TraceWorkflow, args: argparse.Namespace, workflow: str) -> str:
    """A workflow history holding what a run of ``trace`` taught, under the name ``workflow``.

    The step runtimes are the replay's (scaled and floored as this benchmark replays them),
    the step edges those its tasks showed, both under the steps' label values (the daemon's
    names for them): what the daemon keeps after replaying ``trace``.
    """
    instance = replay.ReplayPlan.from_trace(
        trace,
        scheduler_name="-",
        time_scale=args.time_scale,
        min_runtime_s=args.min_runtime,
    ).to_instance()
    return simulate.workflow_history(instance, workflow, replay.step_label).export()


def _earlier_trace(trace: nftrace.TraceWorkflow, args: argparse.Namespace) -> nftrace.TraceWorkflow:
    """Another trace of ``trace``'s workflow (``--earlier-trace``): the run before this one."""
    name = trace.name.split("/")[0]
    return nftrace.load_trace(args.data / name / f"trace-{args.earlier_trace}.csv")


def _namespace(cluster: devcluster.DevCluster) -> str:
    namespace = f"mk-{uuid.uuid4().hex[:8]}"
    cluster.admin().apply(
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
    )
    return namespace


def run_one(
    cluster: devcluster.DevCluster,
    api: Any,
    workdir: Path,
    trace: nftrace.TraceWorkflow,
    config: Config,
    args: argparse.Namespace,
    shape: runstats.ClusterShape,
) -> dict[str, Any]:
    """Replay ``trace`` under ``config``; return its figures and attempts (JSON-ready)."""
    namespace = _namespace(cluster)
    tag = uuid.uuid4().hex[:6]
    plan = replay.ReplayPlan.from_trace(
        trace,
        scheduler_name="default-scheduler" if config.policy is None else "workflow-scheduler",
        time_scale=args.time_scale,
        min_runtime_s=args.min_runtime,
        workflow_name=f"{trace.name.split('/')[0]}-{tag}",
        max_cpu_millis=shape.cpu_millis,
        max_memory_bytes=shape.memory_bytes,
        max_retries=args.max_retries,
    )
    daemon = None
    if config.policy is not None:
        store: dict[str, str] = {}
        if config.tool_priors:
            held_out = trace.name.split("/")[0]
            others = sorted(
                p.name for p in args.data.iterdir() if p.is_dir() and p.name != held_out
            )
            store[memory.STORE_KEY] = prior_store(config.predictor, args.data, others)
        if config.earlier_run:
            store[history.HISTORY_KEY] = history_store(
                _earlier_trace(trace, args), args, plan.workflow
            )
        if store:
            api.put_configmap(
                DAEMON_NAMESPACE,
                f"wfsched-memory-{tag}",
                store,
                labels={
                    "app.kubernetes.io/name": "wfsched",
                    "app.kubernetes.io/component": "memory",
                },
            )
        daemon = devcluster.LocalDaemon(
            cluster.kubeconfig,
            workdir,
            policy=config.policy,
            predictor=config.predictor,
            namespaces=[namespace],
            lease={"enabled": False},
            memory_store_configmap=f"wfsched-memory-{tag}",
            **({"min_memory_bytes": args.min_memory_bytes} if args.min_memory_bytes else {}),
            **({"min_memory_per_cpu_bytes": config.floor_per_cpu} if config.floor_per_cpu else {}),
            **({"shrink_running": True} if config.shrink_running else {}),
            **({"arrival_settle_s": SETTLE_S} if config.settle else {}),
        )
        daemon.start()
    started = time.monotonic()

    def show(progress: replay.ReplayProgress) -> None:
        failed = progress.failed
        print(
            f"\r  {config.label:<36} {progress.succeeded:>5}/{progress.total} done, "
            f"{failed} failed attempts, {time.monotonic() - started:6.1f}s",
            end="",
            file=sys.stderr,
            flush=True,
        )

    error = ""
    sampler = hostload.HostLoadSampler()
    try:
        with (
            sampler,
            replay.memory_simulator(api, namespace, report_usage=False),  # no metrics-server
        ):
            progress = replay.Replayer(plan, api, namespace=namespace).run(
                timeout_s=args.timeout, on_progress=show
            )
        makespan = progress.makespan_s or 0.0
    except (TimeoutError, RuntimeError) as exc:
        error = str(exc)
        progress = replay.ReplayProgress(total=len(plan.tasks))
        makespan = float("nan")
    finally:
        if daemon is not None:
            daemon.stop()
    print(file=sys.stderr)
    stats = runstats.run_stats(
        progress.attempts, makespan_s=makespan, time_scale=args.time_scale, cluster=shape
    )
    return {
        "workflow": trace.name,
        "config": config.label,
        "policy": config.policy,
        "predictor": config.predictor,
        "floor_per_cpu": config.floor_per_cpu,
        "shrink_running": config.shrink_running,
        "tool_priors": config.tool_priors,
        "earlier_run": config.earlier_run,
        "settle": config.settle,
        "error": error,
        "stats": stats.to_json(),
        "host_load": sampler.result().to_json(),
        "attempts": [report.attempt_json(a) for a in progress.attempts],
    }


def runs_by_workflow(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """The runs grouped by workflow, then by set-up label, in the order they were run."""
    by_workflow: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_workflow.setdefault(row["workflow"], {})[row["config"]] = row
    return by_workflow


def ratio_table(rows: Sequence[dict[str, Any]], labels: Sequence[str]) -> str:
    """Markdown: per workflow the makespan ratio to kube-scheduler, then the geometric mean."""
    by_workflow = runs_by_workflow(rows)
    lines = [
        "| workflow | kube-scheduler makespan (s) | "
        + " | ".join(label for label in labels if label != KUBE)
        + " |",
        "|---|---:|" + "---:|" * (len(labels) - 1),
    ]
    ratios: dict[str, list[float]] = {label: [] for label in labels}
    for workflow, cells in by_workflow.items():
        base = cells.get(KUBE, {}).get("stats", {}).get("makespan_s", float("nan"))
        parts = [workflow, f"{base:.1f}"]
        for label in labels:
            if label == KUBE:
                continue
            value = cells.get(label, {}).get("stats", {}).get("makespan_s", float("nan"))
            ratio = value / base if base and base == base and value == value else float("nan")
            if ratio == ratio:
                ratios[label].append(ratio)
            parts.append(f"{ratio:.2f}")
        lines.append("| " + " | ".join(parts) + " |")
    means = [f"{runstats.geometric_mean(ratios[label]):.2f}" for label in labels if label != KUBE]
    lines.append("| **geometric mean** | | " + " | ".join(means) + " |")
    return "\n".join(lines)


def setup_table(rows: Sequence[dict[str, Any]], labels: Sequence[str]) -> str:
    """Markdown: per set-up, over the workflows that have a kube-scheduler run, the geometric
    mean and the worst of the makespan ratios, how many workflows it lost (ratio above 1 + TIE),
    the failed attempts, and the summed allocated and wasted GiBh over kube-scheduler's."""
    by_workflow = runs_by_workflow(rows)
    lines = [
        "| set-up | makespan / kube-scheduler (geometric mean) | worst workflow | workflows lost "
        "| failed attempts | allocated / kube-scheduler | wasted / kube-scheduler |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label in labels:
        if label == KUBE:
            continue
        ratios: list[float] = []
        failed = 0
        totals = {"allocated_gibh": [0.0, 0.0], "wasted_gibh": [0.0, 0.0]}
        for cells in by_workflow.values():
            if KUBE not in cells or label not in cells:
                continue
            base, stats = cells[KUBE]["stats"], cells[label]["stats"]
            ratios.append(stats["makespan_s"] / base["makespan_s"])
            failed += stats["failed_attempts"]
            for key, pair in totals.items():
                pair[0] += stats[key]
                pair[1] += base[key]
        if not ratios:
            continue
        lost = sum(1 for ratio in ratios if ratio > 1 + TIE)
        shares = [f"{used / base:.2f}" if base else "-" for used, base in totals.values()]
        lines.append(
            f"| {label} | {runstats.geometric_mean(ratios):.2f} | {max(ratios):.2f} "
            f"| {lost} of {len(ratios)} | {failed} | {shares[0]} | {shares[1]} |"
        )
    return "\n".join(lines)


def detail_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown: every run's figures."""
    lines = [
        "| workflow | scheduler | makespan (s) | allocated (GiBh) | wasted (GiBh) "
        "| failed attempts | CPU util | memory util |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        s = row["stats"]
        note = " (failed: see errors)" if row["error"] else ""
        lines.append(
            f"| {row['workflow']} | {row['config']}{note} | {s['makespan_s']:.1f} "
            f"| {s['allocated_gibh']:.2f} | {s['wasted_gibh']:.2f} | {s['failed_attempts']} "
            f"| {s['cpu_utilisation']:.0%} | {s['memory_utilisation']:.0%} |"
        )
    return "\n".join(lines)


def _trace(workflow: str, args: argparse.Namespace) -> nftrace.TraceWorkflow:
    """The trace a result row's ``workflow`` (``<pipeline>/trace-<N>``) names."""
    name, number = workflow.split("/")
    return nftrace.load_trace(args.data / name / f"{number}.csv")


def _simulation(
    workflow: str, args: argparse.Namespace, shape: runstats.ClusterShape
) -> tuple[simulate.Instance, simulate.ClusterSpec]:
    """The simulator instance of ``workflow``'s replay plan and the cluster it ran on."""
    spec = simulate.ClusterSpec(
        nodes=shape.nodes, node_cpu_millis=shape.cpu_millis, node_memory_bytes=shape.memory_bytes
    )
    instance = replay.simulation_instance(
        _trace(workflow, args),
        time_scale=args.time_scale,
        min_runtime_s=args.min_runtime,
        cluster=spec,
    )
    return instance, spec


def _plan_runtimes(workflow: str, args: argparse.Namespace) -> dict[str, float]:
    plan = replay.ReplayPlan.from_trace(
        _trace(workflow, args),
        scheduler_name="-",
        time_scale=args.time_scale,
        min_runtime_s=args.min_runtime,
    )
    return {task.id: task.runtime_s for task in plan.tasks}


def lag_table(rows: Sequence[dict[str, Any]], args: argparse.Namespace) -> str:
    """Markdown: per run, the mean wait (pod created to bound) and the mean lag of a task
    (bound to seen finished, minus its planned runtime: KWOK's start and the replay's polling),
    against the mean planned runtime. The lag is the overhead every task pays."""
    lines = [
        "| workflow | scheduler | mean planned runtime (s) | mean wait (s) | mean lag (s) |",
        "|---|---|---:|---:|---:|",
    ]
    runtimes: dict[str, dict[str, float]] = {}
    for row in rows:
        if row["workflow"] not in runtimes:
            runtimes[row["workflow"]] = _plan_runtimes(row["workflow"], args)
        planned = runtimes[row["workflow"]]
        done = [a for a in row["attempts"] if a["outcome"] == "succeeded"]
        if not done:
            continue
        waits = [a["bound"] - a["created"] for a in done]
        lags = [a["finished"] - a["bound"] - planned[a["task"]] for a in done]
        mean_runtime = sum(planned[a["task"]] for a in done) / len(done)
        lines.append(
            f"| {row['workflow']} | {row['config']} | {mean_runtime:.2f} "
            f"| {sum(waits) / len(waits):.2f} | {sum(lags) / len(lags):.2f} |"
        )
    return "\n".join(lines)


VARIANTS: dict[str | None, tuple[bool, ...]] = {
    None: (False,),
    "both": (False, True),
    "only": (True,),
}
"""Which runs an optional variant adds: none, each set-up with and without it, or only with."""


def _variant_option(parser: argparse.ArgumentParser, flag: str, which: str, what: str) -> None:
    """``FLAG [both|only]``: run ``which`` also ('both', the bare flag) or only with ``what``."""
    parser.add_argument(
        flag,
        nargs="?",
        const="both",
        choices=("both", "only"),
        help=f"run {which} also ('both') or only ('only') with {what}",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--workflows", default=",".join(WORKFLOWS))
    parser.add_argument("--trace", type=int, default=1, help="which trace-<N>.csv (default 1)")
    parser.add_argument("--time-scale", type=float, default=0.02)
    parser.add_argument("--min-runtime", type=float, default=1.0)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--node-cpu", default="32")
    parser.add_argument("--node-memory", default="128Gi")
    parser.add_argument("--rankings", default="fifo,rank_min,critical_path")
    parser.add_argument("--assignment", default="roundrobin")
    parser.add_argument("--best-predictor", default="envelope")
    parser.add_argument(
        "--predictors",
        default="",
        help="comma list of predictors per ranking, 'none' for none "
        "(default: none,ponder,<best-predictor>)",
    )
    parser.add_argument(
        "--min-memory",
        dest="min_memory_bytes",
        type=resources.integer_value,
        default=0,
        help="the daemon's smallest memory plan (min_memory_bytes; default: the daemon's, 128Mi)",
    )
    parser.add_argument(
        "--floors-per-cpu",
        default="0",
        help="comma list of the daemon's min_memory_per_cpu_bytes (e.g. 0,512Mi,1Gi); each "
        "set-up with --best-predictor runs once per floor",
    )
    parser.add_argument(
        "--shrink-running",
        action="store_true",
        help="run each set-up with --best-predictor also with the daemon's shrink_running on",
    )
    _variant_option(
        parser,
        "--tool-priors",
        "each set-up with --best-predictor",
        "its memory store seeded with the peaks of the other workflows' traces",
    )
    _variant_option(
        parser,
        "--earlier-run",
        "each set-up whose ranking reads the DAG",
        "the daemon's workflow history seeded from an earlier run of the same workflow "
        "(--earlier-trace): its step runtimes and step edges",
    )
    _variant_option(
        parser,
        "--settle",
        "each set-up without prediction whose ranking does not order by arrival",
        f"the daemon waiting for a release to settle (arrival_settle_s {SETTLE_S})",
    )
    parser.add_argument(
        "--earlier-trace",
        type=int,
        default=2,
        help="the trace-<N>.csv that ran before (default 2; must differ from --trace)",
    )
    parser.add_argument(
        "--kwok-workers",
        type=int,
        default=4,
        help="workers of each KWOK stage player (KWOK's default 4)",
    )
    parser.add_argument("--max-retries", type=int, default=replay.NF_CORE_MAX_RETRIES)
    parser.add_argument("--timeout", type=float, default=900.0, help="per run, seconds")
    parser.add_argument("--json-out", type=Path, help="write every run (with attempts) here")
    parser.add_argument("--report-dir", type=Path, help="one HTML comparison page per workflow")
    parser.add_argument(
        "--from-json", type=Path, help="print the tables (and reports) of an earlier --json-out"
    )
    args = parser.parse_args(argv)
    if args.earlier_run and args.earlier_trace == args.trace:
        parser.error("--earlier-trace must name another trace than --trace (the run before it)")
    shape = runstats.ClusterShape(
        nodes=args.nodes,
        cpu_millis=resources.cpu_millis(args.node_cpu),
        memory_bytes=resources.integer_value(args.node_memory),
    )
    if args.from_json is not None:
        earlier: list[dict[str, Any]] = json.loads(args.from_json.read_text(encoding="utf-8"))
        print_tables(earlier, list(dict.fromkeys(row["config"] for row in earlier)))
        print("\nSimulator against replay (wfsched rankings without prediction):\n")
        complete, _ = complete_rows(earlier, list(dict.fromkeys(r["config"] for r in earlier)))
        print(simulator_agreement(complete, args, shape))
        print("\nWait and lag per task:\n")
        print(lag_table(complete, args))
        print_optional_tables(complete, args, shape)
        write_reports(earlier, args.report_dir, shape)
        return 0
    names = [w for w in args.workflows.split(",") if w]
    traces = [nftrace.load_trace(args.data / name / f"trace-{args.trace}.csv") for name in names]
    plan = configs(
        [r for r in args.rankings.split(",") if r],
        args.assignment,
        args.best_predictor,
        [p for p in args.predictors.split(",") if p],
        [resources.integer_value(f) for f in args.floors_per_cpu.split(",") if f],
        (False, True) if args.shrink_running else (False,),
        VARIANTS[args.tool_priors],
        VARIANTS[args.earlier_run],
        VARIANTS[args.settle],
    )
    rows: list[dict[str, Any]] = []
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="wfsched-makespan-") as scratch:
        workdir = Path(scratch)
        cluster = devcluster.DevCluster(
            workdir / "cluster",
            devcluster.ClusterOptions(
                metrics_server=False, kube_scheduler=True, kwok_parallelism=args.kwok_workers
            ),
        )
        cluster.start(build_missing=True)
        try:
            cluster.create_nodes(args.nodes, cpu=args.node_cpu, memory=args.node_memory)
            from scheduler.kube import client

            api = client.KubeClient.connect(
                str(cluster.kubeconfig), qps=200, burst=400, pool_size=4
            )
            total = len(traces) * len(plan)
            for w_index, trace in enumerate(traces):
                print(
                    f"[{w_index + 1}/{len(traces)}] {trace.name}: {len(trace.tasks)} tasks, "
                    f"dependencies from {trace.dependency_source} "
                    f"({time.monotonic() - began:.0f}s elapsed)",
                    file=sys.stderr,
                    flush=True,
                )
                for config in plan:
                    row = run_one(cluster, api, workdir, trace, config, args, shape)
                    rows.append(row)
                    if args.json_out is not None:  # after every run: a cut-short table keeps it
                        args.json_out.write_text(json.dumps(rows), encoding="utf-8")
                    s = row["stats"]
                    print(
                        f"  {config.label:<36} makespan {s['makespan_s']:7.1f}s  "
                        f"waste {s['wasted_gibh']:7.2f} GiBh  failed {s['failed_attempts']}  "
                        f"[{len(rows)}/{total}] {row['error']}",
                        file=sys.stderr,
                        flush=True,
                    )
                write_reports(
                    [r for r in rows if r["workflow"] == trace.name], args.report_dir, shape
                )
        finally:
            cluster.stop()
    labels = [c.label for c in plan]
    print(
        f"time scale {args.time_scale:g}, floor {args.min_runtime:g}s, {args.nodes} nodes x "
        f"{args.node_cpu} CPU x {args.node_memory}; whole table in "
        f"{time.monotonic() - began:.0f}s\n"
    )
    print_tables(rows, labels)
    print("\nSimulator against replay (wfsched rankings without prediction):\n")
    print(simulator_agreement(rows, args, shape))
    print("\nWait and lag per task:\n")
    print(lag_table(rows, args))
    print_optional_tables(rows, args, shape)
    return 0


def complete_rows(
    rows: Sequence[dict[str, Any]], labels: Sequence[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of workflows that have a run of every label, and the names of the others."""
    have: dict[str, set[str]] = {}
    for row in rows:
        have.setdefault(row["workflow"], set()).add(row["config"])
    cut = [w for w, configs in have.items() if not set(labels) <= configs]
    return [row for row in rows if row["workflow"] not in cut], cut


def print_tables(rows: Sequence[dict[str, Any]], labels: Sequence[str]) -> None:
    """Print the ratio table and every run's figures (Markdown), complete workflows only."""
    rows, cut = complete_rows(rows, labels)
    if cut:
        print(f"Left out (not every run finished): {', '.join(cut)}\n")
    print("Makespan / kube-scheduler:\n")
    print(ratio_table(rows, labels))
    print("\nPer set-up, over the workflows:\n")
    print(setup_table(rows, labels))
    print("\nEvery run:\n")
    print(detail_table(rows))


def queue_behaviour(
    attempts: Sequence[dict[str, Any]], cluster_memory_bytes: int, same_moment_s: float = 0.05
) -> dict[str, float]:
    """How a run used its queue, from its attempts (``report.attempt_json`` dicts).

    ``memory_held``: requested memory of running attempts over ``cluster_memory_bytes``,
    averaged over the makespan; ``refill_s``: for each finished attempt while some pod waited,
    the mean time to the next bind; ``ahead_share``: the share of first attempts bound while a
    pod created before them still waited (``nan`` when no pod waited). Pods created or bound
    within ``same_moment_s`` of a bind count as the same moment (one batch), not as waiting.
    """
    end = max((a["finished"] for a in attempts), default=0.0)
    held = sum(a["memory"] * (a["finished"] - a["bound"]) for a in attempts)
    gaps = []
    for attempt in attempts:
        t = attempt["finished"]
        later = [b["bound"] for b in attempts if b["created"] < t < b["bound"]]
        if later:
            gaps.append(min(later) - t)
    first = [a for a in attempts if a["attempt"] == 1]
    waited = ahead = 0
    for attempt in first:
        t = attempt["bound"]
        waiting = [
            b for b in first if b["created"] < t - same_moment_s and b["bound"] > t + same_moment_s
        ]
        if waiting:
            waited += 1
            ahead += any(b["created"] < attempt["created"] for b in waiting)
    nan = float("nan")
    return {
        "memory_held": held / end / cluster_memory_bytes if end and cluster_memory_bytes else nan,
        "refill_s": sum(gaps) / len(gaps) if gaps else nan,
        "ahead_share": ahead / waited if waited else nan,
    }


def queue_table(
    rows: Sequence[dict[str, Any]], shape: runstats.ClusterShape, other: str = "fifo-roundrobin"
) -> str:
    """Markdown: per workflow, :func:`queue_behaviour` of kube-scheduler's run and of
    ``other``'s side by side (empty when no workflow has both)."""
    lines: list[str] = []
    memory = shape.nodes * shape.memory_bytes
    for workflow in dict.fromkeys(row["workflow"] for row in rows):
        runs = {r["config"]: r for r in rows if r["workflow"] == workflow}
        if KUBE not in runs or other not in runs:
            continue
        kube, mine = (queue_behaviour(runs[c]["attempts"], memory) for c in (KUBE, other))
        ratio = runs[other]["stats"]["makespan_s"] / runs[KUBE]["stats"]["makespan_s"]

        if not lines:
            lines = [
                f"| workflow | {other} / kube-scheduler makespan | memory held | refill (s) "
                "| binds ahead of an older waiting pod |",
                "|---|---:|---|---|---|",
            ]
        lines.append(
            f"| {workflow} | {ratio:.2f} | {_pair(kube, mine, 'memory_held', '.0%')} "
            f"| {_pair(kube, mine, 'refill_s', '.2f')} "
            f"| {_pair(kube, mine, 'ahead_share', '.0%')} |"
        )
    return "\n".join(lines)


def _pair(first: dict[str, float], second: dict[str, float], key: str, fmt: str) -> str:
    return " / ".join("-" if v != v else format(v, fmt) for v in (first[key], second[key]))


def print_optional_tables(
    rows: Sequence[dict[str, Any]], args: argparse.Namespace, shape: runstats.ClusterShape
) -> None:
    """Print each table that has rows for this run: the kube-scheduler model against the replay
    (a wfsched ranking without prediction), the queue behaviour (kube-scheduler and fifo), and
    the leave-one-workflow-out floor (a set-up with several floors)."""
    for title, table in (
        (
            "Simulator's kube-scheduler model against the replay (no prediction)",
            kube_agreement(rows, args, shape),
        ),
        ("Queue behaviour, kube-scheduler / fifo-roundrobin", queue_table(rows, shape)),
        ("The machine during the replays (CPU sampled from /proc)", host_load_table(rows)),
        (
            "Floor per CPU chosen on the other workflows (leave one workflow out)",
            lowo_floor_table(rows),
        ),
    ):
        if table:
            print(f"\n{title}:\n")
            print(table)


def host_load_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown: per set-up, the mean cores each process group used during its replays (mean
    over the workflows) and the seconds in which the machine was saturated (summed), from the
    rows' ``host_load`` (``hostload.HostLoad.to_json``); "" when no row has one."""
    loads: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("host_load"):
            loads.setdefault(row["config"], []).append(row["host_load"])
    if not loads:
        return ""
    groups = [g for g in hostload.GROUPS if g != "other"]
    lines = [
        "| set-up | " + " | ".join(groups) + " | saturated seconds | seconds sampled |",
        "|---|" + "---:|" * (len(groups) + 2),
    ]
    for label, runs in loads.items():
        means = [sum(r["mean_cores"].get(g, 0.0) for r in runs) / len(runs) for g in groups]
        lines.append(
            f"| {label} | "
            + " | ".join(f"{m:.2f}" for m in means)
            + f" | {sum(r['saturated_seconds'] for r in runs)}"
            + f" | {sum(r['seconds'] for r in runs)} |"
        )
    return "\n".join(lines)


def choose_floor(ratios: dict[str, dict[str, float]], failed: dict[str, dict[str, int]]) -> str:
    """The set-up (one per floor) with the lowest geometric-mean makespan ratio over the
    workflows of ``ratios`` ({label: {workflow: ratio}}); ties (within 0.5 %) go to fewer
    failed attempts there, then to the first label (the smallest floor)."""
    labels = list(ratios)
    means = {label: runstats.geometric_mean(list(ratios[label].values())) for label in labels}
    best = min(means.values())
    close = [label for label in labels if means[label] <= best * 1.005]
    return min(close, key=lambda label: (sum(failed[label].values()), labels.index(label)))


def lowo_floor_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown: for each set-up that ran with several floors per CPU and each workflow, the
    floor chosen on the *other* workflows (:func:`choose_floor`) and its makespan ratio to
    kube-scheduler on the held-out one; the last line is the geometric mean of the held-out
    ratios and the failed attempts they add up to. Empty when no set-up has several floors."""
    base = {row["workflow"]: row["stats"]["makespan_s"] for row in rows if row["config"] == KUBE}
    groups: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for row in rows:
        if row["config"] == KUBE or not row.get("predictor") or row["workflow"] not in base:
            continue
        group = row["config"].split(FLOOR_MARK)[0]
        groups.setdefault(group, {}).setdefault(row["config"], {})[row["workflow"]] = row
    lines: list[str] = []
    for group, by_label in groups.items():
        if len(by_label) < 2:
            continue
        workflows = [w for w in base if all(w in runs for runs in by_label.values())]
        ratios = {
            label: {w: runs[w]["stats"]["makespan_s"] / base[w] for w in workflows}
            for label, runs in by_label.items()
        }
        failed = {
            label: {w: int(runs[w]["stats"]["failed_attempts"]) for w in workflows}
            for label, runs in by_label.items()
        }
        if not lines:
            lines = [
                "| set-up | held-out workflow | floor chosen on the others | makespan ratio "
                "| failed attempts |",
                "|---|---|---|---:|---:|",
            ]
        held_out: list[float] = []
        failures = 0
        for workflow in workflows:
            chosen = choose_floor(
                {
                    label: {w: r for w, r in rs.items() if w != workflow}
                    for label, rs in ratios.items()
                },
                {
                    label: {w: n for w, n in fs.items() if w != workflow}
                    for label, fs in failed.items()
                },
            )
            held_out.append(ratios[chosen][workflow])
            failures += failed[chosen][workflow]
            floor = chosen.split(FLOOR_MARK)[1] if FLOOR_MARK in chosen else "none"
            lines.append(
                f"| {group} | {workflow} | {floor} | {ratios[chosen][workflow]:.2f} "
                f"| {failed[chosen][workflow]} |"
            )
        lines.append(
            f"| {group} | **geometric mean** | | "
            f"**{runstats.geometric_mean(held_out):.2f}** | {failures} |"
        )
    return "\n".join(lines)


def tie_sign(ratio: float, tie: float = TIE) -> int:
    """0 when ``ratio`` is within ``tie`` of 1 (a tie), else 1 above it and -1 below."""
    return 0 if abs(ratio - 1) <= tie else (1 if ratio > 1 else -1)


def pair_verdicts(
    replayed: dict[str, float], simulated: dict[str, float], tie: float = TIE
) -> list[str]:
    """For each pair of rankings: ``agree`` (the same one is faster in both, or both are within
    ``tie``), ``opposite`` (each picks a different one, beyond ``tie``), or ``tie in one`` (one
    of the two calls it a tie, the other does not)."""

    verdicts = []
    for a, b in itertools.combinations(replayed, 2):
        in_replay = tie_sign(replayed[a] / replayed[b], tie)
        in_simulation = tie_sign(simulated[a] / simulated[b], tie)
        if in_replay == in_simulation:
            verdicts.append("agree")
        elif in_replay * in_simulation < 0:
            verdicts.append("opposite")
        else:
            verdicts.append("tie in one")
    return verdicts


def simulator_agreement(
    rows: Sequence[dict[str, Any]], args: argparse.Namespace, shape: runstats.ClusterShape
) -> str:
    """Markdown: per workflow, the replayed and the simulated makespans of the wfsched rankings
    without prediction (the simulator runs the replay's own plan on the same cluster), the
    order each gives, and the largest gap between the two makespan ratios to fifo."""

    lines = [
        "| workflow | replay (s) | simulated (s) | replay order | simulated order | same order "
        f"| largest ratio gap | pairs: agree / tie in one / opposite (tie: {TIE:.0%}) |",
        "|---|---|---|---|---|---|---:|---|",
    ]
    for workflow in dict.fromkeys(row["workflow"] for row in rows):
        runs = {
            row["config"]: row
            for row in rows
            if row["workflow"] == workflow and row["policy"] and _simulated(row)
        }
        replayed = {label: row["stats"]["makespan_s"] for label, row in runs.items()}
        if not replayed or any(value != value for value in replayed.values()):
            continue
        instance, spec = _simulation(workflow, args, shape)
        simulated = {
            label: _simulated_makespan(row, instance, spec, args, shape)
            for label, row in runs.items()
        }
        first = next(iter(replayed))

        def order(values: dict[str, float]) -> str:
            return " < ".join(
                re.sub(r"-[a-z_]+", "", label, count=1)
                for label in sorted(values, key=values.__getitem__)
            )

        gap = max(
            abs(replayed[p] / replayed[first] - simulated[p] / simulated[first]) for p in replayed
        )
        verdicts = pair_verdicts(replayed, simulated)
        pairs = " / ".join(str(verdicts.count(v)) for v in ("agree", "tie in one", "opposite"))
        lines.append(
            f"| {workflow} | {' / '.join(f'{replayed[p]:.1f}' for p in replayed)} "
            f"| {' / '.join(f'{simulated[p]:.1f}' for p in replayed)} | {order(replayed)} "
            f"| {order(simulated)} | {'yes' if order(replayed) == order(simulated) else 'no'} "
            f"| {gap:.2f} | {pairs} |"
        )
    return "\n".join(lines)


def _simulated(row: dict[str, Any]) -> bool:
    """Whether the simulator tables cover a wfsched set-up: no prediction, and the daemon's
    default timing (rows of ``--settle`` are left out)."""
    return not row["predictor"] and not row.get("settle")


def _simulated_makespan(
    row: dict[str, Any],
    instance: simulate.Instance,
    spec: simulate.ClusterSpec,
    args: argparse.Namespace,
    shape: runstats.ClusterShape,
) -> float:
    """The simulator's makespan for a result row's ranking (and its earlier run, if seeded)."""
    earlier = None
    if row.get("earlier_run"):
        trace = _earlier_trace(_trace(row["workflow"], args), args)
        earlier_instance, _ = _simulation(trace.name, args, shape)
        earlier = simulate.earlier_runs(earlier_instance)
    return simulate.simulate(
        instance,
        strategy=registry.parse_strategy(row["policy"]),
        cluster_spec=spec,
        earlier=earlier,
    ).makespan_s


def kube_agreement(
    rows: Sequence[dict[str, Any]], args: argparse.Namespace, shape: runstats.ClusterShape
) -> str:
    """Markdown: per workflow, kube-scheduler's replayed makespan against the simulator's model
    of it (``simulate.simulate_kube_scheduler``), and each wfsched ranking's replayed and
    simulated ratio to kube-scheduler (without prediction), with the side each puts it on
    (faster, slower, or a tie within ``TIE``)."""

    def side(ratio: float) -> str:
        return ("faster", "tie", "slower")[tie_sign(ratio) + 1]

    lines = [
        "| workflow | kube-scheduler replay / simulated (s) | ranking | replay / kube | "
        "simulated / kube model | same side |",
        "|---|---|---|---:|---:|---|",
    ]
    agree = total = 0
    for workflow in dict.fromkeys(row["workflow"] for row in rows):
        runs = {
            row["config"]: row
            for row in rows
            if row["workflow"] == workflow and (row["config"] == KUBE or _simulated(row))
        }
        if KUBE not in runs or len(runs) < 2:
            continue
        instance, spec = _simulation(workflow, args, shape)
        kube_replay = runs[KUBE]["stats"]["makespan_s"]
        kube_model = simulate.simulate_kube_scheduler(instance, cluster_spec=spec).makespan_s
        for label, row in runs.items():
            if label == KUBE:
                continue
            replayed = row["stats"]["makespan_s"] / kube_replay
            simulated = _simulated_makespan(row, instance, spec, args, shape) / kube_model
            same = side(replayed) == side(simulated)
            agree += same
            total += 1
            lines.append(
                f"| {workflow} | {kube_replay:.1f} / {kube_model:.1f} | {label} "
                f"| {replayed:.2f} ({side(replayed)}) | {simulated:.2f} ({side(simulated)}) "
                f"| {'yes' if same else 'no'} |"
            )
    if not total:
        return ""
    lines.append(f"| **same side** | | | | | **{agree} of {total}** |")
    return "\n".join(lines)


def write_reports(
    rows: Sequence[dict[str, Any]], directory: Path | None, shape: runstats.ClusterShape
) -> None:
    """One HTML comparison page per workflow in ``directory`` (nothing when ``None``)."""
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    for workflow in dict.fromkeys(row["workflow"] for row in rows):
        page = report.comparison_page([r for r in rows if r["workflow"] == workflow], shape=shape)
        (directory / f"{workflow.replace('/', '-')}.html").write_text(page, encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
