"""Cold starts of the daemon's memory model: tool and run priors."""

import json

import pytest

from predictors import base
from scheduler import registry
from scheduler.core import resources, workflow
from scheduler.kube import translate
from scheduler.runtime import memory

MIB = 1 << 20
GIB = 1 << 30
SAMTOOLS = "quay.io/biocontainers/samtools"


def _task(step, *, run, memory_mib=8192, task_id="t"):
    return workflow.Task(
        key=workflow.TaskKey(workflow.RunId(run), task_id),
        step=workflow.StepName(step),
        submission=1,
        request=resources.Resources(cpu_millis=100, memory_bytes=memory_mib * MIB, pods=1),
    )


def _model(spec="steady", **kwargs):
    return memory.MemoryModel(registry.parse_predictor(spec), **kwargs)


def _learn(model, run, step, image, peaks_mib):
    """A finished workflow ``run`` whose ``step`` ran in ``image`` with these peaks."""
    model.set_workflow(workflow.RunId(run), run.split("/")[-1])
    key = model.key(workflow.RunId(run), step)
    model.set_image(key, image)
    for peak in peaks_mib:
        assert model.observe(key, 0, peak * MIB)
    return key


def _expected_plan(model, priors, request_mib=8192):
    """What a fresh predictor of the same spec seeded with ``priors`` plans."""
    predictor = model.spec.make()
    for prior in priors:
        predictor.seed(prior)
    prediction = predictor.predict(0.0)
    assert prediction is not None
    return model.policy.allocate(prediction, request_bytes=request_mib * MIB)


def test_first_task_of_a_known_tool_is_planned_from_the_prior_not_the_request():
    model = _model()
    _learn(model, "ns/sarek", "NFCORE_SAREK:SAMTOOLS_SORT", f"{SAMTOOLS}:1.17--h00", [200, 220])
    model.set_workflow(workflow.RunId("ns/rnaseq"), "rnaseq")
    task = _task("NFCORE_RNASEQ:ALIGN:SAMTOOLS_SORT", run="ns/rnaseq")
    model.set_image(model.key(task.run, task.step), f"{SAMTOOLS}:1.18--h11")

    planned = model.plan(task)

    tool_prior = base.Prior(source=base.PriorSource.TOOL, peaks=(220 * MIB, 200 * MIB))
    assert planned == _expected_plan(model, [tool_prior])
    assert planned is not None and planned < task.request.memory_bytes
    assert model.priors_for(model.key(task.run, task.step)) == (tool_prior,)


def test_envelope_plans_a_known_tool_from_the_prior_too():
    model = _model("envelope")
    _learn(model, "ns/sarek", "NFCORE_SAREK:SAMTOOLS_SORT", f"{SAMTOOLS}:1.17--h00", [200, 220])
    model.set_workflow(workflow.RunId("ns/rnaseq"), "rnaseq")
    task = _task("NFCORE_RNASEQ:ALIGN:SAMTOOLS_SORT", run="ns/rnaseq")
    model.set_image(model.key(task.run, task.step), f"{SAMTOOLS}:1.18--h11")
    # 220 MiB from another pipeline: x 2, as one observation x (1 + 2), + 128 MiB, rounded up.
    assert model.plan(task) == (2 * 220 * 3 + 128) * MIB
    without = _model("envelope", use_priors=False)
    _learn(without, "ns/sarek", "NFCORE_SAREK:SAMTOOLS_SORT", f"{SAMTOOLS}:1.17--h00", [200, 220])
    without.set_workflow(workflow.RunId("ns/rnaseq"), "rnaseq")
    without.set_image(without.key(task.run, task.step), f"{SAMTOOLS}:1.18--h11")
    assert without.plan(task) is None  # memory_priors off: a cold start keeps its request


@pytest.mark.parametrize(
    ("step", "image"),
    [
        ("NFCORE_RNASEQ:SAMTOOLS_SORT", "quay.io/biocontainers/bwa:0.7"),  # other image
        ("NFCORE_RNASEQ:SAMTOOLS_INDEX", f"{SAMTOOLS}:1.17--h00"),  # other command
        ("NFCORE_RNASEQ:SAMTOOLS_SORT", ""),  # image unknown
    ],
)
def test_no_prior_without_the_same_tool(step, image):
    model = _model()
    _learn(model, "ns/sarek", "NFCORE_SAREK:SAMTOOLS_SORT", f"{SAMTOOLS}:1.17--h00", [200])
    model.set_workflow(workflow.RunId("ns/rnaseq"), "rnaseq")
    task = _task(step, run="ns/rnaseq")
    model.set_image(model.key(task.run, task.step), image)
    assert model.plan(task) is None
    assert model.plan(task) is None  # cached negative lookup answers the same


def test_priors_can_be_turned_off():
    model = _model(use_priors=False)
    _learn(model, "ns/sarek", "NFCORE_SAREK:SAMTOOLS_SORT", f"{SAMTOOLS}:1.17", [200])
    model.set_workflow(workflow.RunId("ns/rnaseq"), "rnaseq")
    task = _task("NFCORE_RNASEQ:SAMTOOLS_SORT", run="ns/rnaseq")
    model.set_image(model.key(task.run, task.step), f"{SAMTOOLS}:1.17")
    assert model.plan(task) is None


def test_same_step_under_another_workflow_key_is_a_run_prior_that_outranks_the_tool():
    model = _model()
    step = "NFCORE_RNASEQ:SAMTOOLS_SORT"
    _learn(model, "ns/other", "NFCORE_SAREK:SAMTOOLS_SORT", f"{SAMTOOLS}:1.17", [900])
    _learn(model, "ns/rnaseq-1", step, f"{SAMTOOLS}:1.17", [300])
    task = _task(step, run="ns/unnamed-run")  # no workflow name: keyed by its run id
    model.set_image(model.key(task.run, task.step), f"{SAMTOOLS}:1.17")
    found = model.priors_for(model.key(task.run, task.step))
    assert [p.source for p in found] == [base.PriorSource.TOOL, base.PriorSource.RUN]
    assert model.plan(task) == _expected_plan(model, found)
    # steady: a run prior supersedes one from other pipelines
    run_only = [p for p in found if p.source is base.PriorSource.RUN]
    assert model.plan(task) == _expected_plan(model, run_only)


def test_seeds_and_plans_are_identical_after_export_and_restore():
    model = _model()
    _learn(model, "ns/sarek", "NFCORE_SAREK:SAMTOOLS_SORT", f"{SAMTOOLS}:1.17", [200, 260])
    model.set_workflow(workflow.RunId("ns/rnaseq"), "rnaseq")
    task = _task("NFCORE_RNASEQ:SAMTOOLS_SORT", run="ns/rnaseq")
    key = model.key(task.run, task.step)
    model.set_image(key, f"{SAMTOOLS}:1.18")
    before_own = model.plan(task)
    model.observe(key, 0, 150 * MIB)  # the prior still shapes the spread after this
    # More peaks of the tool arrive later: they must not re-seed the existing model.
    _learn(model, "ns/sarek", "NFCORE_SAREK:SAMTOOLS_SORT", f"{SAMTOOLS}:1.17", [4000])
    text = model.export()

    restored = _model()
    assert restored.restore(text) == model.observations
    restored.set_workflow(task.run, "rnaseq")
    assert restored.plan(task) == model.plan(task)
    assert json.loads(restored.export()) == json.loads(text)
    assert restored.tool(key) == ("SAMTOOLS_SORT", SAMTOOLS)
    assert before_own is not None


def test_a_store_without_priors_seeds_from_what_it_restored_before():
    old = {
        "format": memory.STORE_FORMAT,
        "predictor": "steady",
        "steps": [
            {"workflow": "sarek", "step": "SAMTOOLS_SORT", "history": [[1, 0, 200.0 * MIB]]},
            {"workflow": "rnaseq", "step": "SAMTOOLS_SORT", "history": [[1, 0, 100.0 * MIB]]},
        ],
    }
    model = _model()
    assert model.restore(json.dumps(old)) == 2
    seeded = json.loads(model.export())["steps"][1]
    assert seeded["priors"] == [{"source": "run", "peaks": [200.0 * MIB]}]


def test_malformed_priors_are_refused():
    bad = {
        "format": memory.STORE_FORMAT,
        "steps": [
            {
                "workflow": "w",
                "step": "s",
                "history": [],
                "priors": [{"source": "elsewhere", "peaks": [1.0]}],
            }
        ],
    }
    with pytest.raises(ValueError):
        _model().restore(json.dumps(bad))


def test_prior_peaks_are_bounded_and_trimmed_with_the_history():
    model = _model(max_per_step=3)
    _learn(model, "ns/a", "X:TOOL", "img", [100, 110, 120, 130, 140])
    model.set_workflow(workflow.RunId("ns/b"), "b")
    task = _task("Y:TOOL", run="ns/b")
    model.set_image(model.key(task.run, task.step), "img")
    (prior,) = model.priors_for(model.key(task.run, task.step))
    assert prior.peaks == (140 * MIB, 130 * MIB, 120 * MIB)  # newest first, max_per_step
    assert model.plan(task) is not None
    small = json.loads(model.export(max_bytes=300))
    assert all(len(p["peaks"]) <= 1 for s in small["steps"] for p in s["priors"])


def test_pod_facts_read_the_first_container_image_and_slim_pods_keep_it():
    pod = {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
        "spec": {
            "containers": [
                {"name": "main", "image": f"{SAMTOOLS}:1.17", "env": [{"name": "A"}]},
                {"name": "side", "image": "busybox"},
            ]
        },
        "status": {},
    }
    slim = translate.slim_pod(json.loads(json.dumps(pod)))
    assert slim["spec"]["containers"][0]["image"] == f"{SAMTOOLS}:1.17"
    assert translate.pod_facts(slim).first_container_image == f"{SAMTOOLS}:1.17"
    assert translate.pod_facts({**pod, "spec": {}}).first_container_image == ""


def test_an_image_learned_after_a_fruitless_lookup_is_used_at_once():
    model = _model()
    _learn(model, "ns/sarek", "NFCORE_SAREK:SAMTOOLS_SORT", f"{SAMTOOLS}:1.17", [200])
    model.set_workflow(workflow.RunId("ns/rnaseq"), "rnaseq")
    task = _task("NFCORE_RNASEQ:SAMTOOLS_SORT", run="ns/rnaseq")
    assert model.plan(task) is None  # no image yet: no tool key
    model.set_image(model.key(task.run, task.step), f"{SAMTOOLS}:1.17")
    assert model.plan(task) is not None


@pytest.mark.parametrize(
    ("process", "image", "want"),
    [
        ("A:B:SAMTOOLS_SORT", f"{SAMTOOLS}:1.17--h00", ("SAMTOOLS_SORT", SAMTOOLS)),
        ("SORT", "registry:5000/samtools", ("SORT", "registry:5000/samtools")),
        ("SORT", "registry:5000/samtools@sha256:ab", ("SORT", "registry:5000/samtools")),
        ("SORT", "samtools:1.2@sha256:ab", ("SORT", "samtools")),
    ],
)
def test_tool_keys_drop_tag_and_digest_but_keep_a_registry_port(process, image, want):
    from predictors import priors

    assert priors.tool_of(process, image) == want
