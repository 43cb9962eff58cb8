"""The shard controller's decisions over many scenarios, without NATS or an engine."""

from datetime import datetime, timedelta, timezone

import pytest

from libs.common.events import ClusterLoad, MetricsSample, OperationRates
from libs.common.metrics import ClusterStats, IndexStats
from libs.common.models import ScalingPolicy
from services.shard_controller.planning import ShardPolicy, plan_shards

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
POLICY = ShardPolicy(sustain_samples=3, cooldown_s=120, search_per_shard_high=10, search_per_shard_low=0.5)
GiB = 2**30


def sample(nodes=3, heap=0.5, cpu=40.0, disk_used=0.3, indices=None, search=None, health="green", requests=5.0,
           queue=0, rejected=0, latency=2.0) -> MetricsSample:
    """One poll: `cpu` is the busiest engine's own (% of its CPUs), `requests` the searches per second."""
    indices = indices or [IndexStats(name="books", primaries=1, replicas=1, primary_store_bytes=10**6)]
    return MetricsSample(
        cluster_id="c1", tenant_org_id="acme", taken_at=NOW,
        stats=ClusterStats(health=health, nodes=nodes, heap_used_bytes=int(heap * nodes * GiB),
                           heap_max_bytes=nodes * GiB,
                           disk_total_bytes=100, disk_free_bytes=int(100 * (1 - disk_used)), per_index=indices),
        rates=OperationRates(search_per_s=requests, indexing_per_s=0.0,
                             search_latency_ms=latency if requests else None),
        load=ClusterLoad(engine_cpu_percent=cpu, search_queue=queue, search_rejected=rejected, write_rejected=0),
        index_rates={name: OperationRates(search_per_s=rate) for name, rate in (search or {}).items()},
    )


def plan(samples, nodes=3, scaling=ScalingPolicy(), last_action_at=None):
    return plan_shards("c1", nodes, scaling, samples, POLICY, NOW, last_action_at)


def test_steady_cluster_gets_a_do_nothing_plan_with_a_reason():
    result = plan([sample(search={"books": 2})] * 3)
    assert not result.changes_anything
    assert result.reason == "within policy: nothing to change"


def test_pinned_cluster_is_left_alone():
    result = plan([sample(heap=0.95)] * 5, scaling=ScalingPolicy(autoscaling=False))
    assert not result.changes_anything
    assert "pinned" in result.reason


def test_high_search_load_adds_a_replica():
    # 40 queries/s on 2 copies = 20 per copy, above 10
    result = plan([sample(search={"books": 40})] * 3)
    assert result.replicas == {"books": 2}
    assert "books: search above" in result.reason


def test_one_hot_sample_is_not_enough():
    assert plan([sample(search={"books": 2}), sample(search={"books": 2}), sample(search={"books": 40})]).replicas == {}


def test_idle_index_drops_to_one_replica_but_never_below_on_several_nodes():
    idle = [sample(indices=[IndexStats(name="books", primaries=1, replicas=2)], search={"books": 0})] * 3
    assert plan(idle).replicas == {"books": 1}
    floor = [sample(search={"books": 0})] * 3
    assert plan(floor).replicas == {}


def test_replicas_never_exceed_the_nodes():
    many = [sample(nodes=2, indices=[IndexStats(name="books", primaries=1, replicas=1)], search={"books": 100})] * 3
    assert plan(many, nodes=2).replicas == {}


def test_sustained_heap_pressure_adds_a_node():
    result = plan([sample(heap=0.9)] * 3)
    assert result.nodes == 4
    assert "heap above 80%" in result.reason


def test_cool_down_holds_a_node_change():
    result = plan([sample(heap=0.9)] * 3, last_action_at=NOW - timedelta(seconds=30))
    assert result.nodes == 3
    assert "cooling down" in result.reason


def test_idle_cluster_shrinks_by_one_node():
    result = plan([sample(heap=0.1, cpu=2)] * 3)
    assert result.nodes == 2
    assert not hasattr(result, "drain")  # which node goes is the driver's to decide


def test_tenant_bounds_win():
    above = plan([sample()] * 3, scaling=ScalingPolicy(max_nodes=2))
    assert above.nodes == 2
    assert "maximum of 2" in above.reason
    below = plan([sample(nodes=1, indices=[IndexStats(name="b", replicas=0)])], nodes=1,
                 scaling=ScalingPolicy(min_nodes=2))
    assert below.nodes == 2
    assert below.replicas == {"b": 1}  # two nodes give room for, and need, a replica


def test_scaling_in_to_one_node_lowers_replicas_to_zero():
    result = plan([sample(nodes=2, indices=[IndexStats(name="b", replicas=1)])] * 3, nodes=2,
                  scaling=ScalingPolicy(max_nodes=1))
    assert (result.nodes, result.replicas) == (1, {"b": 0})


def test_big_primaries_are_split():
    big = IndexStats(name="logs", primaries=2, replicas=1, primary_store_bytes=2 * 60 * 10**9)
    result = plan([sample(indices=[big])] * 3)
    assert result.splits == {"logs": 5}  # 120 GB at 25 GB per primary


def test_red_cluster_is_not_touched():
    assert not plan([sample(heap=0.99, health="red")] * 3).changes_anything


@pytest.mark.parametrize("heap", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("nodes", [1, 2, 5, 9])
def test_plans_stay_within_bounds(heap, nodes):
    scaling = ScalingPolicy(min_nodes=1, max_nodes=9)
    indices = [IndexStats(name="i", primaries=3, replicas=min(2, nodes - 1))]
    result = plan([sample(nodes=nodes, heap=heap, indices=indices, search={"i": 500})] * 3, nodes=nodes,
                  scaling=scaling)
    assert scaling.min_nodes <= result.nodes <= scaling.max_nodes
    assert abs(result.nodes - nodes) <= 1
    for replicas in result.replicas.values():
        assert replicas <= result.nodes - 1
