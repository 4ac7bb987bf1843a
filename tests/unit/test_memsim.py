"""The fake kubelet memory model: the usage curve, the enforced limit, and one tick's writes."""

from __future__ import annotations

import math
from typing import Any

import pytest

from scheduler.devtools import memsim

MiB = 2**20


def test_go_durations_parse_like_go() -> None:
    assert memsim.parse_go_duration("90s") == 90
    assert memsim.parse_go_duration("1m30s") == 90
    assert memsim.parse_go_duration("1.5h") == 5400
    assert memsim.parse_go_duration("250ms") == pytest.approx(0.25)
    assert memsim.parse_go_duration("0") == 0
    for bad in ("", "10", "5x", "m", "-3s"):
        with pytest.raises(memsim.SimulationError):
            memsim.parse_go_duration(bad)


def test_usage_grows_linearly_to_the_peak_then_stays() -> None:
    profile = memsim.MemoryProfile(peak_bytes=1016 * MiB, runtime_s=100, peak_at=0.5)
    assert profile.usage_at(0) == 16 * MiB
    assert profile.usage_at(25) == 516 * MiB
    assert profile.usage_at(50) == 1016 * MiB
    assert profile.usage_at(99) == 1016 * MiB
    # A peak below the base is flat from the start.
    tiny = memsim.MemoryProfile(peak_bytes=4 * MiB, runtime_s=10)
    assert tiny.usage_at(0) == tiny.usage_at(9) == 4 * MiB


def test_crossing_is_when_usage_first_exceeds_the_limit() -> None:
    profile = memsim.MemoryProfile(peak_bytes=1016 * MiB, runtime_s=100, peak_at=0.5)
    assert profile.crossing_s(1016 * MiB) is None
    assert profile.crossing_s(2000 * MiB) is None
    assert profile.crossing_s(516 * MiB) == pytest.approx(25)
    assert profile.crossing_s(8 * MiB) == 0
    at_once = memsim.MemoryProfile(peak_bytes=100 * MiB, runtime_s=10, peak_at=0)
    assert at_once.crossing_s(50 * MiB) == 0


def test_profile_from_annotations_names_the_bad_one() -> None:
    good = {
        memsim.PEAK_MEMORY_ANNOTATION: str(512 * MiB),
        memsim.PEAK_AT_ANNOTATION: "0.25",
        memsim.RUNTIME_ANNOTATION: "1m",
    }
    profile = memsim.MemoryProfile.from_annotations(good)
    assert profile == memsim.MemoryProfile(peak_bytes=512 * MiB, runtime_s=60, peak_at=0.25)
    defaulted = memsim.MemoryProfile.from_annotations(
        {memsim.PEAK_MEMORY_ANNOTATION: "100", memsim.RUNTIME_ANNOTATION: "1s"}
    )
    assert defaulted is not None and defaulted.peak_at == memsim.DEFAULT_PEAK_AT
    assert memsim.MemoryProfile.from_annotations({memsim.RUNTIME_ANNOTATION: "1s"}) is None
    for key, value in (
        (memsim.PEAK_MEMORY_ANNOTATION, "1Gi"),
        (memsim.PEAK_MEMORY_ANNOTATION, "-1"),
        (memsim.PEAK_AT_ANNOTATION, "1.5"),
        (memsim.PEAK_AT_ANNOTATION, "late"),
        (memsim.RUNTIME_ANNOTATION, "soon"),
    ):
        with pytest.raises(memsim.SimulationError, match=key.split("/")[-1]):
            memsim.MemoryProfile.from_annotations({**good, key: value})


def _pod(
    *,
    spec_limit: str | None = "256Mi",
    status_limit: str | None = None,
    started: str | None = "2026-01-01T00:00:00Z",
    peak: int = 512 * MiB,
) -> dict[str, Any]:
    resources: dict[str, Any] = {"requests": {"memory": "64Mi"}}
    if spec_limit:
        resources["limits"] = {"memory": spec_limit}
    status: dict[str, Any] = {"name": "main"}
    if started:
        status["state"] = {"running": {"startedAt": started}}
    if status_limit:
        status["resources"] = {"limits": {"memory": status_limit}}
    return {
        "metadata": {
            "name": "p",
            "namespace": "ns",
            "uid": "u1",
            "annotations": {
                memsim.PEAK_MEMORY_ANNOTATION: str(peak),
                memsim.RUNTIME_ANNOTATION: "100s",
            },
        },
        "spec": {"containers": [{"name": "main", "resources": resources}]},
        "status": {"phase": "Running", "containerStatuses": [status]},
    }


def test_the_limit_the_node_reports_wins_over_the_spec() -> None:
    assert memsim.enforced_memory_limit(_pod()) == 256 * MiB
    assert memsim.enforced_memory_limit(_pod(status_limit="1Gi")) == 2**30
    assert memsim.enforced_memory_limit(_pod(spec_limit=None)) is None


class _FakeKube:
    def __init__(self) -> None:
        self.patches: list[tuple[str, dict[str, str]]] = []

    def patch_pod_metadata(
        self, namespace: str, name: str, *, annotations: dict[str, str]
    ) -> dict[str, Any]:
        self.patches.append((name, dict(annotations)))
        return {}


START = 1767225600.0  # 2026-01-01T00:00:00Z


def _simulator(now: list[float]) -> tuple[memsim.MemorySimulator, _FakeKube]:
    """A simulator around a fake client (``KubeClient`` is patched to the fake's class)."""
    kube = _FakeKube()
    sim = memsim.MemorySimulator(
        kube,  # type: ignore[arg-type]
        usage_interval_s=2.0,
        clock=lambda: now[0],
    )
    return sim, kube


def test_tick_throttles_usage_patches_and_kills_at_the_crossing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(memsim.kube_client, "KubeClient", _FakeKube)
    now = [START + 10.0]
    sim, kube = _simulator(now)
    sim._observe("ADDED", _pod())  # peak 512Mi at 50 s, limit 256Mi: crossing at ~24.2 s
    wait = sim.tick()
    assert kube.patches[-1][1] == {memsim.USAGE_MEMORY_ANNOTATION: str(16 * MiB + 496 * MiB // 5)}
    assert wait == pytest.approx(2.0)
    now[0] += 1.0
    sim.tick()
    assert len(kube.patches) == 1  # throttled
    now[0] = START + 24.0
    wait = sim.tick()
    assert wait == pytest.approx(0.1935, abs=0.001)  # wakes at the crossing
    now[0] = START + 24.3
    sim.tick()
    _, annotations = kube.patches[-1]
    assert annotations[memsim.OOM_KILL_ANNOTATION] == "24.194s"
    assert sim.oom_kills == 1
    patches = len(kube.patches)
    now[0] += 10
    sim.tick()
    assert len(kube.patches) == patches  # a killed pod is left alone


def test_without_usage_reports_only_the_kill_is_patched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memsim.kube_client, "KubeClient", _FakeKube)
    now = [START + 10.0]
    kube = _FakeKube()
    sim = memsim.MemorySimulator(
        kube,  # type: ignore[arg-type]
        usage_interval_s=math.inf,
        clock=lambda: now[0],
    )
    sim._observe("ADDED", _pod())  # crossing at ~24.2 s, as above
    for t in (10.0, 12.5, 20.0, 24.0):
        now[0] = START + t
        sim.tick()
    assert kube.patches == []
    now[0] = START + 24.3
    sim.tick()
    assert len(kube.patches) == 1 and memsim.OOM_KILL_ANNOTATION in kube.patches[0][1]


def test_a_resize_the_node_reports_moves_the_crossing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memsim.kube_client, "KubeClient", _FakeKube)
    now = [START + 30.0]
    sim, _ = _simulator(now)
    sim._observe("ADDED", _pod(spec_limit="1Gi", status_limit="1Gi"))
    sim.tick()
    assert sim.oom_kills == 0
    # The spec says 1Gi but the node still enforces 256Mi: past the crossing, killed.
    sim._observe("MODIFIED", _pod(spec_limit="1Gi", status_limit="256Mi"))
    sim.tick()
    assert sim.oom_kills == 1


def test_a_pod_with_bad_annotations_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memsim.kube_client, "KubeClient", _FakeKube)
    now = [START + 30.0]
    sim, kube = _simulator(now)
    bad = _pod()
    bad["metadata"]["annotations"][memsim.PEAK_AT_ANNOTATION] = "2"
    sim._observe("ADDED", bad)
    sim.tick()
    assert kube.patches == []


def test_the_start_is_kwoks_millisecond_condition_else_started_at() -> None:
    pod = _pod(started="2026-01-01T00:00:00Z")
    assert memsim.container_started_at(pod) == START
    conditions = pod["status"].setdefault("conditions", [])
    conditions.append({"type": "Ready", "status": "True", "message": "12"})
    assert memsim.container_started_at(pod) == START
    conditions.append({"type": memsim.STARTED_AT_CONDITION, "status": "True", "message": "x"})
    assert memsim.container_started_at(pod) == START  # unreadable: startedAt
    conditions[-1]["message"] = str(int(START * 1000) + 750)
    assert memsim.container_started_at(pod) == START + 0.75
    assert memsim.container_started_at(_pod(started=None)) is None


def _wfsched_stages() -> dict[str, Any]:
    """wfsched's KWOK stages (kwok-stages.yaml) by name."""
    import yaml

    from scheduler.devtools import devcluster

    return {
        doc["metadata"]["name"]: doc
        for doc in yaml.safe_load_all(devcluster.KWOK_STAGES.read_text())
        if doc and doc.get("kind") == "Stage"
    }


def test_the_stages_that_end_a_pod_write_only_the_version_they_were_chosen_for() -> None:
    """KWOK cannot cancel a job that is already due, so a finish stage chosen before memsim's
    kill could otherwise land after it and turn an OOM-killed pod Succeeded (CI saw it once).
    The resourceVersion in the patch makes the API server refuse such a stale write."""
    stages = _wfsched_stages()
    ending = [
        name
        for name, stage in stages.items()
        if "phase: Running" not in str(stage["spec"].get("next"))
        and "phase:" in str(stage["spec"].get("next"))
    ]
    assert sorted(ending) == [
        "wfsched-pod-finish",
        "wfsched-pod-finish-resizable",
        "wfsched-pod-oom",
    ]
    for name in ending:
        next_step = stages[name]["spec"]["next"]
        assert "statusTemplate" not in next_step, name  # it cannot carry metadata
        (patch,) = next_step["patches"]
        assert patch["subresource"] == "status" and "root" not in patch, name
        body = patch["template"]
        assert "resourceVersion: {{ .metadata.resourceVersion | Quote }}" in body, name
        assert "\nstatus:\n  phase: " in body, name


def test_the_upstream_pod_ready_stage_leaves_resizable_pods_to_ours() -> None:
    """KWOK picks at random among the stages that match a pod: the upstream pod-ready stage
    (changed by devcluster) and ``wfsched-pod-ready-resizable`` must exclude each other, and
    ours must report the resources and the start in its one status write."""
    import yaml

    from scheduler.devtools import devcluster

    upstream = {
        "kind": "Stage",
        "metadata": {"name": "pod-ready"},
        "spec": {
            "selector": {
                "matchExpressions": [
                    {"key": ".status.phase", "operator": "In", "values": ["Pending"]}
                ]
            },
            "next": {"statusTemplate": "phase: Running\n"},
        },
    }
    changed = yaml.safe_load(devcluster._without_resizable_pods(yaml.safe_dump(upstream)))
    assert changed["spec"]["next"] == upstream["spec"]["next"]
    assert changed["spec"]["selector"]["matchExpressions"][0]["key"] == ".status.phase"
    ours = _wfsched_stages()["wfsched-pod-ready-resizable"]
    added = changed["spec"]["selector"]["matchExpressions"][-1]
    (resizable,) = (
        e for e in ours["spec"]["selector"]["matchExpressions"] if e["key"] == added["key"]
    )
    assert (added["operator"], added["values"]) == ("In", ["false"])
    assert (resizable["operator"], resizable["values"]) == ("In", ["true"])
    for annotation in (devcluster.RESIZABLE_ANNOTATION, memsim.PEAK_MEMORY_ANNOTATION):
        assert f'has("{annotation}")' in added["key"]
    (patch,) = ours["spec"]["next"]["patches"]
    assert patch["subresource"] == "status"
    for reported in (
        "phase: Running",
        "resources:",
        "allocatedResources:",
        memsim.STARTED_AT_CONDITION,
    ):
        assert reported in patch["template"], reported
