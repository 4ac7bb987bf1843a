"""``ClusterOptions.for_nodes``: the local control plane's settings for large clusters."""

from __future__ import annotations

from scheduler.devtools import devcluster


def test_small_clusters_keep_the_defaults() -> None:
    assert devcluster.ClusterOptions.for_nodes(4) == devcluster.ClusterOptions()
    assert devcluster.ClusterOptions.for_nodes(devcluster.LARGE_CLUSTER_NODES - 1) == (
        devcluster.ClusterOptions()
    )


def test_large_clusters_turn_node_leases_off_and_add_kwok_workers() -> None:
    options = devcluster.ClusterOptions.for_nodes(5000, kube_scheduler=True)
    assert options.node_lease_duration_s == 0
    assert options.kwok_parallelism == 16
    assert options.kube_scheduler is True


def test_explicit_options_win_over_the_sizing() -> None:
    options = devcluster.ClusterOptions.for_nodes(5000, node_lease_duration_s=40)
    assert options.node_lease_duration_s == 40
    assert options.kwok_parallelism == 16
