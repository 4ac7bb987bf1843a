"""Leave-one-workflow-out: the workflow rule, the fixed selection rule, priors and the CLI."""

import json
import pathlib

import pytest

from predictors import base, const, lowo, offsets, priors, replay, traces
from scheduler import cli, registry
from scheduler.cli import predict

MIB = base.MIB
HOUR = 3_600_000.0


def _task(
    order: int, peak_mib: int, *, start: float, process: str = "W:P", image: str = ""
) -> traces.Task:
    return traces.Task(
        order=order,
        name=f"{process} ({order})",
        process=process,
        request_bytes=2048 * MIB,
        peak_bytes=peak_mib * MIB,
        input_bytes=100,
        submit_ms=0.0,
        start_ms=start,
        complete_ms=start + HOUR,
        realtime_ms=HOUR,
        container=image,
    )


def _run(name: str, peak_mib: int) -> traces.Run:
    """Two sequential tasks of one process: the second is predicted after the first."""
    return traces.Run(
        name=name,
        tasks=(_task(1, peak_mib, start=0.0), _task(2, peak_mib, start=HOUR)),
    )


def _const(mib: int) -> replay.PredictorFactory:
    return lambda: offsets.OffsetPredictor(const.ConstModel(mib * MIB), offsets.NONE)


def test_workflow_rule() -> None:
    assert lowo.workflow_of("sarek/trace-3") == "sarek"
    assert lowo.workflow_of("nextflow-rnaseq") == "rnaseq"
    assert lowo.workflow_of("montage-chameleon-2mass-02d-001") == "montage"


def test_fewer_than_two_workflows_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="at least 2 workflows, found 1"):
        lowo.group_by_workflow([_run("a/trace-1", 200), _run("a/trace-2", 200)])


def test_selection_uses_only_the_training_workflows() -> None:
    # a and b peak at 200 MiB, c at 1000 MiB. The small candidate (300 MiB) fails on c only.
    runs = [_run("a/trace-1", 200), _run("b/trace-1", 200), _run("c/trace-1", 1000)]
    rows = [
        lowo.Row(label="user-default", candidates=(("user-default", None),)),
        lowo.Row(label="tuned", candidates=(("small", _const(300)), ("large", _const(1500)))),
    ]
    report = lowo.evaluate(runs, rows, reference="user-default")
    tuned = report.rows[1]
    # Held out c: trained on a and b, where "small" never fails and wastes less.
    assert tuned.choices["c"] == "small"
    assert tuned.per_workflow["c"].failed_attempts == 2  # const answers from the start (D24)
    # Held out a (or b): c is in training, "small" fails there, the budget (0) rules it out.
    assert tuned.choices["a"] == tuned.choices["b"] == "large"
    assert tuned.per_workflow["a"].failed_attempts == 0
    # Held-out wastage of a with "large": (1500 - 200) MiB for an hour, for both tasks.
    expected = 2 * (1500 - 200) * MIB * HOUR / (1e9 * 3.6e6)
    assert tuned.per_workflow["a"].wastage_gbh == pytest.approx(expected)
    assert report.rows[0].overall.failed_attempts == 0


def test_select_falls_back_to_fewest_failures() -> None:
    def metrics(failed: int, over: float) -> replay.Metrics:
        return replay.Metrics(tasks=1, over=over, failed_attempts=failed)

    scores = {"x": {"t": metrics(3, 1.0)}, "y": {"t": metrics(2, 9.0)}}
    assert lowo.select(["x", "y"], scores, {"t": metrics(0, 0.0)}, ["t"]) == "y"
    assert lowo.select(["x", "y"], scores, {"t": metrics(3, 0.0)}, ["t"]) == "x"


def test_tool_key_and_prior_book() -> None:
    task = _task(
        1, 200, start=0.0, process="NF:SUB:SAMTOOLS_SORT", image="quay.io/bc/samtools:1.15--h1"
    )
    assert priors.tool_key(task) == ("SAMTOOLS_SORT", "quay.io/bc/samtools")
    assert priors.tool_key(_task(1, 1, start=0, image="host:5000/img")) == ("P", "host:5000/img")
    book = priors.PriorBook()
    other = _task(7, 300, start=0.0, process="X:SAMTOOLS_SORT", image="quay.io/bc/samtools:1.16")
    book.add_run(traces.Run(name="x/trace-1", tasks=(other,)), processes=False)
    found = book.priors(task)
    assert [(p.source, p.peaks) for p in found] == [(base.PriorSource.TOOL, (300.0 * MIB,))]
    book.add_run(traces.Run(name="w/trace-1", tasks=(task,)), tools=False)
    assert [p.source for p in book.priors(task)] == [base.PriorSource.TOOL, base.PriorSource.RUN]


def _write(root: pathlib.Path, workflow: str, peak_mib: int) -> None:
    header = ";".join(
        [
            "task_id",
            "name",
            "status",
            "process",
            "container",
            "memory",
            "attempt",
            "submit",
            "start",
            "complete",
            "realtime",
            "peak_rss",
            "rchar",
        ]
    )
    rows = [header]
    for i in range(1, 4):
        start = int((i - 1) * HOUR)
        rows.append(
            f"{i};T ({i});COMPLETED;{workflow.upper()}:T;img:1;{2048 * MIB};1;0;{start};"
            f"{start + int(HOUR)};{int(HOUR)};{peak_mib * MIB};{100 * i}"
        )
    (root / workflow).mkdir()
    (root / workflow / "trace-1.csv").write_text("\n".join(rows))


def test_cli_leave_one_workflow_out(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for workflow, peak in (("alpha", 200), ("beta", 300), ("gamma", 250)):
        _write(tmp_path, workflow, peak)
    code = cli.main(["predict", "evaluate", str(tmp_path), "--leave-one-workflow-out", "--json"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["workflows"] == ["alpha", "beta", "gamma"]
    by_name = {row["predictor"]: row for row in payload["rows"]}
    assert {"ponder", "tovar", "wittlr", "wittpct", "envelope", "steady", "steady+tool"} <= set(
        by_name
    )
    assert set(by_name["steady"]["choices"]) == {"alpha", "beta", "gamma"}
    # The same tool (T, image "img") runs in every workflow: with tool priors the first task of
    # each held-out run is no longer a cold start.
    assert (
        by_name["steady+tool"]["overall"]["cold_starts"]
        < by_name["steady"]["overall"]["cold_starts"]
    )
    assert by_name["user-default"]["overall"]["failures"] == 0
    assert cli.main(["predict", "evaluate", str(tmp_path), "--leave-one-workflow-out"]) == 0
    out = capsys.readouterr().out
    assert "parameters chosen per held-out workflow" in out and "held out" in out
    assert "MAQ / cold-start share per held-out workflow" in out


def test_cli_leave_one_workflow_out_errors(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(tmp_path, "alone", 200)
    assert cli.main(["predict", "evaluate", str(tmp_path), "--leave-one-workflow-out"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "at least 2 workflows" in err
    args = ["predict", "evaluate", str(tmp_path), "--leave-one-workflow-out", "--predictor", "lr"]
    assert cli.main(args) == 2
    assert "fixed set" in capsys.readouterr().err
    assert cli.main(["predict", "evaluate", str(tmp_path)]) == 2
    assert "--predictor is required" in capsys.readouterr().err


def test_scored_runs_are_chosen_on_the_recorded_ones() -> None:
    runs = [_run("a/trace-1", 200), _run("b/trace-1", 200), _run("c/trace-1", 200)]
    bigger = [_run("a/trace-1", 1000), _run("b/trace-1", 1000), _run("c/trace-1", 1000)]
    rows = [
        lowo.Row(label="user-default", candidates=(("user-default", None),)),
        lowo.Row(label="tuned", candidates=(("small", _const(300)), ("large", _const(1500)))),
    ]
    report = lowo.evaluate(runs, rows, reference="user-default", scored=bigger)
    tuned = report.rows[1]
    # Chosen on the recorded runs (where "small" never fails), scored on the bigger ones.
    assert set(tuned.choices.values()) == {"small"}
    assert tuned.overall.failed_attempts == 6
    with pytest.raises(ValueError, match="same runs"):
        lowo.evaluate(runs, rows, reference="user-default", scored=bigger[:2])


SHARED = pathlib.Path(__file__).resolve().parents[3].parent / "shared" / "data" / "nfcore-traces"


@pytest.mark.skipif(not SHARED.exists(), reason="shared workflow data not mounted")
def test_leave_one_workflow_out_on_a_small_subset_of_the_shared_traces() -> None:
    files = [SHARED / w / "trace-1.csv" for w in ("ampliseq", "sarek")]
    runs = predict.load_runs(files, default_request=None)
    report = lowo.evaluate(runs, predict.lowo_rows(), reference="ponder")
    assert report.workflows == ("ampliseq", "sarek")
    rows = {row.label: row for row in report.rows}
    ponder = registry.parse_predictor("ponder").make
    for run in runs:
        direct = replay.replay_run(run, ponder).metrics
        assert rows["ponder"].per_workflow[lowo.workflow_of(run.name)] == direct
    grid = set(predict.LOWO_TUNED["steady"])
    assert set(rows["steady"].choices.values()) <= grid
    assert rows["steady+tool"].choices == rows["steady"].choices
    assert rows["steady+tool"].overall.cold_starts <= rows["steady"].overall.cold_starts
    assert rows["user-default"].overall.failed_attempts == 0
