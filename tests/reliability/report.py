"""Render ``docs/reliability.md`` from the reliability suite's measured outcomes.

    .venv/bin/pytest tests/reliability            # writes build/reliability.json
    .venv/bin/python tests/reliability/report.py  # writes docs/reliability.md

``--input`` defaults to ``$WFSCHED_RELIABILITY_REPORT`` or ``build/reliability.json``;
``--output`` to ``docs/reliability.md`` (``-`` prints to stdout). Every figure in the page comes
from the JSON; nothing is typed in by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

ORDER = [
    "crash-restart",
    "apiserver-restarts",
    "forced-410",
    "deleted-while-pending",
    "denied-and-stolen-bindings",
    "leader-failover",
    "load",
    "bad-input-live",
    "security-secrets",
]
LABELS = {
    "workflow": "Workload",
    "cluster": "Cluster",
    "injected": "Injected",
    "makespan_s": "Makespan (s)",
    "workflow_succeeded": "Tasks succeeded",
    "daemon_alive_at_end": "Daemon alive at the end",
    "failover_gap_s": "Failover gap: kill to the new leader's first binding (s)",
    "peak_rss_mib": "Peak RSS of the daemon, VmHWM (MiB)",
    "rss_limit_mib": "Asserted RSS limit (MiB)",
    "time_to_bind_all_s": "Daemon start to every pod seen bound by the test (s)",
    "first_to_last_binding_s": "First to last binding in the daemon's log (s)",
    "bind_rate_per_s": "Bindings per second (first to last binding)",
    "daemon_ready_s": "Daemon start to ready (s)",
    "node_setup_s": "Creating the nodes and waiting for Ready (s)",
    "pod_creation_s": "Creating the pods (s)",
    "pod_creation_rate_per_s": "Pod creation rate (/s)",
    "bound_by_old_leader": "Bound by the killed leader",
    "bound_by_new_leader": "Bound by the new leader",
    "new_leader_bound_before_the_kill": "Bound by the standby before the kill",
    "restarted_replica_is_standby": "Restarted replica came back as standby",
    "informer_errors_logged": "Informer errors logged",
    "informer_relists_logged": "Informer re-lists logged",
    "watch_expired_logged": "Watches ended with 410 Gone (logged)",
    "watch_restarts_metric": "wfsched_watch_restarts_total at the end",
    "deleted_pod_dropped_from_queue": "Pod deleted behind the watch dropped from the queue",
    "pending_tasks_at_end": "Pending tasks in the daemon at the end",
    "bind_failures_logged": "Failed bindings logged",
    "bind_errors": "Bind errors by reason (last process)",
    "bound_while_denied": "Pods the daemon bound while Bindings were refused (must be 0)",
    "bind_failures_while_denied": "Refused Binding calls while the policy applied",
    "stolen_pods": "Pending pods bound by the other binder",
    "other_binder_races_lost": "Other binder's Bindings that lost to the daemon (409)",
    "seconds_from_allow_to_done": "Policy removed to every pod succeeded (s)",
    "test_client_retries": "Test-side API retries during outages",
    "malformed_warned": "Malformed pods with an InvalidWorkflowMetadata Warning",
    "good_warned": "Well-formed pods warned about (must be 0)",
    "bad_dags_warned": "Broken DAG runs with an InvalidWorkflowDAG Warning",
    "input_errors_total": "wfsched_input_errors_total",
    "event_handling_failures_logged": "'event handling failed' log records",
    "rejected_by_api_server": "Pods the API server itself rejected",
    "rest_statuses": "REST statuses (no / wrong / right / query-string token)",
    "leaks": "Secret occurrences (log, metrics, command line, config file)",
    "forbidden_mentions_in_log": "403/forbidden mentions in the log (errors were exercised)",
    "log_lines": "Log lines inspected",
    "scheduled": "Bindings counted by the daemon",
    "last_process_bind_errors": "Failed bind attempts (last process)",
}
SKIP = {
    "title",
    "recorded_at",
    "verdict",
    "injections",
    "peak_rss_bytes",
    "kills",
    "faults",
    "waves",
    "cycles",
    "pod_scheduling_latency",
    "binding_call",
}


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) or "none"
    if isinstance(value, list):
        return "; ".join(_fmt(v) for v in value) or "none"
    return str(value).replace("|", "\\|")


def _table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns and k != "pid"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |" for row in rows]
    return lines


def _seconds(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:g} s"


def _histogram(name: str, h: Mapping[str, Any]) -> str:
    return (
        f"{name}: {h['count']} observations, mean {_seconds(h['mean_s'])}, "
        f"p50 ≤ {_seconds(h['p50_bucket_s'])}, p99 ≤ {_seconds(h['p99_bucket_s'])}, "
        f"max ≤ {_seconds(h['max_bucket_s'])} (bucket upper bounds)"
    )


def _key_figure(name: str, s: Mapping[str, Any]) -> str:
    if "failover_gap_s" in s:
        return f"failover gap {s['failover_gap_s']} s"
    if "peak_rss_mib" in s:
        cycles = s.get("cycles", {})
        return (
            f"peak RSS {s['peak_rss_mib']:g} MiB; cycle mean {_seconds(cycles.get('mean_s'))}, "
            f"max ≤ {_seconds(cycles.get('max_bucket_s'))}"
        )
    if "faults" in s:
        pauses = [f.get("binding_pause_s") for f in s["faults"] if f.get("binding_pause_s")]
        extra = f", longest binding pause {max(pauses):g} s" if pauses else ""
        return f"makespan {s.get('makespan_s')} s{extra}"
    if "kills" in s:
        after = [k["next_binding_after_s"] for k in s["kills"] if k.get("next_binding_after_s")]
        return f"makespan {s.get('makespan_s')} s, kill to next binding ≤ {max(after or [0]):g} s"
    if "leaks" in s:
        return f"{sum(s['leaks'].values())} secret occurrences"
    if "malformed_warned" in s:
        return f"warned {s['malformed_warned']} malformed, {s['bad_dags_warned']} broken DAGs"
    if "bind_failures_while_denied" in s:
        return (
            f"{s['bind_failures_while_denied']} refused bindings retried, "
            f"{s['stolen_pods']} pods taken by another binder"
        )
    if "bind_failures_logged" in s:
        return f"{s['bind_failures_logged']} failed bindings for {s['injections']} deletions"
    return ""


def _command(run: Mapping[str, Any]) -> str:
    """How the run was started, in words a reader can repeat."""
    args = run.get("args") or []
    if not args:
        return "`pytest` without arguments, as `.ci/run` starts it"
    return f"`pytest {' '.join(args)}`"


def render(data: Mapping[str, Any]) -> str:
    scenarios: Mapping[str, Mapping[str, Any]] = data.get("scenarios", {})
    names = [n for n in ORDER if n in scenarios] + sorted(set(scenarios) - set(ORDER))
    machine = data.get("machine", {})
    versions = machine.get("control_plane", {})
    runs = list(data.get("runs", {}).values())
    run = max(runs, key=lambda r: r.get("tests_run", 0)) if runs else {}
    dates = sorted(s.get("recorded_at", "") for s in scenarios.values())
    first, last = (dates[0], dates[-1]) if dates else ("n/a", "n/a")
    out = [
        "# Reliability: faults, load and bad input",
        "",
        "<!-- Generated by tests/reliability/report.py from the suite's JSON; do not edit. -->",
        "",
        f"Measured by the reliability suite (`tests/reliability/`) between {first} and {last} (UTC)"
        f" on a machine with {machine.get('cpus')} CPUs "
        f"and {machine.get('memory_gib')} GiB of memory, shared with other work; Python "
        f"{machine.get('python')}; a local control plane of kube-apiserver "
        f"{versions.get('K8S_VERSION', '?')}, etcd {versions.get('ETCD_VERSION', '?')} and KWOK "
        f"{versions.get('KWOK_VERSION', '?')} (fake nodes: pods run for the duration in their "
        "`kwok.wfsched.io/runtime` annotation).",
        "",
    ]
    if run:
        out += [
            f"Largest recorded run: {run.get('tests_run')} reliability tests in a pytest "
            f"session of {run.get('wall_s', 0) / 60:.1f} min ({_command(run)}, finished "
            f"{run.get('finished_at')}).",
            "",
        ]
    out += [
        "Reproduce: `.venv/bin/pytest tests/reliability` (writes `build/reliability.json`, or "
        "`$WFSCHED_RELIABILITY_REPORT`), then `.venv/bin/python tests/reliability/report.py`.",
        "",
        "## Invariants checked in every scenario",
        "",
        "- **bound exactly once**: no pod has more than one `Scheduled` Event or more than one "
        "`bound` record in the daemons' logs (restarts append to the same log), and the capacity "
        "monitor never sees a pod on two nodes;",
        "- **no node over its allocatable**: a monitor samples every bound, non-terminal pod of "
        "every scheduler from the API server while the scenario runs (CPU, memory, pod count);",
        "- **nothing lost**: every pod of the workload reaches `Succeeded` (the load scenario's "
        "pods run for ever: every one is bound);",
        "- **the daemon alive** at the end (restarted where the scenario kills it).",
        "",
        "`Scheduled` Events are best effort in wfsched (one POST, no retry; a bounded backlog "
        "of 1,000, and a rate limiter of their own, drop rather than delay them), so a pod "
        "bound without one is counted separately "
        "(*no Event*); *unattested* pods (neither an Event nor a log record) are only possible "
        "when a SIGKILL lands right after the Binding call.",
        "",
        "## Summary",
        "",
        "| Scenario | Injected | Times | Pods | Lost | Bound twice | Overcommitted nodes "
        "| No Event | Unattested | Daemon alive | Key figure |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        s = scenarios[name]
        v = s.get("verdict", {})
        out.append(
            "| "
            + " | ".join(
                [
                    f"[{name}](#{name})",
                    _fmt(s.get("injected", "")),
                    _fmt(s.get("injections", "")),
                    _fmt(v.get("pods", "")),
                    _fmt(v.get("lost_count", "")),
                    _fmt(v.get("double_bound_count", "")),
                    _fmt(v.get("overcommitted_nodes_count", "")),
                    _fmt(v.get("missing_events_count", "")),
                    _fmt(v.get("unattested_count", "")),
                    _fmt(s.get("daemon_alive_at_end")),
                    _key_figure(name, s),
                ]
            )
            + " |"
        )
    for name in names:
        s = scenarios[name]
        out += [
            "",
            f"## {name}",
            "",
            f"**{s.get('title', name)}** (recorded {s.get('recorded_at')})",
            "",
        ]
        keys = [k for k in LABELS if k in s] + sorted(k for k in s if k not in LABELS)
        for key in keys:
            value = s[key]
            if key in SKIP:
                continue
            out.append(f"- {LABELS.get(key, key)}: {_fmt(value)}")
        for key in ("cycles", "pod_scheduling_latency", "binding_call"):
            if key in s:
                label = {
                    "cycles": "Scheduling cycle (`wfsched_scheduling_cycle_duration_seconds`)",
                    "pod_scheduling_latency": "Pod creation to binding "
                    "(`wfsched_pod_scheduling_duration_seconds`)",
                    "binding_call": "Binding call (`wfsched_binding_duration_seconds`)",
                }[key]
                out.append(f"- {_histogram(label, s[key])}")
        v = {"missing_events_count": 0, "unattested_count": 0, **s.get("verdict", {})}
        if "pods" in v:
            lag = (
                f"; Event lag behind the bound record p50 {_seconds(v.get('event_lag_p50_s'))}, "
                f"max {_seconds(v.get('event_lag_max_s'))}"
                if v.get("event_lag_max_s") is not None
                else ""
            )
            out.append(
                f"- Invariants: {v['pods']} pods, {v['bound']} bound, {v['succeeded']} succeeded; "
                f"lost {v['lost_count']}, bound twice {v['double_bound_count']}, overcommitted "
                f"nodes {v['overcommitted_nodes_count']} ({v['capacity_samples']} capacity "
                f"samples, {v['capacity_sample_errors']} failed during outages); without a "
                f"Scheduled Event {v['missing_events_count']}, unattested "
                f"{v['unattested_count']}{lag}"
            )
        if v.get("missing_events_count"):
            out.append(
                "- Why some Scheduled Events are missing: they are sent after the Binding by "
                "the Event recorder's workers; an Event still queued when the process is killed "
                "is lost, one that finds 1,000 Normal Events waiting is dropped (so none is "
                "written minutes late), and one that would wait more than a second for a token "
                "of the Events' own rate limiter is dropped. The bindings themselves are "
                "attested by the `bound` records and the API server (see *unattested*)."
            )
        for key, title in (("kills", "Kills"), ("faults", "Faults"), ("waves", "Deletion waves")):
            if s.get(key):
                out += ["", f"{title}:", "", *_table(s[key])]
    tests = data.get("tests", {})
    defects = sorted(
        (nodeid, t["reason"]) for nodeid, t in tests.items() if t.get("outcome") == "xfailed"
    )
    counts: dict[str, int] = {}
    for t in tests.values():
        counts[t["outcome"]] = counts.get(t["outcome"], 0) + 1
    out += [
        "",
        "## Defects found, pinned as strict xfails",
        "",
        "Each is a test marked `xfail(strict=True)` that fails today because of the defect; "
        "once the defect is fixed the test passes, the strict marker turns that into a failure, "
        "and the marker is removed. Recorded outcomes: "
        + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        + ".",
        "",
    ]
    if defects:
        out += ["| Test | Defect |", "|---|---|"]
        out += [f"| `{nodeid.split('::', 1)[1]}` | {_fmt(reason)} |" for nodeid, reason in defects]
    else:
        out.append("None open.")
    out += [
        "",
        "## Defects the suite found, since fixed",
        "",
        "Each was first pinned as a strict xfail, then fixed; the test named guards it now.",
        "",
        "| Defect | Guarding test |",
        "|---|---|",
        *(f"| {_fmt(defect)} | `{test}` |" for defect, test in FIXED_DEFECTS),
    ]
    return "\n".join(out) + "\n"


FIXED_DEFECTS = (
    (
        "A pod with a non-mapping where the API has a mapping (container resources, "
        "spec.resources, nodeAffinity and its terms) raised AttributeError in the translation; "
        "the pod was neither queued nor warned about.",
        "test_reliability_input.py::test_a_wrong_shaped_pod_is_still_queued_and_warned_about",
    ),
    (
        "A DAG document with an unhashable edge endpoint (TypeError) or deeper nesting than "
        "the recursion limit (RecursionError) escaped as an exception: no InvalidWorkflowDAG "
        "Warning.",
        "test_reliability_input.py::test_a_broken_dag_document_is_reported",
    ),
    (
        "A refused DAG document was reported only on a still-pending pod of the run; it is now "
        "also reported on the ConfigMap.",
        "test_reliability_input.py::"
        "test_a_refused_dag_is_reported_even_when_the_pods_were_bound_first",
    ),
    (
        "Configuration: a non-UTF-8 file, WFSCHED_LEASE next to WFSCHED_LEASE__*, and infinite "
        "durations or rates were not SettingsErrors; a YAML syntax error echoed the offending "
        "line (a secret, possibly).",
        "test_reliability_input.py::test_settings_defects, test_non_finite_durations_are_refused,"
        " test_reliability_security.py::test_a_yaml_syntax_error_does_not_echo_the_line",
    ),
    (
        "wfsched_watch_restarts_total was never incremented.",
        "tests/unit/kube/test_kube_informer_logic.py::"
        "test_every_watch_restart_is_reported_with_its_reason",
    ),
    (
        "Scheduled Events shared the Binding calls' rate limiter and queued without bound "
        "(p50 42 s late at 10,000 pods); they now have their own limiter and a bounded backlog.",
        "tests/unit/daemon/test_eventrecorder.py, the load scenario's Event lag",
    ),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_input = os.environ.get("WFSCHED_RELIABILITY_REPORT") or str(
        REPO / "build" / "reliability.json"
    )
    parser.add_argument("--input", default=default_input)
    parser.add_argument("--output", default=str(REPO / "docs" / "reliability.md"))
    args = parser.parse_args(argv)
    try:
        data = json.loads(Path(args.input).read_text())
    except (OSError, ValueError) as exc:
        print(f"report: cannot read {args.input}: {exc}", file=sys.stderr)
        return 2
    text = render(data)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
