"""``benchmarks/ranking_choice.py``: a ranking chosen leaving one workflow out."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks import ranking_choice

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "nfcore-traces"

SCORES = {
    "a": {"rank": 0.90, "fifo": 1.00, "critical_path": 0.95},
    "b": {"rank": 0.95, "fifo": 0.99, "critical_path": 0.90},
    "c": {"rank": 1.10, "fifo": 1.00, "critical_path": 0.92},
}


def test_each_workflow_gets_the_ranking_best_on_the_others() -> None:
    choices = {choice.held_out: choice for choice in ranking_choice.leave_one_out(SCORES)}
    # Without a: rank 1.022, fifo 0.995, critical_path 0.910.
    assert choices["a"].ranking == "critical_path"
    assert choices["a"].on_others == pytest.approx(math.sqrt(0.90 * 0.92))
    assert choices["a"].on_held_out == 0.95 and choices["a"].best_on_held_out == "rank"
    # Without c: rank 0.925, fifo 0.995, critical_path 0.925; the tie goes to the first listed.
    assert choices["c"].ranking == "rank" and choices["c"].on_held_out == 1.10
    assert choices["b"].ranking == "critical_path"


def test_a_held_out_workflow_never_changes_its_own_choice() -> None:
    before = ranking_choice.leave_one_out(SCORES)
    skewed = {**SCORES, "a": {"rank": 0.10, "fifo": 5.0, "critical_path": 5.0}}
    after = ranking_choice.leave_one_out(skewed)
    assert before[0].ranking == after[0].ranking and before[0].on_others == after[0].on_others
    assert after[0].on_held_out == 5.0 and after[0].best_on_held_out == "rank"


def test_leaving_one_out_needs_two_workflows_scoring_the_same_rankings() -> None:
    with pytest.raises(ValueError, match="at least two"):
        ranking_choice.leave_one_out({"a": SCORES["a"]})
    with pytest.raises(ValueError, match="same rankings"):
        ranking_choice.leave_one_out({"a": SCORES["a"], "b": {"rank": 1.0}})


def test_tables_show_every_score_and_the_held_out_mean() -> None:
    scores = {workflow: {r: [v, v] for r, v in row.items()} for workflow, row in SCORES.items()}
    per_workflow = ranking_choice.workflow_scores(scores)
    assert per_workflow == {workflow: pytest.approx(row) for workflow, row in SCORES.items()}
    table = ranking_choice.score_table(per_workflow)
    assert "| a | 0.900 | 1.000 | 0.950 |" in table and "`critical_path`" in table
    choices = ranking_choice.choice_table(ranking_choice.leave_one_out(per_workflow))
    held_out = (0.95 * 0.90 * 1.10) ** (1 / 3)
    assert f"**{held_out:.3f}**" in choices and "| c | `rank` | 0.925 | 1.100 |" in choices


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seeds", "0"], "--seeds must be at least 1"),
        (["--runtime-jitter", "inf"], "--runtime-jitter must be"),
        (["--earlier-trace", "1"], "another trace"),
        (["--rankings", "bogus"], "unknown ranking policy 'bogus'"),
        (["--data", "/nonexistent"], "no such trace"),
    ],
)
def test_bad_options_are_named(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        ranking_choice.main(["--workflows", "sarek", *args])
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_the_workflows_are_the_directories_holding_the_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, traces in (("beta", [1, 2]), ("alpha", [1]), ("gamma", [2])):
        (tmp_path / name).mkdir()
        for number in traces:
            (tmp_path / name / f"trace-{number}.csv").write_text("")
    (tmp_path / "notes.txt").write_text("")
    assert ranking_choice.workflows_with_trace(tmp_path, 1) == ["alpha", "beta"]
    assert ranking_choice.workflows_with_trace(tmp_path / "missing", 1) == []
    with pytest.raises(SystemExit):
        ranking_choice.main(["--data", str(tmp_path), "--trace", "3", "--first-run"])
    assert "no workflow under" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ranking_choice.main(["--data", str(tmp_path)])
    assert "alpha/trace-2.csv" in capsys.readouterr().err


@pytest.mark.skipif(not DATA.is_dir(), reason="shared nf-core traces not present")
def test_a_run_on_two_workflows_reprints_from_its_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "scores.json"
    options = ["--workflows", "sarek,ampliseq", "--rankings", "fifo,rank", "--seeds", "2"]
    assert ranking_choice.main([*options, "--json-out", str(out)]) == 0
    printed = capsys.readouterr()
    scores = json.loads(out.read_text())
    assert list(scores) == ["sarek/trace-1", "ampliseq/trace-1"]
    assert all(
        len(ratios) == 2 and min(ratios) > 0 for row in scores.values() for ratios in row.values()
    )
    assert "[2/2] ampliseq: seed 1 done" in printed.err
    assert "| ampliseq/trace-1 | `" in printed.out and "geometric mean, held out" in printed.out
    assert ranking_choice.main(["--from-json", str(out)]) == 0
    assert capsys.readouterr().out == printed.out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "Expecting property name"),
        ('{"a": {"rank": []}}', "not scores of --json-out"),
        ('{"a": {"rank": [0.9, "x"]}}', "not scores of --json-out"),
        ("[1, 2]", "not scores of --json-out"),
    ],
)
def test_a_bad_scores_file_is_named_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = tmp_path / "scores.json"
    path.write_text(content)
    with pytest.raises(SystemExit) as exited:
        ranking_choice.main(["--from-json", str(path)])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and f"--from-json {path}: " in err and message in err
    with pytest.raises(SystemExit):
        ranking_choice.main(["--from-json", str(tmp_path / "missing.json")])
    assert "No such file" in capsys.readouterr().err
