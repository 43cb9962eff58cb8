"""The node count follows the cluster's own load: each signal adds a node when it holds with requests
coming in, its absence removes one, and every "no" (a busy host alone, an idle cluster, a cooling-down
cluster, one at its maximum) keeps the count and says why, in words that do not change while
the decision does not. Without NATS or an engine."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from libs.common.events import ClusterLoad, MetricsSample, OperationRates
from libs.common.metrics import ClusterStats, IndexStats, parse_cluster_stats
from libs.common.models import ScalingPolicy
from services.reporting.rates import derive_load, derive_rates
from services.shard_controller.planning import ShardPolicy, plan_shards

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
POLICY = ShardPolicy(sustain_samples=3, cooldown_s=120, cpu_high=80, cpu_low=15, heap_high=0.8, heap_low=0.3,
                     disk_used_high=0.8, pool_queue_high=10, search_latency_high_ms=500, rejections_high=1)
GiB = 2**30


def sample(nodes=1, cpu=40.0, heap=0.5, live=None, disk_used=0.3, searches=5.0, writes=0.0, latency=3.0, queue=0,
           rejected=0, tripped=0) -> MetricsSample:
    """One poll of a cluster: its engine's CPU (% of its CPUs), heap in use and live (what the last
    collection left), disk, requests per second, mean search latency, the longest search queue, the
    searches its pools rejected and the requests its circuit breakers refused since the last poll."""
    return MetricsSample(
        cluster_id="c1", tenant_org_id="acme", taken_at=NOW,
        stats=ClusterStats(health="green", nodes=nodes, heap_used_bytes=int(heap * nodes * GiB),
                           heap_live_bytes=int((heap if live is None else live) * nodes * GiB),
                           heap_max_bytes=nodes * GiB, disk_total_bytes=100, disk_free_bytes=int(100 * (1 - disk_used)),
                           per_index=[IndexStats(name="books", primaries=1, replicas=0)]),
        rates=OperationRates(search_per_s=searches, indexing_per_s=writes,
                             search_latency_ms=latency if searches else None),
        load=ClusterLoad(engine_cpu_percent=cpu, search_queue=queue, search_rejected=rejected, write_rejected=0,
                         breaker_tripped=tripped),
    )


def plan(samples, nodes=1, scaling=ScalingPolicy(min_nodes=1, max_nodes=3), last_action_at=None):
    return plan_shards("c1", nodes, scaling, samples, POLICY, NOW, last_action_at)


def node_reason(result) -> str:
    """The part of a plan's reason about its node count (replicas that follow it are told after)."""
    return result.reason.split("; ")[0]


# -- each signal of the cluster's own adds a node, held for the sustain window ---------------------

@pytest.mark.parametrize(("pressure", "told"), [
    ({"cpu": 95.0}, "engine CPU above 80 % of its CPUs (95 %)"),
    ({"heap": 0.9}, "heap above 80% (90%)"),
    ({"disk_used": 0.95}, "disk above 80% used (95%)"),
    ({"queue": 25}, "more than 10 searches or writes queued on a node (25 queued)"),
    ({"latency": 900.0}, "search latency above 500 ms (900 ms)"),
])
def test_each_sustained_pressure_of_its_own_adds_a_node(pressure, told):
    result = plan([sample(**pressure)] * 3)
    assert result.nodes == 2
    assert node_reason(result) == f"{told} for 3 samples"


@pytest.mark.parametrize("pressure", [{"cpu": 95.0}, {"heap": 0.9}, {"queue": 25}, {"latency": 900.0}])
def test_a_pressure_that_does_not_hold_the_whole_window_adds_nothing(pressure):
    result = plan([sample(), sample(**pressure), sample(**pressure)])
    assert result.nodes == 1
    assert result.reason == "within policy: nothing to change"


def test_rejections_add_a_node_without_having_to_last():
    result = plan([sample(), sample(rejected=4), sample()])
    assert result.nodes == 2
    assert node_reason(result) == "searches or writes refused, a pool full or memory short (4 in 3 samples)"


def test_requests_refused_for_memory_count_as_rejections():
    # a circuit breaker answers 429 as a full pool does: the tenant's requests fail either way
    result = plan([sample(tripped=2, cpu=95.0), sample(cpu=95.0), sample(rejected=1, cpu=95.0)])
    assert result.nodes == 2
    assert node_reason(result) == ("engine CPU above 80 % of its CPUs (95 %) for 3 samples, "
                                   "searches or writes refused, a pool full or memory short (3 in 3 samples)")


def test_writes_count_as_requests_as_much_as_searches():
    assert plan([sample(cpu=95.0, searches=0.0, writes=40.0)] * 3).nodes == 2


def test_requests_that_were_all_rejected_still_count_as_requests():
    result = plan([sample(searches=0.0, rejected=30)] * 3)
    assert result.nodes == 2


# -- the "no"s: each keeps the count and says why ------------------------------------------------

def polls_of_a_busy_host(engine_cpu_ms_per_s: float, queries_per_poll: int) -> list[MetricsSample]:
    """What reporting makes of four polls 10 s apart of one node given 1 processor, on a host whose
    CPUs are all busy (`os.cpu.percent` 100) with someone else's work."""
    samples, previous = [], None
    for i in range(4):
        node = {"jvm": {"mem": {"heap_used_in_bytes": 100 * 2**20, "heap_max_in_bytes": 512 * 2**20}},
                "os": {"cpu": {"percent": 100},
                       "cgroup": {"cpu": {"cfs_quota_micros": -1, "cfs_period_micros": 100000}}},
                "fs": {"total": {"available_in_bytes": 60, "total_in_bytes": 100}},
                # the engine's own CPU time: what its process used, whatever the host does
                "process": {"timestamp": 1_000_000 + 10_000 * i,
                            "cpu": {"percent": 100, "total_in_millis": int(engine_cpu_ms_per_s * 10 * i)}},
                "thread_pool": {"search": {"queue": 0, "rejected": 0}, "write": {"queue": 0, "rejected": 0}}}
        search = {"query_total": queries_per_poll * i, "query_time_in_millis": 2 * queries_per_poll * i}
        stats = parse_cluster_stats(
            {"status": "green", "number_of_nodes": 1, "indices": {"books": {"number_of_shards": 1}}},
            {"nodes": {"n1": node}},
            {"indices": {"books": {"primaries": {"docs": {"count": 3}}, "total": {"search": search}}}},
            {"nodes": {"n1": {"os": {"allocated_processors": 1, "available_processors": 1}}}},
        )
        samples.append(MetricsSample(cluster_id="c1", tenant_org_id="acme", taken_at=NOW, stats=stats,
                                     rates=derive_rates(previous, stats, 10.0), load=derive_load(previous, stats)))
        previous = stats
    return samples


def test_a_busy_host_alone_does_not_scale_an_idle_cluster():
    samples = polls_of_a_busy_host(engine_cpu_ms_per_s=20, queries_per_poll=0)
    assert [s.load.engine_cpu_percent for s in samples] == [None, 2.0, 2.0, 2.0]  # its own: 2 % of its processor
    result = plan(samples)
    assert (result.nodes, result.current_nodes) == (1, 1)
    assert result.reason == "no searches or writes in the last 3 samples: nothing to scale out for"


def test_a_busy_host_does_not_scale_a_cluster_that_serves_a_light_load():
    result = plan(polls_of_a_busy_host(engine_cpu_ms_per_s=50, queries_per_poll=30))
    assert result.nodes == 1
    assert result.reason == "within policy: nothing to change"


def test_an_idle_cluster_is_never_scaled_out_whatever_its_figures_say():
    # a JVM that has not collected its garbage, on a disk filled by others, serving nobody
    result = plan([sample(heap=0.95, disk_used=0.9, cpu=95.0, searches=0.0)] * 3)
    assert result.nodes == 1
    assert result.reason == ("no searches or writes in the last 3 samples: not scaled out for engine CPU above "
                             "80 % of its CPUs, heap above 80%, disk above 80% used for 3 samples")


def test_a_cooling_down_cluster_keeps_its_nodes():
    result = plan([sample(cpu=95.0)] * 3, last_action_at=NOW - timedelta(seconds=30))
    assert result.nodes == 1
    assert result.reason == "would change nodes 1 -> 2 but is cooling down after the last action"
    assert plan([sample(cpu=95.0)] * 3, last_action_at=NOW - timedelta(seconds=121)).nodes == 2


def test_a_cluster_at_its_maximum_keeps_its_nodes_and_says_so():
    result = plan([sample(nodes=3, cpu=95.0)] * 3, nodes=3)
    assert result.nodes == 3
    assert node_reason(result) == ("engine CPU above 80 % of its CPUs for 3 samples, but at the tenant's maximum "
                                   "of 3 nodes")


def test_a_kept_count_is_told_in_the_same_words_whatever_the_figures():
    # the controller publishes a plan only when it changes: a hold must not change with each poll
    at_max = [plan([sample(nodes=3, cpu=cpu, queue=queue)] * 3, nodes=3) for cpu, queue in ((91, 12), (99, 40))]
    assert at_max[0] == at_max[1]
    idle = [plan([sample(heap=heap, searches=0.0)] * 3) for heap in (0.85, 0.97)]
    assert idle[0] == idle[1]


def test_an_engine_cpu_not_known_yet_is_neither_pressure_nor_calm():
    assert plan([sample(cpu=None), sample(cpu=95.0), sample(cpu=95.0)]).nodes == 1
    assert plan([sample(nodes=2, cpu=None, heap=0.1), sample(nodes=2, cpu=1.0, heap=0.1),
                 sample(nodes=2, cpu=1.0, heap=0.1)], nodes=2).nodes == 2


def test_fewer_samples_than_the_window_keep_the_count():
    result = plan([sample(cpu=95.0)] * 2)
    assert (result.nodes, result.reason) == (1, "node count kept until 3 samples are in")


# -- scale in once the load has gone -----------------------------------------------------------------

def test_a_node_goes_once_the_load_has_gone():
    result = plan([sample(nodes=2, cpu=3.0, heap=0.2, searches=0.0)] * 3, nodes=2)
    assert result.nodes == 1
    assert result.reason == ("load gone: engine CPU below 15 % of its CPUs and live heap below 30% for 3 samples, "
                             "nothing queued or refused")


def test_garbage_waiting_in_an_idle_heap_does_not_keep_a_node():
    # heap in use 73 %, of which the last collection left 25 %: the rest is garbage, not load
    assert plan([sample(nodes=2, cpu=2.0, heap=0.73, live=0.25, searches=0.0)] * 3, nodes=2).nodes == 1


@pytest.mark.parametrize("still", [{"cpu": 30.0}, {"heap": 0.5}, {"heap": 0.6, "live": 0.45}, {"queue": 1}])
def test_no_node_goes_while_some_load_remains(still):
    quiet = {"cpu": 3.0, "heap": 0.2, **still}
    assert plan([sample(nodes=2, **quiet)] * 3, nodes=2).nodes == 2


def test_never_below_the_tenants_minimum():
    result = plan([sample(nodes=2, cpu=3.0, heap=0.2, searches=0.0)] * 3, nodes=2,
                  scaling=ScalingPolicy(min_nodes=2, max_nodes=3))
    assert result.nodes == 2
    assert node_reason(result) == "no searches or writes in the last 3 samples: nothing to scale out for"
