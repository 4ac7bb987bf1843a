import json

import pytest

from scheduler import registry
from scheduler.core import resources, workflow
from scheduler.runtime import memory

MIB = 1 << 20


def _task(step="s", *, run="ns/r", memory_mib=1024, attempt=0, size=0, task_id="t", cpu_millis=100):
    return workflow.Task(
        key=workflow.TaskKey(workflow.RunId(run), task_id),
        step=workflow.StepName(step),
        submission=1,
        request=resources.Resources(cpu_millis=cpu_millis, memory_bytes=memory_mib * MIB, pods=1),
        input_size=size,
        attempt=attempt,
    )


def _model(spec="mean-offset=none", **kwargs):
    return memory.MemoryModel(registry.parse_predictor(spec), **kwargs)


def test_plans_from_earlier_observations_only_and_never_above_the_request():
    model = _model()
    task = _task()
    assert model.plan(task) is None  # cold start keeps the user's request
    key = model.key(task.run, task.step)
    assert model.observe(key, 0, 200 * MIB)
    assert model.observe(key, 0, 301 * MIB)
    assert model.plan(task) == 251 * MIB  # mean 250.5 MiB, rounded up to a whole MiB
    assert model.plan(_task(memory_mib=200)) is None  # plan would not shrink: keep request
    assert model.plan(_task(attempt=1)) is None  # retries are never shrunk


def test_floor_cap_and_unscalable_tasks():
    model = _model(floor_bytes=300 * MIB, cap_bytes=None)
    key = model.key(workflow.RunId("ns/r"), "s")
    model.observe(key, 0, 10 * MIB)
    assert model.plan(_task()) == 300 * MIB
    model.mark_unscalable(_task().key)
    assert model.plan(_task()) is None
    capped = _model(floor_bytes=0, cap_bytes=64 * MIB)
    capped.observe(key, 0, 500 * MIB)
    assert capped.plan(_task()) == 64 * MIB


def test_floor_per_cpu_follows_the_pods_cpu_request():
    model = _model(floor_bytes_per_cpu=256 * MIB)
    key = model.key(workflow.RunId("ns/r"), "s")
    model.observe(key, 0, 10 * MIB)
    assert model.plan(_task(cpu_millis=4000, memory_mib=8192)) == 1024 * MIB
    assert model.plan(_task(cpu_millis=100)) == 128 * MIB  # the flat floor is larger here
    assert model.plan(_task(cpu_millis=8000, memory_mib=1024)) is None  # would not shrink


def test_workflow_name_shares_models_across_runs():
    model = _model()
    model.set_workflow(workflow.RunId("ns/run-1"), "rnaseq")
    model.set_workflow(workflow.RunId("ns/run-2"), "rnaseq")
    model.observe(model.key(workflow.RunId("ns/run-1"), "s"), 0, 100 * MIB)
    assert model.plan(_task(run="ns/run-2")) == 128 * MIB  # the 128 MiB default floor


@pytest.mark.parametrize(("x", "y"), [(-1, 5), (0, 0), (float("nan"), 5), (0, float("inf"))])
def test_invalid_observations_are_refused(x, y):
    model = _model()
    assert not model.observe(("w", "s"), x, y)
    assert model.observations == 0


def test_export_restore_round_trip_rebuilds_identical_predictions():
    model = _model("lr-offset=none")
    key = ("wf", "s")
    for x, y in [(1e9, 2e9), (2e9, 3e9), (3e9, 4.5e9)]:
        model.observe(key, x, y)
    model.observe_failure(key, 4e9, 1e9)
    text = model.export()
    again = _model("lr-offset=none")
    assert again.restore(text) == 4
    assert again.predict(key, 5e9) == pytest.approx(model.predict(key, 5e9))


def test_export_is_bounded_and_keeps_the_newest():
    model = _model()
    for i in range(2000):
        model.observe(("wf", "s"), float(i), float(i + 1) * MIB)
    text = model.export(max_bytes=5000)
    assert len(text) <= 5000
    history = json.loads(text)["steps"][0]["history"]
    assert history[-1][1] == 1999.0


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        "not json",
        '{"format": 99}',
        '{"format": 1, "steps": [{"x": 1}]}',
        '{"format": 1, "steps": [{"workflow": "w", "step": "s", "history": [[1, 2]]}]}',
        '{"format": 1, "steps": 5}',
        "[" * 100_000 + "]" * 100_000,
    ],
)
def test_restore_rejects_malformed_content_with_a_value_error(text):
    model = _model()
    with pytest.raises(ValueError):
        model.restore(text)
    assert model.export() == _model().export()
