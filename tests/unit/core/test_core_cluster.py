import pytest

from scheduler.core import cluster, errors
from scheduler.core.resources import Resources
from tests.unit.core import core_builders as b

REQ = Resources(cpu_millis=500, memory_bytes=100, pods=1)


def pod(uid: str, node: str = "n1", request: Resources = REQ) -> cluster.PodInfo:
    return cluster.PodInfo(uid=uid, node_name=node, request=request)


def test_assume_counts_at_once_and_confirm_keeps_single_count() -> None:
    cache = cluster.ClusterCache()
    cache.upsert_node(b.node("n1"))
    cache.assume(pod("p"))
    assert cache.pod_state("p") is cluster.PodState.ASSUMED
    assert cache.snapshot().requested_on("n1") == REQ
    cache.upsert_pod(pod("p"))  # the watch confirms the binding
    assert cache.pod_state("p") is cluster.PodState.ADDED
    assert cache.snapshot().requested_on("n1") == REQ
    assert cache.assumed() == []


def test_forget_undoes_assume_and_is_idempotent() -> None:
    cache = cluster.ClusterCache()
    cache.assume(pod("p"))
    assert cache.forget("p") == pod("p")
    assert cache.forget("p") is None
    assert cache.pod_state("p") is cluster.PodState.INITIAL
    assert cache.snapshot().requested_on("n1") == Resources()


def test_forget_does_not_touch_added_pods() -> None:
    cache = cluster.ClusterCache()
    cache.upsert_pod(pod("p"))
    assert cache.forget("p") is None
    assert cache.pod_state("p") is cluster.PodState.ADDED


def test_double_assume_raises() -> None:
    cache = cluster.ClusterCache()
    cache.assume(pod("p"))
    with pytest.raises(errors.CacheError):
        cache.assume(pod("p"))
    cache.upsert_pod(pod("p"))
    with pytest.raises(errors.CacheError):
        cache.assume(pod("p"))


def test_expire_only_after_binding_finished() -> None:
    cache = cluster.ClusterCache()
    cache.assume(pod("slow"))
    cache.assume(pod("done"))
    cache.finish_binding("done", now=10.0, ttl=30.0)
    assert cache.expire(now=1000.0) == [pod("done")]
    assert cache.pod_state("slow") is cluster.PodState.ASSUMED
    cache.finish_binding("slow", now=1000.0, ttl=30.0)
    assert cache.expire(now=1029.0) == []
    assert cache.expire(now=1030.0) == [pod("slow")]


def test_watch_moving_an_assumed_pod_replaces_its_accounting() -> None:
    cache = cluster.ClusterCache()
    cache.assume(pod("p", node="n1"))
    cache.upsert_pod(pod("p", node="n2"))
    snap = cache.snapshot()
    assert snap.requested_on("n1") == Resources()
    assert snap.requested_on("n2") == REQ


def test_remove_pod_in_any_state_and_pods_on_unknown_nodes_count() -> None:
    cache = cluster.ClusterCache()
    cache.upsert_pod(pod("a", node="ghost"))
    cache.assume(pod("b", node="ghost"))
    assert cache.snapshot().requested_on("ghost") == REQ + REQ
    cache.remove_pod("a")
    cache.remove_pod("b")
    cache.remove_pod("never-seen")
    assert cache.snapshot().requested_on("ghost") == Resources()


def test_snapshot_is_cached_until_a_change_and_sorted() -> None:
    cache = cluster.ClusterCache()
    cache.upsert_node(b.node("b"))
    cache.upsert_node(b.node("a"))
    first = cache.snapshot()
    assert [n.name for n in first.nodes] == ["a", "b"]
    assert cache.snapshot() is first
    cache.remove_node("b")
    second = cache.snapshot()
    assert second is not first and second.generation > first.generation
    assert [n.name for n in second.nodes] == ["a"]
    assert [n.name for n in first.nodes] == ["a", "b"]  # frozen
    with pytest.raises(TypeError):
        first.requested["a"] = REQ  # type: ignore[index]
