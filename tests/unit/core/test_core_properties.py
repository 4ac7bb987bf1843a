from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler import registry
from scheduler.core import cluster, feasibility, workflow
from scheduler.core import constraints as cs
from scheduler.core.resources import Resources
from tests.unit.core import core_builders as b

GPU = "nvidia.com/gpu"
MI = 2**20
STRATEGIES = [f"{r}-{a}" for r in registry.RANKINGS for a in registry.ASSIGNMENTS]
TAINTS = [
    cs.Taint(key="dedicated", value="x"),
    cs.Taint(key="soft", effect=cs.TaintEffect.PREFER_NO_SCHEDULE),
    cs.Taint(key="evict", effect=cs.TaintEffect.NO_EXECUTE),
]


@st.composite
def nodes_and_pods(draw: st.DrawFn) -> tuple[list[cluster.NodeInfo], list[cluster.PodInfo]]:
    count = draw(st.integers(min_value=0, max_value=6))
    nodes, pods = [], []
    for i in range(count):
        name = f"n{i}"
        nodes.append(
            cluster.NodeInfo(
                name=name,
                allocatable=Resources.of(
                    cpu_millis=draw(st.integers(0, 8000)),  # zero-size nodes too
                    memory_bytes=draw(st.integers(0, 16 * 1024)) * MI,
                    pods=draw(st.integers(0, 8)),
                    extended={GPU: draw(st.integers(0, 2))},
                ),
                labels={"zone": draw(st.sampled_from(["a", "b"]))},
                taints=tuple(draw(st.lists(st.sampled_from(TAINTS), max_size=2, unique=True)))
                if draw(st.integers(0, 2)) == 0
                else (),
                ready=draw(st.booleans()) or draw(st.booleans()),
                unschedulable=draw(st.integers(0, 4)) == 0,
                usage=draw(
                    st.none()
                    | st.builds(
                        Resources,
                        cpu_millis=st.integers(0, 8000),
                        memory_bytes=st.integers(0, 2**34),
                    )
                ),
            )
        )
        for j in range(draw(st.integers(0, 1))):
            pods.append(
                cluster.PodInfo(
                    uid=f"{name}-p{j}",
                    node_name=name,
                    request=Resources(
                        cpu_millis=draw(st.integers(0, 6000)),
                        memory_bytes=draw(st.integers(0, 8192)) * MI,
                        pods=1,
                    ),
                )
            )
    return nodes, pods


@st.composite
def pending_tasks(draw: st.DrawFn) -> list[workflow.Task]:
    tasks = []
    for i in range(draw(st.integers(0, 15))):
        selector = draw(st.sampled_from([{}, {}, {"zone": "a"}]))
        tolerations = draw(
            st.sampled_from(
                [(), (cs.Toleration(key="dedicated", operator=cs.TolerationOperator.EXISTS),)]
            )
        )
        tasks.append(
            b.task(
                f"t{i}",
                step=draw(st.sampled_from(["s0", "s1", "s2"])),
                submission=i,
                cpu=f"{draw(st.integers(0, 2500))}m",
                memory=draw(st.integers(0, 3072)) * MI,
                extended={GPU: int(draw(st.integers(0, 4)) == 0)},
                size=draw(st.integers(0, 10)),
                pod_constraints=cs.Constraints.of(node_selector=selector, tolerations=tolerations),
                gates=draw(st.sampled_from([(), ("gate",)])),
            )
        )
    return tasks


@settings(max_examples=150, deadline=None)
@given(
    cluster_state=nodes_and_pods(),
    tasks=pending_tasks(),
    strategy=st.sampled_from(STRATEGIES),
    seed=st.integers(0, 3),
)
def test_no_decision_set_overcommits_or_places_gated_pods(
    cluster_state: tuple[list[cluster.NodeInfo], list[cluster.PodInfo]],
    tasks: list[workflow.Task],
    strategy: str,
    seed: int,
) -> None:
    nodes, pods = cluster_state
    dag = workflow.WorkflowDag(b.RUN)
    dag.add_step_edges([("s0", "s1"), ("s1", "s2")])
    dag.record_finished("s1", success=True, runtime_s=3.0)
    snap = b.snapshot(nodes, pods)
    result = b.run(snap, tasks, strategy=strategy, dags={b.RUN: dag}, context_=b.ctx(seed=seed))

    by_key = {t.key: t for t in tasks}
    assert sorted(result.order) == sorted(by_key)  # ranking is a permutation
    placed: dict[str, Resources] = defaultdict(Resources)
    for bind in result.binds:
        task = by_key[bind.task]
        assert not task.gated
        node = next(n for n in nodes if n.name == bind.node)
        assert feasibility.static_reason(node, task.constraints) is None
        placed[bind.node] = placed[bind.node] + bind.request
    for node in nodes:
        used = snap.requested_on(node.name)
        for name, amount in placed[node.name].items():
            if amount > 0:
                assert used.get(name) + amount <= node.allocatable.get(name), (node.name, name)
    bound = {bind.task for bind in result.binds}
    rejected = {reject.task for reject in result.rejects}
    assert not bound & rejected
    assert bound | rejected | set(result.gated) == set(by_key)
