"""Memory planning of pods with init containers, sidecars and overhead (issue 13, defect 9).

A resize changes one container's memory request; the node must reserve what kube-scheduler
will account for the resized pod: ``max(app + sidecars, init peak) + overhead``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from scheduler.core import decisions, podrequest, workflow
from scheduler.core.resources import Resources
from tests.unit.core import core_builders as b

MI = 1 << 20
GI = 1 << 30


def c(mem: int, *, cpu: int = 100, sidecar: bool = False) -> podrequest.ContainerResources:
    return podrequest.ContainerResources(
        requests=Resources(cpu_millis=cpu, memory_bytes=mem), sidecar=sidecar
    )


@pytest.mark.parametrize(
    ("containers", "inits", "overhead", "pod_level"),
    [
        ([c(GI)], [], None, None),
        ([c(GI), c(100 * MI)], [], None, None),
        ([c(GI)], [c(2 * GI)], None, None),
        ([c(GI)], [c(50 * MI, sidecar=True), c(400 * MI)], None, None),
        ([c(GI)], [c(400 * MI), c(50 * MI, sidecar=True)], Resources(memory_bytes=MI), None),
        ([c(GI)], [c(300 * MI)], Resources(cpu_millis=10, memory_bytes=256 * MI), None),
        ([c(GI)], [], Resources(memory_bytes=MI), Resources(memory_bytes=3 * GI)),
    ],
)
def test_basis_reproduces_the_effective_request(
    containers: list[podrequest.ContainerResources],
    inits: list[podrequest.ContainerResources],
    overhead: Resources | None,
    pod_level: Resources | None,
) -> None:
    basis = podrequest.memory_basis(
        containers=containers,
        index=0,
        init_containers=inits,
        overhead=overhead,
        pod_level=pod_level,
    )
    request = podrequest.effective_request(
        containers=containers, init_containers=inits, overhead=overhead, pod_level=pod_level
    )
    assert basis.container_bytes == containers[0].requests.memory_bytes
    assert basis.pod_memory(basis.container_bytes) == request.memory_bytes
    # And for any other request of the container: the same rule with that container changed.
    for smaller in (0, 100 * MI, 700 * MI):
        resized = [c(smaller), *containers[1:]]
        expected = podrequest.effective_request(
            containers=resized, init_containers=inits, overhead=overhead, pod_level=pod_level
        )
        assert basis.pod_memory(smaller) == expected.memory_bytes


@dataclass
class Planner:
    plan_bytes: int

    def plan(self, task: workflow.Task) -> int | None:
        return self.plan_bytes


def _task(*, container: int, init: int = 0, sidecar: int = 0, overhead: int = 0) -> workflow.Task:
    inits = []
    if sidecar:
        inits.append(c(sidecar, sidecar=True))
    if init:
        inits.append(c(init))
    basis = podrequest.memory_basis(
        containers=[c(container)],
        index=0,
        init_containers=inits,
        overhead=Resources(memory_bytes=overhead),
    )
    request = podrequest.effective_request(
        containers=[c(container)], init_containers=inits, overhead=Resources(memory_bytes=overhead)
    )
    return replace(b.task("t"), request=request, memory_basis=basis)


def test_bind_reserves_the_resized_pod_with_init_container_and_overhead() -> None:
    # Container 1 GiB, init container 512 MiB, overhead 256 MiB; the plan is 200 MiB. The
    # container is resized to 200 MiB, but kube-scheduler accounts 512 + 256 MiB for the pod.
    task = _task(container=GI, init=512 * MI, overhead=256 * MI)
    result = b.run([b.node("n")], [task], planner=Planner(200 * MI))
    resize, bind = result.decisions
    assert isinstance(resize, decisions.Resize) and isinstance(bind, decisions.Bind)
    assert (resize.memory_bytes, resize.original_memory_bytes) == (200 * MI, GI)
    assert bind.request.memory_bytes == 768 * MI
    assert bind.request.cpu_millis == task.request.cpu_millis


def test_sidecar_memory_is_added_to_the_resized_container() -> None:
    task = _task(container=GI, sidecar=64 * MI, overhead=MI)
    result = b.run([b.node("n")], [task], planner=Planner(300 * MI))
    assert result.resizes[0].memory_bytes == 300 * MI
    assert result.binds[0].request.memory_bytes == (300 + 64 + 1) * MI


def test_no_resize_when_the_init_container_keeps_the_pod_as_large() -> None:
    # The pod is accounted 2 GiB for its init container whatever the app container asks for:
    # lowering the container would only risk an OOM kill and free nothing.
    task = _task(container=GI, init=2 * GI)
    result = b.run([b.node("n")], [task], planner=Planner(200 * MI))
    assert result.resizes == ()
    assert result.binds[0].request.memory_bytes == 2 * GI


def test_the_plan_is_capped_at_the_container_request_not_the_pod_request() -> None:
    # The pod is accounted 1 GiB + 512 MiB overhead; a plan of 1.2 GiB is above the
    # container's own 1 GiB, so the container keeps its request (never raised).
    task = _task(container=GI, overhead=512 * MI)
    result = b.run([b.node("n")], [task], planner=Planner(GI + 200 * MI))
    assert result.resizes == ()
    assert result.binds[0].request.memory_bytes == GI + 512 * MI


def test_a_node_is_never_overcommitted_by_resized_pods_with_init_containers() -> None:
    # 4 GiB node; each resized pod really needs 768 MiB (init 512 MiB + overhead 256 MiB):
    # five fit, not twenty as the container's 200 MiB alone would suggest.
    tasks = [
        replace(
            _task(container=GI, init=512 * MI, overhead=256 * MI),
            key=workflow.TaskKey(b.RUN, f"t{i}"),
            submission=i,
        )
        for i in range(20)
    ]
    result = b.run([b.node("n", cpu="64", memory="4Gi")], tasks, planner=Planner(200 * MI))
    assert len(result.binds) == 5
    assert sum(bind.request.memory_bytes for bind in result.binds) <= 4 * GI
