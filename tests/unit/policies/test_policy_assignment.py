from scheduler import registry
from scheduler.core import cluster, interfaces
from scheduler.core import constraints as cs
from scheduler.core.resources import Resources
from tests.unit.core import core_builders as b

GI = 2**30
SOFT = cs.Taint(key="soft", effect=cs.TaintEffect.PREFER_NO_SCHEDULE)


def busy(
    node: str, cpu_millis: int = 0, memory: int = 0, uid: str | None = None
) -> cluster.PodInfo:
    return cluster.PodInfo(
        uid=uid or f"busy-{node}",
        node_name=node,
        request=Resources(cpu_millis=cpu_millis, memory_bytes=memory, pods=1),
    )


def tasks(*ids: str, cpu: str = "1") -> list:
    return [b.task(i, cpu=cpu, submission=n) for n, i in enumerate(ids)]


def test_roundrobin_cursor_persists_across_cycles() -> None:
    policies = registry.parse_strategy("fifo-rr").build()
    nodes = [b.node(n) for n in ("a", "b", "c")]
    first = b.run(nodes, tasks("t0", "t1"), policies=policies)
    assert b.placements(first) == {"t0": "a", "t1": "b"}
    second = b.run(nodes, tasks("t2", "t3", "t4"), policies=policies, context_=b.ctx(2))
    assert b.placements(second) == {"t2": "c", "t3": "a", "t4": "b"}


def test_roundrobin_skips_infeasible_nodes_and_continues_after_the_chosen_one() -> None:
    policies = registry.parse_strategy("fifo-roundrobin").build()
    snap = b.snapshot([b.node("a"), b.node("b"), b.node("c")], [busy("a", 4000)])
    result = b.run(snap, tasks("t0", "t1", "t2"), policies=policies)
    assert b.placements(result) == {"t0": "b", "t1": "c", "t2": "b"}


def test_roundrobin_nothing_fits_leaves_cursor_in_place() -> None:
    policy = registry.assignment("roundrobin").make()
    policies = interfaces.Policies(ranking=registry.ranking("fifo").make(), assignment=policy)
    b.run([b.node("a"), b.node("b")], tasks("t0"), policies=policies)
    assert policy.cursor == 1  # type: ignore[attr-defined]
    b.run([b.node("a"), b.node("b")], tasks("huge", cpu="64"), policies=policies)
    assert policy.cursor == 1  # type: ignore[attr-defined]


def test_roundrobin_ring_learns_new_nodes_and_forgets_removed_ones() -> None:
    policy = registry.assignment("rr").make()
    policies = interfaces.Policies(ranking=registry.ranking("fifo").make(), assignment=policy)
    # c is NotReady at the first cycle but still in the ring (D13)
    nodes = [b.node("a"), b.node("b"), b.node("c", ready=False)]
    assert b.placements(b.run(nodes, tasks("t0", "t1"), policies=policies)) == {
        "t0": "a",
        "t1": "b",
    }
    nodes = [b.node("b"), b.node("c"), b.node("0-new")]  # a removed (before the cursor), c ready
    result = b.run(nodes, tasks("t2", "t3", "t4"), policies=policies)
    assert policy.ring == ["b", "c", "0-new"]  # type: ignore[attr-defined]
    assert b.placements(result) == {"t2": "c", "t3": "0-new", "t4": "b"}


def test_fair_picks_most_relative_cpu_left_and_breaks_ties_by_name() -> None:
    snap = b.snapshot(
        [b.node("z", cpu="8"), b.node("b", cpu="4"), b.node("a", cpu="4")], [busy("z", 6000)]
    )
    result = b.run(snap, tasks("t0", "t1", "t2"), strategy="fifo-fair")
    # scores: z (2-1)/8, a/b (4-1)/4 -> a (name), then b, then a again (2/4 > 1/8 and a < b)
    assert b.placements(result) == {"t0": "a", "t1": "b", "t2": "a"}


def test_fair_ignores_memory_but_balanced_does_not() -> None:
    nodes = [b.node("cpu-rich", cpu="16", memory="2Gi"), b.node("even", cpu="4", memory="16Gi")]
    task = [b.task("t", cpu="1", memory="1Gi")]
    assert b.placements(b.run(nodes, task, strategy="fifo-fair")) == {"t": "cpu-rich"}
    assert b.placements(b.run(nodes, task, strategy="fifo-balanced")) == {"t": "even"}


def test_binpack_fills_the_fullest_feasible_node() -> None:
    snap = b.snapshot(
        [b.node("a"), b.node("b"), b.node("c")], [busy("b", 2000, 4 * GI), busy("c", 3500)]
    )
    result = b.run(snap, tasks("t0", "t1", "t2"), strategy="fifo-binpack")
    # c has only 0.5 CPU: infeasible; b is fuller than a
    assert b.placements(result) == {"t0": "b", "t1": "b", "t2": "a"}


def test_prefer_no_schedule_is_a_soft_penalty_for_scoring_policies() -> None:
    snap = b.snapshot([b.node("clean"), b.node("tainted", taints=[SOFT])], [busy("tainted", 2000)])
    assert b.placements(b.run(snap, tasks("t"), strategy="fifo-binpack")) == {"t": "clean"}
    only_tainted = b.snapshot([b.node("tainted", taints=[SOFT])])
    assert b.placements(b.run(only_tainted, tasks("t"), strategy="fifo-binpack")) == {
        "t": "tainted"
    }
    tolerant = b.task(
        "t",
        pod_constraints=cs.Constraints.of(
            tolerations=[cs.Toleration(key="soft", operator=cs.TolerationOperator.EXISTS)]
        ),
    )
    assert b.placements(b.run(snap, [tolerant], strategy="fifo-binpack")) == {"t": "tainted"}


def test_loadaware_uses_usage_and_never_treats_unknown_as_zero() -> None:
    cpu8 = {"cpu": "8", "memory": "32Gi"}
    nodes = [
        b.node("measured", usage=Resources(cpu_millis=800, memory_bytes=3 * GI), **cpu8),  # type: ignore[arg-type]
        b.node("unknown-light", **cpu8),  # type: ignore[arg-type]
        b.node("unknown-heavy", **cpu8),  # type: ignore[arg-type]
    ]
    pods = [
        busy("measured", 4000, 16 * GI),
        busy("unknown-light", 2000, 8 * GI),
        busy("unknown-heavy", 7000, 28 * GI),
    ]
    # measured: usage/requested = 0.2 -> unknown-light estimated at 400m / 1.6Gi, the least loaded
    result = b.run(b.snapshot(nodes, pods), tasks("t0"), strategy="fifo-loadaware")
    assert b.placements(result) == {"t0": "unknown-light"}
    # without any usage it is least-requested scoring
    plain = [b.node(n, **cpu8) for n in ("x", "y")]  # type: ignore[arg-type]
    result = b.run(b.snapshot(plain, [busy("x", 1000)]), tasks("t0"), strategy="fifo-loadaware")
    assert b.placements(result) == {"t0": "y"}


def test_loadaware_counts_placements_of_the_same_cycle() -> None:
    nodes = [b.node(n, usage=Resources(cpu_millis=0, memory_bytes=0)) for n in ("a", "b")]
    result = b.run(nodes, tasks("t0", "t1", "t2", "t3"), strategy="fifo-loadaware")
    assert sorted(b.placements(result).values()) == ["a", "a", "b", "b"]


def test_random_assignment_is_seeded_and_only_uses_feasible_nodes() -> None:
    snap = b.snapshot([b.node(n) for n in "abcdef"], [busy("c", 4000)])
    runs = [
        b.placements(
            b.run(
                snap,
                tasks(*[f"t{i}" for i in range(8)]),
                strategy="fifo-random",
                context_=b.ctx(seed=s),
            )
        )
        for s in (1, 1, 2)
    ]
    assert runs[0] == runs[1]
    assert "c" not in runs[0].values()
    assert runs[0] != runs[2]
