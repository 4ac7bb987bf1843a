"""The one WfFormat reader: 1.5 (specification joined with execution) and 1.4 (inline)."""

from __future__ import annotations

import json

import pytest

from predictors import traces, wfformat


def v15(tasks: list[dict], executions: list[dict], files: list[dict] | None = None) -> dict:
    return {
        "workflow": {
            "specification": {"tasks": tasks, "files": files or []},
            "execution": {"tasks": executions},
        }
    }


def test_a_15_task_joins_its_specification_and_execution_record() -> None:
    document = v15(
        [
            {"id": "a", "name": "align_ID01", "children": ["b"], "inputFiles": ["f1", "ghost"]},
            {"id": "b", "parents": ["a"], "inputFiles": ["ghost"], "category": "merge"},
        ],
        [
            {"id": "b", "runtimeInSeconds": 2, "readBytes": 77},
            {
                "id": "a",
                "runtimeInSeconds": 1.5,
                "avgCPU": 250,
                "memoryInBytes": 1024,
                "command": {"program": "bwa"},
            },
        ],
        files=[{"id": "f1", "sizeInBytes": 40}],
    )
    a, b = wfformat.parse(document)
    assert a == wfformat.WfTask(
        id="a",
        name="align_ID01",
        category=None,
        program="bwa",
        parents=(),
        children=("b",),
        input_bytes=40,
        read_bytes=None,
        runtime_s=1.5,
        avg_cpu=250.0,
        memory_bytes=1024,
    )
    assert (b.name, b.category, b.input_bytes, b.read_bytes, b.memory_bytes) == (
        "b",
        "merge",
        None,  # no input file of known size: the callers choose their fallback
        77,
        None,
    )
    assert wfformat.process_name(a.name) == "align"


def test_a_14_task_is_one_inline_record_with_its_files() -> None:
    document = {
        "workflow": {
            "tasks": [
                {
                    "id": "a",
                    "runtimeInSeconds": 3,
                    "files": [{"link": "input", "size": 9}, {"link": "output", "size": 500}],
                }
            ]
        }
    }
    (task,) = wfformat.parse(document)
    assert (task.id, task.runtime_s, task.input_bytes) == ("a", 3.0, 9)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "JSON object"),
        ('{"workflow": {"specification": {"tasks": [{"id": "a"}]}}}', "workflow.execution"),
        (json.dumps(v15([{"id": "a"}], [])), "valid id"),
        (json.dumps(v15([{"id": "a"}], [{"id": "a", "runtimeInSeconds": "x"}])), "'a'"),
        (json.dumps(v15([{"id": "a"}], [{"id": "a", "runtimeInSeconds": -1}])), "runtime"),
        (
            json.dumps(v15([{"id": "a", "parents": ["z"]}], [{"id": "a", "runtimeInSeconds": 1}])),
            "unknown task 'z'",
        ),
    ],
)
def test_malformed_instances_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(wfformat.InstanceError, match=message):
        wfformat.loads(text)


def test_the_memory_replay_refuses_what_the_reader_refuses() -> None:
    text = json.dumps(v15([{"id": "a", "parents": ["z"]}], [{"id": "a", "runtimeInSeconds": 1}]))
    with pytest.raises(traces.TraceError, match="unknown task 'z'"):
        traces.parse_wfformat(text, name="wf")
