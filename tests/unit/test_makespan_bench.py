"""The pure parts of ``benchmarks/makespan.py``: the run plan and the simulator's verdicts."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import pytest

from benchmarks import makespan


def test_plan_defaults_to_no_prediction_ponder_and_the_best_predictor() -> None:
    plan = makespan.configs(["fifo", "critical_path"], "roundrobin", "envelope")
    assert [c.label for c in plan] == [
        "kube-scheduler",
        "fifo-roundrobin",
        "fifo-roundrobin+ponder",
        "fifo-roundrobin+envelope",
        "critical_path-roundrobin",
        "critical_path-roundrobin+ponder",
        "critical_path-roundrobin+envelope",
    ]
    assert plan[0].policy is None
    assert (plan[3].policy, plan[3].predictor) == ("fifo-roundrobin", "envelope")


def test_plan_takes_the_chosen_predictors_with_none_for_no_prediction() -> None:
    plan = makespan.configs(["fifo"], "binpack", "envelope", ["none", "envelope", "none"])
    assert [(c.label, c.predictor) for c in plan] == [
        ("kube-scheduler", ""),
        ("fifo-binpack", ""),
        ("fifo-binpack+envelope", "envelope"),
    ]


def test_pairs_agree_disagree_or_tie_in_one() -> None:
    replayed = {"fifo": 100.0, "rank_min": 90.0, "critical_path": 101.0}
    simulated = {"fifo": 50.0, "rank_min": 45.0, "critical_path": 43.0}
    # fifo/rank_min: both say rank_min, 10 % faster; fifo/critical_path: the replay calls it a
    # tie (1 %), the simulation does not (14 %); rank_min/critical_path: the replay says
    # rank_min, the simulation critical_path, both beyond 2 %.
    assert makespan.pair_verdicts(replayed, simulated) == ["agree", "tie in one", "opposite"]


def test_two_ties_agree_and_the_tolerance_is_a_parameter() -> None:
    assert makespan.pair_verdicts({"a": 100.0, "b": 101.5}, {"a": 10.0, "b": 9.9}) == ["agree"]
    assert makespan.pair_verdicts({"a": 100.0, "b": 101.5}, {"a": 10.0, "b": 9.9}, tie=0.001) == [
        "opposite"
    ]


def test_floors_per_cpu_multiply_the_best_predictor_only() -> None:
    plan = makespan.configs(
        ["fifo"], "roundrobin", "envelope", ["none", "ponder", "envelope"], [0, 512 << 20, 1 << 30]
    )
    assert [(c.label, c.floor_per_cpu) for c in plan] == [
        ("kube-scheduler", 0),
        ("fifo-roundrobin", 0),
        ("fifo-roundrobin+ponder", 0),
        ("fifo-roundrobin+envelope", 0),
        ("fifo-roundrobin+envelope+floor 512Mi/cpu", 512 << 20),
        ("fifo-roundrobin+envelope+floor 1Gi/cpu", 1 << 30),
    ]


def test_shrink_running_doubles_the_best_predictor_only() -> None:
    plan = makespan.configs(
        ["fifo"], "roundrobin", "envelope", ["none", "ponder", "envelope"], [0], [False, True]
    )
    assert [(c.label, c.predictor, c.shrink_running) for c in plan] == [
        ("kube-scheduler", "", False),
        ("fifo-roundrobin", "", False),
        ("fifo-roundrobin+ponder", "ponder", False),
        ("fifo-roundrobin+envelope", "envelope", False),
        ("fifo-roundrobin+envelope+shrink", "envelope", True),
    ]


def test_tool_priors_double_the_best_predictor_and_combine_with_shrinking() -> None:
    plan = makespan.configs(
        ["fifo"], "roundrobin", "envelope", ["none", "envelope"], [0], [False, True], [False, True]
    )
    assert [(c.label, c.shrink_running, c.tool_priors) for c in plan[2:]] == [
        ("fifo-roundrobin+envelope", False, False),
        ("fifo-roundrobin+envelope+priors", False, True),
        ("fifo-roundrobin+envelope+shrink", True, False),
        ("fifo-roundrobin+envelope+shrink+priors", True, True),
    ]


def test_prior_store_holds_the_other_workflows_tools_never_the_held_out_one(tmp_path) -> None:
    columns = "task_id name process status container memory peak_rss rchar realtime start complete"
    for name, process in (("alpha", "NFCORE_ALPHA:FASTQC"), ("beta", "NFCORE_BETA:FASTQC")):
        (tmp_path / name).mkdir()
        row = [
            "1",
            f"{process} (s1)",
            process,
            "COMPLETED",
            "quay.io/biocontainers/fastqc:0.12",
            "6 GB",
            "300 MB",
            "1 GB",
            "10s",
            "2024-01-01 00:00:00.000",
            "2024-01-01 00:00:10.000",
        ]
        lines = ["\t".join(columns.split()), "\t".join(row)]
        (tmp_path / name / "trace-1.csv").write_text("\n".join(lines) + "\n")
    store = json.loads(makespan.prior_store("envelope", tmp_path, ["alpha"]))
    (step,) = store["steps"]
    assert (step["workflow"], step["step"]) == ("alpha", "NFCORE_ALPHA:FASTQC")
    assert step["tool"] == ["FASTQC", "quay.io/biocontainers/fastqc"]
    assert len(step["history"]) == 1 and step["history"][0][2] > 0


def test_an_earlier_run_doubles_only_the_rankings_that_read_the_dag() -> None:
    plan = makespan.configs(
        ["fifo", "critical_path"],
        "roundrobin",
        "envelope",
        ["none", "envelope"],
        [0],
        [False],
        [True],
        [False, True],
    )
    assert [(c.label, c.earlier_run) for c in plan[1:]] == [
        ("fifo-roundrobin", False),  # fifo's order never reads the DAG: no +earlier set-up
        ("fifo-roundrobin+envelope+priors", False),
        ("critical_path-roundrobin", False),
        ("critical_path-roundrobin+earlier", True),
        ("critical_path-roundrobin+envelope+priors", False),
        ("critical_path-roundrobin+envelope+priors+earlier", True),
    ]


def test_settling_doubles_the_unpredicted_set_ups_of_rankings_that_can_wait() -> None:
    plan = makespan.configs(
        ["fifo", "critical_path"],
        "roundrobin",
        "envelope",
        ["none", "envelope"],
        earlier_run=[True],
        settle=[False, True],
    )
    assert [(c.label, c.settle) for c in plan[1:]] == [
        ("fifo-roundrobin", False),  # fifo orders by arrival: it never waits, nothing to compare
        ("fifo-roundrobin+envelope", False),
        ("critical_path-roundrobin+earlier", False),
        ("critical_path-roundrobin+earlier+settle", True),
        ("critical_path-roundrobin+envelope+earlier", False),  # prediction: one set-up
    ]
    assert makespan._simulated({"predictor": "", "settle": False})
    assert not makespan._simulated({"predictor": "", "settle": True})
    assert not makespan._simulated({"predictor": "ponder"})


def test_only_rankings_whose_order_can_depend_on_the_dag_get_an_earlier_run() -> None:
    plan = makespan.configs(
        ["random", "max", "rank_min", "gs_min"],
        "roundrobin",
        "envelope",
        ["none"],
        [0],
        [False],
        [False],
        [True],
    )
    assert [c.label for c in plan[1:]] == [
        "random-roundrobin",
        "max-roundrobin",
        "rank_min-roundrobin+earlier",
        "gs_min-roundrobin+earlier",
    ]


def test_an_earlier_run_must_be_another_trace(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        makespan.main(["--earlier-run", "--trace", "2", "--earlier-trace", "2"])
    assert exit_info.value.code == 2
    assert "--earlier-trace must name another trace than --trace" in capsys.readouterr().err


def test_history_store_holds_the_earlier_runs_replayed_runtimes_and_step_edges() -> None:
    trace = makespan.nftrace.load_trace(makespan.DATA / "rnaseq" / "trace-2.csv")
    args = argparse.Namespace(time_scale=0.06, min_runtime=3.0)
    doc = json.loads(makespan.history_store(trace, args, "rnaseq-abc123"))
    (entry,) = doc["workflows"]
    assert entry["workflow"] == "rnaseq-abc123"
    planned = makespan.replay.ReplayPlan.from_trace(
        trace, scheduler_name="-", time_scale=0.06, min_runtime_s=3.0
    )
    label = makespan.replay.step_label  # the daemon knows steps by their label values
    steps = {label(task.step) for task in planned.tasks}
    assert set(entry["runtimes"]) == steps
    assert min(v for values in entry["runtimes"].values() for v in values) >= 3.0  # the floor
    step_of = {task.id: label(task.step) for task in planned.tasks}
    shown = {
        (step_of[parent], step_of[task.id])
        for task in planned.tasks
        for parent in task.parents
        if step_of[parent] != step_of[task.id]
    }
    assert {tuple(edge) for edge in entry["edges"]} == shown and shown


def _row(workflow: str, config: str, makespan_s: float, failed: int = 0) -> dict[str, object]:
    return {
        "workflow": workflow,
        "config": config,
        "predictor": "" if config == makespan.KUBE else "envelope",
        "stats": {"makespan_s": makespan_s, "failed_attempts": failed},
    }


def _sized(row: dict[str, Any], allocated: float, wasted: float) -> dict[str, Any]:
    row["stats"].update(allocated_gibh=allocated, wasted_gibh=wasted)
    return row


def test_setup_table_shows_the_worst_workflow_losses_failures_and_memory_shares() -> None:
    rows = [
        _sized(_row("a", makespan.KUBE, 100), 10.0, 8.0),
        _sized(_row("a", "fifo+envelope", 80, failed=1), 4.0, 2.0),
        _sized(_row("b", makespan.KUBE, 50), 30.0, 24.0),
        _sized(_row("b", "fifo+envelope", 60, failed=2), 6.0, 4.0),
        _sized(_row("c", "fifo+envelope", 10), 1.0, 1.0),  # no baseline: left out
    ]
    table = makespan.setup_table(rows, [makespan.KUBE, "fifo+envelope"])
    lines = table.splitlines()
    assert len(lines) == 3  # header, rule, one set-up: kube-scheduler has no row of its own
    cells = [cell.strip() for cell in lines[2].strip("|").split("|")]
    assert cells[0] == "fifo+envelope"
    assert cells[1] == f"{math.sqrt(0.8 * 1.2):.2f}"
    assert cells[2] == "1.20"
    assert cells[3] == "1 of 2"
    assert cells[4] == "3"
    assert cells[5] == f"{10 / 40:.2f}"
    assert cells[6] == f"{6 / 32:.2f}"


def test_lowo_floor_choice_never_sees_the_held_out_workflow() -> None:
    none, floor = "fifo+envelope", "fifo+envelope+floor 1Gi/cpu"
    rows = []
    # a and b gain from the floor, c loses from it. Held out c, the floor is chosen on a and b,
    # so c scores its loss (1.2), not its better run without the floor (0.8).
    for workflow, without, with_floor in (("a", 90, 80), ("b", 95, 85), ("c", 80, 120)):
        rows += [
            _row(workflow, makespan.KUBE, 100),
            _row(workflow, none, without, failed=2),
            _row(workflow, floor, with_floor),
        ]
    lines = makespan.lowo_floor_table(rows).splitlines()
    # held out a: on b and c the floor's geometric mean is 1.01, none's 0.87: none
    assert "| fifo+envelope | a | none | 0.90 | 2 |" in lines
    assert "| fifo+envelope | b | none | 0.95 | 2 |" in lines  # a, c: 0.98 against 0.85
    assert "| fifo+envelope | c | 1Gi/cpu | 1.20 | 0 |" in lines  # a, b: 0.82 against 0.92
    assert lines[-1] == "| fifo+envelope | **geometric mean** | | **1.01** | 4 |"


def test_lowo_floor_ties_go_to_fewer_failed_attempts() -> None:
    ratios = {"x": {"a": 0.9, "b": 0.9}, "x+floor 1Gi/cpu": {"a": 0.901, "b": 0.899}}
    assert (
        makespan.choose_floor(ratios, {"x": {"a": 1, "b": 0}, "x+floor 1Gi/cpu": {"a": 0, "b": 0}})
        == "x+floor 1Gi/cpu"
    )
    assert (
        makespan.choose_floor(ratios, {"x": {"a": 0, "b": 0}, "x+floor 1Gi/cpu": {"a": 0, "b": 0}})
        == "x"
    )


def test_no_lowo_table_without_several_floors() -> None:
    rows = [_row("a", makespan.KUBE, 100), _row("a", "fifo+envelope", 90)]
    assert makespan.lowo_floor_table(rows) == ""


def _attempt(
    created: float, bound: float, finished: float, memory: int, attempt: int = 1
) -> dict[str, Any]:
    return {
        "created": created,
        "bound": bound,
        "finished": finished,
        "memory": memory,
        "attempt": attempt,
    }


def test_queue_behaviour_measures_memory_held_refill_and_binds_ahead() -> None:
    attempts = [
        _attempt(0.0, 0.0, 10.0, 50),  # runs 0-10
        _attempt(1.0, 10.2, 20.0, 50),  # waited, bound 0.2 s after the first finished
        _attempt(2.0, 5.0, 20.0, 25),  # bound at 5 while the older pod (created 1) waited
        _attempt(3.0, 12.0, 20.0, 10),  # still waiting when the pod created at 1 was bound
    ]
    behaviour = makespan.queue_behaviour(attempts, cluster_memory_bytes=100)
    # (50 x 10 + 50 x 9.8 + 25 x 15 + 10 x 8) / 20 s / 100 bytes
    assert behaviour["memory_held"] == pytest.approx((500 + 490 + 375 + 80) / 20 / 100)
    assert behaviour["refill_s"] == pytest.approx(0.2)  # only the finish at 10 had waiters
    # binds while a pod waited: at 5 (ahead of the pod created at 1) and at 10.2 (in order:
    # the one still waiting was created later); the bind at 12 had nobody waiting
    assert behaviour["ahead_share"] == 0.5


def test_queue_behaviour_counts_one_batch_as_the_same_moment() -> None:
    attempts = [_attempt(0.00, 0.02, 5.0, 10), _attempt(0.01, 0.03, 5.0, 10)]
    behaviour = makespan.queue_behaviour(attempts, cluster_memory_bytes=100)
    assert math.isnan(behaviour["ahead_share"]) and math.isnan(behaviour["refill_s"])


def _loaded(config: str, workflow: str, cores: dict[str, float], saturated: int) -> dict[str, Any]:
    load = {"mean_cores": cores, "seconds": 10, "saturated_seconds": saturated, "cores": 2}
    return {"config": config, "workflow": workflow, "host_load": load}


def test_host_load_table_averages_cores_and_sums_saturated_seconds_per_setup() -> None:
    rows = [
        _loaded("kube-scheduler", "a", {"kube-apiserver": 0.2, "kube-scheduler": 0.1}, 1),
        _loaded("kube-scheduler", "b", {"kube-apiserver": 0.4, "kube-scheduler": 0.1}, 2),
        _loaded("fifo-roundrobin", "a", {"kube-apiserver": 0.3, "wfsched": 0.5}, 4),
        {"config": "fifo-roundrobin", "workflow": "b"},  # an older row without a sample
    ]
    lines = makespan.host_load_table(rows).splitlines()
    assert lines[0].startswith("| set-up | wfsched | kube-apiserver | etcd | kwok |")
    assert (
        lines[2] == "| kube-scheduler | 0.00 | 0.30 | 0.00 | 0.00 | 0.10 | 0.00 | 0.00 | 3 | 20 |"
    )
    assert (
        lines[3] == "| fifo-roundrobin | 0.50 | 0.30 | 0.00 | 0.00 | 0.00 | 0.00 | 0.00 | 4 | 10 |"
    )


def test_no_host_load_table_for_rows_without_samples() -> None:
    assert makespan.host_load_table([{"config": "fifo-roundrobin", "workflow": "a"}]) == ""
