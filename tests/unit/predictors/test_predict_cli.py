"""``wfsched predict evaluate``: output shapes and exit codes."""

import json
import pathlib

import predictor_tiny_trace
import pytest

from scheduler import cli

RAW_TRACE = predictor_tiny_trace.RAW_TRACE
WASTAGE_GBH = predictor_tiny_trace.WASTAGE_GBH


@pytest.fixture
def trace_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "trace-1.csv").write_text(RAW_TRACE)
    (tmp_path / "tiny" / "notes.txt").write_text("ignored")
    return tmp_path


def test_json_single_predictor(trace_dir: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["predict", "evaluate", str(trace_dir), "--predictor", "const0", "--json"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["predictor"] == "const0"
    run = payload["workflows"]["tiny/trace-1"]
    assert run["wastage_gbh"] == pytest.approx(WASTAGE_GBH)
    assert run["maq"] == pytest.approx(500 / 1836)
    assert (run["failures"], run["tasks"]) == (1, 3)
    assert payload["overall"]["wastage_gbh"] == pytest.approx(WASTAGE_GBH)


def test_all_predictors(trace_dir: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["predict", "evaluate", str(trace_dir), "--predictor", "all", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    names = [entry["predictor"] for entry in payload]
    assert names[:2] == ["user-default", "const0"] and "ponder" in names and "envelope" in names
    assert payload[0]["overall"]["failures"] == 0
    assert cli.main(["predict", "evaluate", str(trace_dir), "--predictor", "all"]) == 0
    out = capsys.readouterr().out
    assert "const0 (max observed)" in out and "protocol: decision=start" in out


def test_human_table_single(trace_dir: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["predict", "evaluate", str(trace_dir), "--predictor", "lr"]) == 0
    out = capsys.readouterr().out
    assert "predictor: lr" in out and "tiny/trace-1" in out and "overall" in out


@pytest.mark.parametrize(
    "extra",
    [
        ["--predictor", "nonsense"],
        ["--predictor", "lr-offset=bogus"],
        ["--predictor", "lr", "--default-request", "lots"],
    ],
)
def test_bad_arguments_exit_2(
    trace_dir: pathlib.Path, capsys: pytest.CaptureFixture[str], extra: list[str]
) -> None:
    assert cli.main(["predict", "evaluate", str(trace_dir), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err and "Traceback" not in err


def test_unreadable_inputs_exit_2(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "trace-x.csv"
    bad.write_text("not;a;trace\n1;2;3\n")
    for path in (bad, tmp_path / "missing.csv", tmp_path / "empty_dir"):
        if path.name == "empty_dir":
            path.mkdir()
        assert cli.main(["predict", "evaluate", str(path), "--predictor", "lr"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(path) in err


def test_tasks_csv(trace_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "tasks.csv"
    assert (
        cli.main(
            [
                "predict",
                "evaluate",
                str(trace_dir),
                "--predictor",
                "const0",
                "--tasks-csv",
                str(out),
            ]
        )
        == 0
    )
    lines = out.read_text().splitlines()
    assert len(lines) == 4 and lines[0].startswith("predictor,run,process")


def test_grow_in_place_and_synthetic_flags(
    trace_dir: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["predict", "evaluate", str(trace_dir), "--predictor", "const0", "--json"]
    assert cli.main([*args, "--grow-in-place", "--grow-room", "1", "--grow-from", "0"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["protocol"]["grow_in_place"]["room_probability"] == 1.0
    run = payload["workflows"]["tiny/trace-1"]
    assert (run["failures"], run["growths"]) == (0, 1)
    assert cli.main([*args, "--synthetic-production"]) == 0
    captured = capsys.readouterr()
    assert "synthetic variant of tiny/trace-1: request/peak" in captured.err
    for bad in (["--grow-room", "2"], ["--grow-from", "-1"], ["--score-synthetic"]):
        assert cli.main([*args, "--grow-in-place", *bad]) == 2
        assert "error:" in capsys.readouterr().err
