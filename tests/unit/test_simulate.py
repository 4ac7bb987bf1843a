import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import pytest

from scheduler import cli, registry
from scheduler.core import context, resources, workflow
from scheduler.devtools import simulate

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "wfinstances"


def instance(
    tasks: list[dict[str, Any]], files: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    spec = [
        {
            "name": t.get("name", f"{t['id']}_ID01"),
            "id": t["id"],
            "parents": t.get("parents", []),
            "children": [c["id"] for c in tasks if t["id"] in c.get("parents", [])],
            "inputFiles": t.get("inputs", []),
            "outputFiles": [],
        }
        for t in tasks
    ]
    execution = [
        {
            "id": t["id"],
            "runtimeInSeconds": t["runtime"],
            "avgCPU": t.get("avgCPU", 90.0),
            **({"memoryInBytes": t["memory"]} if "memory" in t else {}),
            **t.get("extra", {}),
        }
        for t in tasks
    ]
    return {
        "name": "tiny",
        "schemaVersion": "1.5",
        "workflow": {
            "specification": {"tasks": spec, "files": files or []},
            "execution": {"makespanInSeconds": 0, "tasks": execution},
        },
    }


TINY = instance(
    [
        {"id": "r1", "runtime": 5, "inputs": ["f50"]},
        {"id": "r2", "runtime": 5, "inputs": ["f100"]},
        {"id": "r3", "runtime": 1},
        {"id": "c", "runtime": 10, "parents": ["r3"], "inputs": ["f10"]},
    ],
    files=[
        {"id": "f50", "sizeInBytes": 50},
        {"id": "f100", "sizeInBytes": 100},
        {"id": "f10", "sizeInBytes": 10},
    ],
)
ONE_NODE_TWO_CPU = simulate.ClusterSpec(nodes=1, node_cpu_millis=2000)


@pytest.mark.parametrize(
    ("strategy", "makespan"),
    [
        # fifo: r1, r2 at 0; r3 at 5; c 6-16
        ("fifo", 16.0),
        # rank: r3 (rank 1) and r1 at 0; at 1 r2 (older id) beats c; c waits for r1: 5-15
        ("rank", 15.0),
        # rank_min: as rank, but at 1 c (10 bytes) beats r2 (100 bytes): c 1-11
        ("rank_min", 11.0),
        ("critical_path", 11.0),
    ],
)
def test_tiny_instance_known_makespan(strategy: str, makespan: float) -> None:
    parsed = simulate.parse_instance(TINY)
    result = simulate.simulate(
        parsed, strategy=registry.parse_strategy(strategy), cluster_spec=ONE_NODE_TWO_CPU
    )
    assert result.makespan_s == makespan
    assert result.tasks == 4
    assert result.cpu_utilization == pytest.approx(21 / (2 * makespan))


def test_multi_core_task_takes_the_whole_node() -> None:
    doc = instance([{"id": "wide", "runtime": 4, "avgCPU": 150.0}, {"id": "narrow", "runtime": 4}])
    parsed = simulate.parse_instance(doc)
    assert [t.cpu_millis for t in parsed.tasks] == [2000, 1000]
    result = simulate.simulate(
        parsed, strategy=registry.parse_strategy("fifo"), cluster_spec=ONE_NODE_TWO_CPU
    )
    assert result.makespan_s == 8.0


def test_oversized_requests_are_clamped_to_the_node() -> None:
    doc = instance([{"id": "huge", "runtime": 2, "avgCPU": 800.0, "memory": 64 * 2**30}])
    result = simulate.simulate(
        simulate.parse_instance(doc),
        strategy=registry.parse_strategy("fifo"),
        cluster_spec=ONE_NODE_TWO_CPU,
    )
    assert (result.makespan_s, result.clamped_tasks) == (2.0, 1)


@pytest.mark.parametrize(
    ("task", "program", "step"),
    [
        ({"name": "mProject_ID0000001"}, "mProject", "mProject"),
        ({"name": "individuals_merge_ID0000141"}, "individuals_merge", "individuals_merge"),
        ({"name": "fast2bfq_fast2bfq_HEP2_s_1_sequence_3_ID0000004"}, "fast2bfq", "fast2bfq"),
        ({"name": "NFCORE_X.X.FASTQC"}, "fastqc \\\n --threads 2", "NFCORE_X.X.FASTQC"),
        ({"name": "blastall_ID000002", "category": "blast"}, "blastall", "blast"),
    ],
)
def test_step_naming(task: dict[str, Any], program: str, step: str) -> None:
    doc = instance([{"id": "t", "runtime": 1, "extra": {"command": {"program": program}}}])
    doc["workflow"]["specification"]["tasks"][0].update(task)
    assert simulate.parse_instance(doc).tasks[0].step == step


def test_input_size_sources_and_missing_memory() -> None:
    doc = instance(
        [
            {"id": "a", "runtime": 1, "inputs": ["x", "y"], "memory": 100},
            {"id": "b", "runtime": 1, "memory": 300, "extra": {"readBytes": 77}},
            {"id": "c", "runtime": 1},
        ],
        files=[{"id": "x", "sizeInBytes": 5}, {"id": "y", "sizeInBytes": 7}],
    )
    for t in doc["workflow"]["specification"]["tasks"]:
        t["name"] = "same_step_ID01"
    tasks = simulate.parse_instance(doc).tasks
    assert [t.input_size for t in tasks] == [12, 77, 0]
    assert [t.memory_bytes for t in tasks] == [100, 300, 200]  # c: median of its step


def test_wfformat_14_inline_tasks() -> None:
    doc = {
        "workflow": {
            "tasks": [
                {
                    "name": "a_ID1",
                    "id": "a",
                    "parents": [],
                    "children": ["b"],
                    "runtimeInSeconds": 2,
                    "avgCPU": 50,
                    "files": [
                        {"link": "input", "sizeInBytes": 9},
                        {"link": "output", "sizeInBytes": 1000},
                    ],
                },
                {
                    "name": "b_ID2",
                    "id": "b",
                    "parents": ["a"],
                    "children": [],
                    "runtimeInSeconds": 3,
                },
            ]
        }
    }
    parsed = simulate.parse_instance(doc)
    assert [t.input_size for t in parsed.tasks] == [9, 0]
    assert simulate.simulate(parsed, strategy=registry.parse_strategy("fifo")).makespan_s == 5.0


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "JSON object"),
        ({}, "workflow"),
        ({"workflow": {"specification": {"tasks": []}, "execution": {"tasks": []}}}, "non-empty"),
        (instance([{"id": "a", "runtime": 1, "parents": ["ghost"]}]), "unknown task 'ghost'"),
        (
            {"workflow": {"specification": {"tasks": [{"id": "a"}]}, "execution": {"tasks": []}}},
            "valid id",
        ),
        (
            {
                "workflow": {
                    "specification": {"tasks": [{"id": "a"}]},
                    "execution": {"tasks": [{"id": "a"}]},
                }
            },
            "runtimeInSeconds",
        ),
        (instance([{"id": "a", "runtime": -1}]), "runtime"),
    ],
)
def test_malformed_instances(doc: object, message: str) -> None:
    with pytest.raises(simulate.InstanceError, match=message):
        simulate.parse_instance(doc)


def test_cyclic_instance_is_an_instance_error() -> None:
    doc = instance(
        [{"id": "a", "runtime": 1, "parents": ["b"]}, {"id": "b", "runtime": 1, "parents": ["a"]}]
    )
    with pytest.raises(simulate.InstanceError, match="cycle"):
        simulate.simulate(simulate.parse_instance(doc), strategy=registry.parse_strategy("fifo"))


# -- command line --------------------------------------------------------------------------


@pytest.fixture
def tiny_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY))
    return path


def test_cli_json_single(tiny_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(
        [
            "simulate",
            str(tiny_file),
            "--strategy",
            "rank_min",
            "--nodes",
            "1",
            "--node-cpu",
            "2",
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert status == 0
    assert (
        out["makespan_s"] == 11.0
        and out["strategy"] == "rank_min"
        and out["assign"] == "roundrobin"
    )
    assert {"tasks", "nodes", "cpu_utilization"} <= out.keys()


def test_cli_compare_json_and_table(tiny_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        cli.main(
            ["simulate", str(tiny_file), "--compare", "--json", "--nodes", "1", "--assign", "fair"]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert [r["strategy"] for r in rows] == list(registry.RANKINGS)
    assert rows[0]["ratio_vs_fifo"] == 1.0 and all(r["assign"] == "fair" for r in rows)
    assert cli.main(["simulate", str(tiny_file), "--strategy", "all"]) == 0
    table = capsys.readouterr().out
    assert "critical_path / rank_min" in table and "vs_fifo" in table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategy", "bogus"], "unknown ranking policy 'bogus'"),
        (["--strategy", "fifo", "--assign", "nope"], "unknown assignment policy 'nope'"),
        (["--strategy", "a-b-c"], "3 parts"),
        (["--node-memory=-1Gi"], "negative quantity"),
        (["--nodes", "0"], "at least 1"),
        (["--earlier", "/nonexistent/earlier.json"], "cannot read /nonexistent/earlier.json"),
        (["--runtime-jitter", "-0.5"], "--runtime-jitter must be a number of seconds >= 0"),
        (["--runtime-jitter", "nan"], "--runtime-jitter must be a number of seconds >= 0"),
    ],
)
def test_cli_bad_arguments_exit_2_with_one_line(
    tiny_file: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert cli.main(["simulate", str(tiny_file), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("wfsched simulate: error:") and message in err


def test_runtime_jitter_lengthens_each_runtime_within_the_bound_reproducibly() -> None:
    parsed = simulate.parse_instance(TINY)
    jittered = simulate.with_runtime_jitter(parsed, jitter_s=0.3, seed=7)
    extra = [j.runtime_s - t.runtime_s for t, j in zip(parsed.tasks, jittered.tasks, strict=True)]
    assert all(0.0 <= e <= 0.3 for e in extra) and len(set(extra)) == len(extra)
    assert [t.id for t in jittered.tasks] == [t.id for t in parsed.tasks]
    assert dataclasses.replace(jittered, tasks=parsed.tasks) == parsed
    assert simulate.with_runtime_jitter(parsed, jitter_s=0.3, seed=7) == jittered
    assert simulate.with_runtime_jitter(parsed, jitter_s=0.3, seed=8) != jittered
    assert simulate.with_runtime_jitter(parsed, jitter_s=0.0, seed=7) is parsed


@pytest.mark.parametrize("jitter", [-0.1, float("inf"), float("nan")])
def test_runtime_jitter_must_be_a_finite_duration(jitter: float) -> None:
    with pytest.raises(ValueError, match="runtime jitter"):
        simulate.with_runtime_jitter(simulate.parse_instance(TINY), jitter_s=jitter)


def test_runtime_jitter_breaks_the_tie_of_tasks_released_together(
    tiny_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """r1 and r2 start together and end together at 5 s; jittered, they end apart, and the
    CLI's makespan is the jittered instance's (seeded by --seed)."""
    base = ["simulate", str(tiny_file), "--strategy", "fifo", "--nodes", "1", "--json"]
    assert cli.main(base) == 0
    plain = json.loads(capsys.readouterr().out)["makespan_s"]
    assert cli.main([*base, "--runtime-jitter", "0.5", "--seed", "3"]) == 0
    jittered = json.loads(capsys.readouterr().out)["makespan_s"]
    expected = simulate.simulate(
        simulate.with_runtime_jitter(simulate.parse_instance(TINY), jitter_s=0.5, seed=3),
        strategy=registry.parse_strategy("fifo"),
        cluster_spec=simulate.ClusterSpec(nodes=1),
        seed=3,
    ).makespan_s
    assert plain == 16.0 and jittered == expected and 16.0 < jittered <= 16.0 + 3 * 0.5


@pytest.mark.parametrize("content", ["{not json", '{"workflow": 3}', "[]"])
def test_cli_malformed_file_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    assert cli.main(["simulate", str(path), "--compare"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_missing_file_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["simulate", "/nonexistent/instance.json"]) == 2
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.skipif(
    not (SHARED / "nextflow-sarek.json").exists(), reason="shared workflow data not mounted"
)
def test_shared_instance_replays_every_task() -> None:
    parsed = simulate.load_instance(SHARED / "nextflow-sarek.json")
    result = simulate.simulate(parsed, strategy=registry.parse_strategy("rank_min-fair"))
    assert result.tasks == 26 and result.clamped_tasks == 0
    assert result.makespan_s >= max(t.runtime_s for t in parsed.tasks)


def test_a_dag_learned_on_release_hides_the_critical_child() -> None:
    same_inputs = instance(
        [
            {"id": "r1", "runtime": 5, "inputs": ["f"]},
            {"id": "r2", "runtime": 5, "inputs": ["f"]},
            {"id": "r3", "runtime": 1, "inputs": ["f"]},
            {"id": "c", "runtime": 10, "parents": ["r3"], "inputs": ["f"]},
        ],
        files=[{"id": "f", "sizeInBytes": 10}],
    )
    parsed = simulate.parse_instance(same_inputs)
    strategy = registry.parse_strategy("critical_path")
    whole = simulate.simulate(parsed, strategy=strategy, cluster_spec=ONE_NODE_TWO_CPU)
    released = simulate.simulate(
        dataclasses.replace(parsed, dag_known_upfront=False),
        strategy=strategy,
        cluster_spec=ONE_NODE_TWO_CPU,
    )
    # Knowing c behind r3 from the start (a chain of two tasks), r3 starts at 0 and c as soon
    # as r1 frees a CPU: 5-15. Learning c only when r3 is done (as the replay's daemon does),
    # nothing tells the roots apart: r1 and r2 first, then r3 at 5 and c at 6-16.
    assert (whole.makespan_s, released.makespan_s) == (15.0, 16.0)


def _task(task_id: str, submission: int) -> workflow.Task:
    return workflow.Task(
        key=workflow.TaskKey(workflow.RunId("r"), task_id),
        step=workflow.StepName("s"),
        submission=submission,
        request=resources.Resources(cpu_millis=1000, memory_bytes=0, pods=1),
    )


def test_kube_scheduler_model_backs_off_pods_that_did_not_fit() -> None:
    model = simulate.KubeSchedulerQueue()
    a, b = _task("a", 0), _task("b", 1)
    view = workflow.WorkflowDag(workflow.RunId("r"))

    def order(now: float) -> list[str]:
        ctx = context.CycleContext(cycle_id=1, now=now, rng=random.Random(0))
        return [t.key.task for t in model.rank([a, b], view, ctx)]

    assert order(0.0) == ["a", "b"]  # same queue time: submission order
    model.record_unplaced([a.key], 0.0)  # 1 s of backoff, queue time refreshed to 0
    assert order(0.5) == ["b", "a"]  # backing off: after the others
    assert order(2.0) == ["a", "b"]
    model.record_unplaced([a.key], 2.0)  # second failure: 2 s, queue time 2
    assert order(3.0) == ["b", "a"]
    assert order(5.0) == ["b", "a"]  # backoff over, but b has the older queue time
    for now in (5.0, 6.0, 7.0, 8.0):
        model.record_unplaced([a.key], now)
    assert model._backoff_until[a.key] == 8.0 + 10.0  # 2^5 s capped at 10 s


def test_kube_scheduler_model_in_the_simulator_and_the_cli(
    tiny_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = simulate.simulate_kube_scheduler(
        simulate.parse_instance(TINY), cluster_spec=ONE_NODE_TWO_CPU
    )
    # r1, r2 fit at 0; r3 backs off, is placed when they finish at 5; c runs 6-16
    assert (result.strategy, result.assign, result.makespan_s) == (
        "kube-scheduler",
        "balanced",
        16.0,
    )
    assert cli.main(["simulate", str(tiny_file), "--strategy", "kube-scheduler", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["strategy"] == "kube-scheduler"


def _released_instance(runtimes: dict[str, float]) -> simulate.Instance:
    """qc1, qc2 and trim are roots; align needs trim. Tasks are learned as they are released."""
    parents = {"align": ("trim",)}
    children = {"trim": ("align",)}
    return simulate.Instance(
        name="released",
        tasks=tuple(
            simulate.SimTask(
                id=name,
                step=name.rstrip("12"),
                parents=parents.get(name, ()),
                children=children.get(name, ()),
                runtime_s=seconds,
                cpu_millis=1000,
                memory_bytes=0,
                input_size=0,
            )
            for name, seconds in runtimes.items()
        ),
        dag_known_upfront=False,
    )


def test_an_earlier_run_tells_critical_path_what_a_released_task_leads_to() -> None:
    instance = _released_instance({"qc1": 10.0, "qc2": 10.0, "trim": 1.0, "align": 20.0})
    earlier = simulate.earlier_runs(instance)
    assert earlier.step_edges == (("trim", "align"),)
    assert earlier.step_runtimes == {"qc": 10.0, "trim": 1.0, "align": 20.0}
    spec = simulate.ClusterSpec(nodes=1, node_cpu_millis=2000)
    strategy = registry.parse_strategy("critical_path")
    # Without history the three roots tie and go in submission order: align starts at 10.
    cold = simulate.simulate(instance, strategy=strategy, cluster_spec=spec)
    assert cold.makespan_s == 31.0
    # Knowing trim leads to a 20 s align, trim goes first and align starts at 1.
    warm = simulate.simulate(instance, strategy=strategy, cluster_spec=spec, earlier=earlier)
    assert warm.makespan_s == 21.0
    fifo = registry.parse_strategy("fifo")
    assert simulate.simulate(instance, strategy=fifo, cluster_spec=spec, earlier=earlier) == (
        simulate.simulate(instance, strategy=fifo, cluster_spec=spec)
    )


def test_contradicting_earlier_edges_are_ignored_as_the_daemon_does() -> None:
    instance = _released_instance({"qc1": 10.0, "qc2": 10.0, "trim": 1.0, "align": 20.0})
    contradicting = simulate.EarlierRuns(
        step_runtimes={}, step_edges=(("trim", "align"), ("align", "trim"))
    )
    spec = simulate.ClusterSpec(nodes=1, node_cpu_millis=2000)
    strategy = registry.parse_strategy("critical_path")
    result = simulate.simulate(
        instance, strategy=strategy, cluster_spec=spec, earlier=contradicting
    )
    assert result.makespan_s == 31.0
