"""Snakemake's Kubernetes executor: run, rule and workflow read from its job pods; rule order
inferred from the order its jobs appear (Snakemake sends no DAG)."""

from typing import Any

from scheduler.kube import translate
from scheduler.runtime import workflows

CHECKSUM = "0ecf6d7122c9df107b3f7e02144a94497358e198726eaefcaadaccfb9f25a9d6"


def _command(rule: str) -> str:
    # The shape the executor (v0.5.1) gives the container's ``sh -c`` argument.
    return (
        "pip install --target '.snakemake/pip-deployments' snakemake-storage-plugin-fs && "
        "python -m snakemake --deploy-sources "
        f"/store/snakemake-workflow-sources.{CHECKSUM}.tar.xz {CHECKSUM} "
        "--default-storage-prefix '/store' --default-storage-provider 'fs'  && "
        f"python -m snakemake --snakefile 'Snakefile' --target-jobs '{rule}:sample=a' "
        f"--allowed-rules {rule} --cores 'all' --attempt 1 --force-use-threads --mode 'remote'"
    )


def _job_pod(
    name: str,
    rule: str,
    *,
    secret: str | None = "5c01a199-run-1",
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    env = (
        [{"name": "X", "valueFrom": {"secretKeyRef": {"name": secret, "key": "x"}}}]
        if secret
        else []
    )
    return {
        "metadata": {
            "name": f"{name}-abcde",
            "namespace": "ns",
            "uid": f"uid-{name}",
            "labels": {
                "batch.kubernetes.io/job-name": name,
                "job-name": name,
                **(labels or {}),
            },
        },
        "spec": {
            "schedulerName": "workflow-scheduler",
            "containers": [
                {
                    "name": "snakemake",
                    "image": "snakemake/snakemake:v9.27.1",
                    "command": ["/bin/sh"],
                    "args": ["-c", _command(rule)],
                    "env": env,
                    "resources": {"requests": {"cpu": "950m"}},
                }
            ],
        },
    }


def test_run_rule_and_workflow_are_read_from_the_job_pod() -> None:
    labels = workflows.read_task_labels(translate.pod_facts(_job_pod("snakejob-1111", "split")))
    assert labels.engine == "snakemake"
    assert labels.run == "ns/5c01a199-run-1"
    assert labels.step == "split"
    assert labels.workflow_name == f"snakemake-{CHECKSUM[:16]}"
    assert labels.task_id == "snakejob-1111-abcde"
    assert labels.problems == ()


def test_without_a_secret_the_run_falls_back_to_the_snakefile() -> None:
    labels = workflows.read_task_labels(
        translate.pod_facts(_job_pod("snakejob-2222", "merge", secret=None))
    )
    assert labels.run == f"ns/snakemake-{CHECKSUM[:16]}"
    assert labels.step == "merge"


def test_the_pods_own_labels_win_and_other_jobs_are_not_snakemake() -> None:
    own = workflows.read_task_labels(
        translate.pod_facts(
            _job_pod("snakejob-3333", "split", labels={"wfsched.io/run-id": "mine"})
        )
    )
    assert (own.engine, own.run, own.step) == ("wfsched", "ns/mine", "split")
    other = _job_pod("render-4444", "split")
    facts = translate.pod_facts(other)
    assert not any(k.startswith("snakemake.wfsched.io/") for k in facts.labels)
    assert workflows.read_task_labels(facts).engine == "none"


def test_a_job_that_does_not_run_snakemake_is_left_alone() -> None:
    pod = _job_pod("snakejob-5555", "split")
    pod["spec"]["containers"][0]["args"] = ["-c", "echo --allowed-rules split"]
    assert workflows.read_task_labels(translate.pod_facts(pod)).engine == "none"
    pod["spec"]["containers"][0]["args"] = "not a list"
    facts = translate.pod_facts(pod)
    assert workflows.read_task_labels(facts).engine == "none"


def test_slim_pod_keeps_what_the_recognition_reads() -> None:
    pod = _job_pod("snakejob-6666", "split")
    slim = translate.slim_pod(pod)
    assert translate.pod_facts(slim) == translate.pod_facts(pod)
    # The image stays: memory priors key tools by it.
    assert slim["spec"]["containers"][0]["image"] == "snakemake/snakemake:v9.27.1"
    plain = translate.slim_pod(_job_pod("render-7777", "split"))
    assert "args" not in plain["spec"]["containers"][0]


def _observe(registry: workflows.WorkflowRegistry, name: str, rule: str, secret: str) -> Any:
    labels = workflows.read_task_labels(translate.pod_facts(_job_pod(name, rule, secret=secret)))
    assert registry.observe_task(labels) == []
    return labels


def test_rule_order_is_inferred_in_the_run_and_learned_for_the_next_run() -> None:
    registry = workflows.WorkflowRegistry()
    first = _observe(registry, "snakejob-a", "split", "run-1")
    # Independent jobs appear before anything finished: no edge among them.
    _observe(registry, "snakejob-b", "reference", "run-1")
    registry.record_finished(first, success=True, runtime_s=1.0)
    shards = [_observe(registry, f"snakejob-s{i}", "process", "run-1") for i in range(3)]
    for shard in shards:
        registry.record_finished(shard, success=True, runtime_s=1.0)
    _observe(registry, "snakejob-m", "merge", "run-1")
    learned = registry.learned_edges(first.workflow_name)
    assert learned == {("split", "process"), ("process", "merge")}
    dag = registry.dag(first.run)
    assert dag is not None
    assert dag.rank("split") > dag.rank("process") > dag.rank("merge")
    assert dag.rank("reference") < dag.rank("split")
    # A later run of the same Snakefile is ranked with the learned order from its first job.
    second = _observe(registry, "snakejob-x", "merge", "run-2")
    later = registry.dag(second.run)
    assert later is not None
    assert later.rank("split") > later.rank("process") > later.rank("merge")


def test_a_failed_job_is_no_trigger_and_a_reversed_order_is_not_a_cycle() -> None:
    registry = workflows.WorkflowRegistry()
    a = _observe(registry, "snakejob-a", "a", "run-1")
    registry.record_finished(a, success=False, runtime_s=1.0)
    _observe(registry, "snakejob-b", "b", "run-1")
    assert registry.learned_edges(a.workflow_name) == set()
    b2 = _observe(registry, "snakejob-b2", "b", "run-2")
    registry.record_finished(b2, success=True, runtime_s=1.0)
    _observe(registry, "snakejob-a2", "a", "run-2")
    a3 = _observe(registry, "snakejob-a3", "a", "run-3")
    registry.record_finished(a3, success=True, runtime_s=1.0)
    # b -> a was learned; a -> b in run 3 would close a cycle with it and is ignored.
    _observe(registry, "snakejob-b3", "b", "run-3")
    assert registry.learned_edges(a.workflow_name) == {("b", "a")}
