"""Parsing Nextflow traces and WfFormat instances, and the data hygiene."""

import json

import pytest

from predictors import base, traces

MIB = base.MIB


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("6442450944", 6442450944),
        ("2 GB", 2 << 30),
        ("1.5 MB", 3 << 19),
        ("512 KB", 512 << 10),
        ("100 B", 100),
        ("3", 3),
        ("-", None),
        ("", None),
    ],
)
def test_parse_size(text: str, expected: int | None) -> None:
    assert traces.parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("102", 102.0),
        ("1m 3s", 63_000.0),
        ("2.5s", 2_500.0),
        ("1h 2m", 3_720_000.0),
        ("1d", 86_400_000.0),
        ("15ms", 15.0),
        ("-", None),
    ],
)
def test_parse_duration(text: str, expected: float | None) -> None:
    assert traces.parse_duration(text) == expected


def test_parse_timestamp() -> None:
    assert traces.parse_timestamp("1667812121000") == 1667812121000.0
    assert traces.parse_timestamp("1970-01-01 00:00:01.500") == 1500.0
    assert traces.parse_timestamp("-") is None


@pytest.mark.parametrize("bad", ["abc", "2 XB", "1m x"])
def test_unparseable_values(bad: str) -> None:
    with pytest.raises(ValueError):
        traces.parse_size(bad) if "m" not in bad else traces.parse_duration(bad)


def test_separator_detection_and_missing_columns() -> None:
    header = "process,status,memory,start,complete,realtime,peak_rss"
    assert traces.detect_separator(header) == ","
    assert traces.detect_separator(header.replace(",", "\t")) == "\t"
    with pytest.raises(traces.TraceError):
        traces.detect_separator("process;status")
    with pytest.raises(traces.TraceError):
        traces.parse_nextflow_trace("", name="x")


def test_hygiene_counts_and_first_attempt_request() -> None:
    header = "task_id;name;status;process;memory;attempt;start;complete;realtime;peak_rss;rchar"
    rows = [
        header,
        "1;A (x);FAILED;A;1073741824;1;0;5;5;-;-",
        "2;A (x);COMPLETED;A;2147483648;2;10;20;10;1000;5",
        "3;B (y);COMPLETED;B;2147483648;2;10;20;10;1000;5",
        "4;C (z);CACHED;C;1;1;0;1;1;1;1",
        "5;D (t;ag);COMPLETED;D;1;1;0;1;1;1;1",
        "6;E (w);COMPLETED;E;1;1;0;1;1;1",
        "7;F (v);COMPLETED;F;12 parsecs;1;0;1;1;1;1",
    ]
    run = traces.parse_nextflow_trace("\n".join(rows), name="r")
    assert [t.order for t in run.tasks] == [2, 3]
    assert run.tasks[0].request_bytes == 1 << 30  # recovered from the FAILED first attempt
    assert run.tasks[1].request_bytes == 2 << 30  # no first attempt: kept
    assert run.dropped == {"failed": 1, "cached": 1, "malformed": 2, "unparseable": 1}
    assert run.notes == {"retry: first request recovered": 1, "retry: escalated request kept": 1}


def wf_instance(parents_of_a: list[str] | None = None) -> str:
    def spec(tid: str, parents: list[str], inputs: list[str]) -> dict[str, object]:
        return {
            "id": tid,
            "name": tid,
            "parents": parents,
            "children": [],
            "inputFiles": inputs,
            "outputFiles": [],
        }

    return json.dumps(
        {
            "workflow": {
                "specification": {
                    "tasks": [
                        spec("a_ID01", parents_of_a or [], ["f1"]),
                        spec("b_ID02", ["a_ID01"], ["f1", "f2"]),
                        spec("b_ID03", ["a_ID01", "b_ID02"], []),
                    ],
                    "files": [{"id": "f1", "sizeInBytes": 100}, {"id": "f2", "sizeInBytes": 50}],
                },
                "execution": {
                    "tasks": [
                        {"id": "a_ID01", "runtimeInSeconds": 10, "memoryInBytes": 2 * MIB},
                        {"id": "b_ID02", "runtimeInSeconds": 5, "memoryInBytes": 1536 * MIB},
                        {"id": "b_ID03", "runtimeInSeconds": 20},
                    ]
                },
            }
        }
    )


def test_wfformat_schedule_inputs_and_presets() -> None:
    run = traces.parse_wfformat(wf_instance(), name="wf")
    a, b2, b3 = run.tasks
    assert (a.process, b2.process, b3.process) == ("a", "b", "b")
    assert (a.start_ms, a.complete_ms) == (0, 10_000)
    assert (b2.start_ms, b2.complete_ms) == (10_000, 15_000)
    assert (b3.start_ms, b3.complete_ms) == (15_000, 35_000)
    assert (a.input_bytes, b2.input_bytes, b3.input_bytes) == (100, 150, 0)
    assert (a.peak_bytes, b2.peak_bytes, b3.peak_bytes) == (2 * MIB, 1536 * MIB, None)
    assert (a.request_bytes, b2.request_bytes) == (1 << 30, 2 << 30)  # power-of-two presets
    fixed = traces.parse_wfformat(wf_instance(), name="wf", default_request=5 << 30)
    assert {t.request_bytes for t in fixed.tasks} == {5 << 30}


def test_wfformat_errors() -> None:
    with pytest.raises(traces.TraceError, match="cycle"):
        traces.parse_wfformat(wf_instance(parents_of_a=["b_ID03"]), name="wf")
    with pytest.raises(traces.TraceError):
        traces.parse_wfformat("{not json", name="wf")
    with pytest.raises(traces.TraceError):
        traces.parse_wfformat('{"workflow": {}}', name="wf")
