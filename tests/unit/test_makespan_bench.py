"""The pure parts of ``benchmarks/makespan.py``: the run plan and the simulator's verdicts."""

from __future__ import annotations

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
