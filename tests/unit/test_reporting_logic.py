"""Reporting's pure parts: rates over counter resets, metering periods, the Prometheus view."""

from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from libs.common.events import ClusterLoad, MetricsSample, OperationRates
from libs.common.metrics import ClusterStats, IndexStats, OperationTotals, parse_cluster_stats
from libs.common.models import ClusterRecord, ClusterSpec, SnapshotPolicy
from services.reporting.exposition import FleetCollector, ServiceMetrics
from services.reporting.metering import meter_sample, period_of
from services.reporting.rates import counter_growth, derive_load, derive_rates

HOUR = 3600


def totals(indexing=0, indexing_ms=0, search=0, search_ms=0) -> OperationTotals:
    return OperationTotals(indexing_ops=indexing, indexing_time_ms=indexing_ms, search_ops=search,
                           search_time_ms=search_ms)


def test_rates_from_growing_counters():
    rates = derive_rates(totals(100, 50, 10, 20), totals(200, 150, 30, 60), elapsed_s=10)
    assert rates == OperationRates(indexing_per_s=10, search_per_s=2, indexing_latency_ms=1, search_latency_ms=2)


def test_counter_reset_gives_neither_negative_nor_huge_rates():
    # the node restarted: counters fell from millions back to a handful
    rates = derive_rates(totals(5_000_000, 900_000, 70_000, 80_000), totals(40, 20, 5, 10), elapsed_s=10)
    assert rates.indexing_per_s == 4
    assert rates.search_per_s == 0.5
    assert counter_growth(10, 3) == 3


def test_first_sample_has_no_rates():
    assert derive_rates(None, totals(5), 10) == OperationRates()
    assert derive_rates(totals(5), totals(5), 0) == OperationRates()


def stats(docs=0, store=0, nodes=1, indexing=0, search=0) -> ClusterStats:
    return ClusterStats(health="green", nodes=nodes, docs=docs, store_bytes=store,
                        indexing_ops=indexing, search_ops=search)


def fold(meter, sample, at):
    return meter_sample(meter, "c1", "acme", sample, at, node_memory_gb=2.0, period_s=HOUR, max_gap_s=30)


def test_usage_accumulates_within_a_period_and_closes_at_its_end():
    start = 10 * HOUR
    meter, closed = fold(None, stats(indexing=100), start + 5)
    assert closed is None  # the first sample is the baseline
    t = start + 5
    for i in range(1, 360):  # every 10 s to the end of the hour
        t = start + 5 + 10 * i
        meter, closed = fold(meter, stats(store=10**9, nodes=2, indexing=100 + i, search=2 * i), t)
        assert closed is None
    meter, record = fold(meter, stats(store=10**9, nodes=2, indexing=500, search=800), start + HOUR + 5)
    assert record is not None
    assert record.period_start == datetime.fromtimestamp(start, timezone.utc)
    assert record.period_end == datetime.fromtimestamp(start + HOUR, timezone.utc)
    assert record.documents_indexed == 400
    assert record.search_requests == 800
    billed_s = HOUR - 5  # from the baseline sample to the end of the period
    assert record.node_hours == pytest.approx(2 * billed_s / HOUR)
    assert record.memory_gb_hours == pytest.approx(2 * 2.0 * billed_s / HOUR)
    assert record.storage_gb_hours == pytest.approx(billed_s / HOUR)
    # the 5 s past the boundary belong to the next period
    assert meter.period_start == start + HOUR
    assert meter.node_seconds == pytest.approx(2 * 5)


def test_a_sample_seen_twice_counts_once():
    meter, _ = fold(None, stats(indexing=1), 100)
    meter, _ = fold(meter, stats(indexing=5, nodes=1), 110)
    again, closed = fold(meter, stats(indexing=5, nodes=1), 110)
    assert closed is None
    assert again.documents_indexed == 4
    assert again.node_seconds == 10


def test_a_long_gap_is_not_billed():
    meter, _ = fold(None, stats(), 100)
    meter, _ = fold(meter, stats(nodes=1), 100 + 600)  # reporting was down ten minutes
    assert meter.node_seconds == 30


def test_period_of():
    assert period_of(7 * HOUR + 59, HOUR) == 7 * HOUR


def test_parse_cluster_stats_sums_nodes_and_skips_system_indices():
    node = {"jvm": {"mem": {"heap_used_in_bytes": 10, "heap_max_in_bytes": 100}}, "os": {"cpu": {"percent": 7}},
            "fs": {"total": {"available_in_bytes": 50, "total_in_bytes": 80}}}
    index = {"primaries": {"docs": {"count": 3}},
             "total": {"store": {"size_in_bytes": 30}, "indexing": {"index_total": 6, "index_time_in_millis": 2},
                       "search": {"query_total": 4, "query_time_in_millis": 8}}}
    parsed = parse_cluster_stats(
        {"status": "yellow", "number_of_nodes": 2, "active_shards": 2, "unassigned_shards": 1},
        {"nodes": {"a": node, "b": {**node, "os": {"cpu": {"percent": 9}}}}},
        {"indices": {"books": index, ".plugins-ml-config": index}},
    )
    assert (parsed.health, parsed.nodes, parsed.indices, parsed.docs, parsed.store_bytes) == ("yellow", 2, 1, 3, 30)
    assert (parsed.heap_used_bytes, parsed.heap_max_bytes) == (20, 200)
    assert (parsed.disk_free_bytes, parsed.unassigned_shards, parsed.indexing_ops, parsed.search_ops) == (100, 1, 6, 4)
    assert [i.name for i in parsed.per_index] == ["books"]
    assert "cpu_percent" not in parsed.model_dump()  # the host's CPU is no figure of the cluster


def node_stats(cpu_ms: int, at_ms: int, quota: int = -1, search_queue: int = 0, search_rejected: int = 0,
               write_rejected: int = 0, tripped: int = 0, live: int | None = None) -> dict:
    old = {"last_gc_stats": {"used_in_bytes": live}} if live is not None else {}
    return {"jvm": {"mem": {"heap_used_in_bytes": 100, "heap_max_in_bytes": 200, "pools": {"old": old}}},
            "os": {"cpu": {"percent": 100},
                   "cgroup": {"cpu": {"cfs_quota_micros": quota, "cfs_period_micros": 100000}}},
            "fs": {"total": {"available_in_bytes": 1, "total_in_bytes": 2}},
            "process": {"timestamp": at_ms, "cpu": {"percent": 50, "total_in_millis": cpu_ms}},
            "thread_pool": {"search": {"threads": 2, "queue": search_queue, "active": 2, "rejected": search_rejected},
                            "write": {"threads": 1, "queue": 0, "active": 0, "rejected": write_rejected}},
            "breakers": {"request": {"tripped": 0}, "parent": {"tripped": tripped}}}


def cluster_of(nodes: dict[str, dict], processors: dict[str, int] | None = None) -> ClusterStats:
    info = {"nodes": {n: {"os": {"allocated_processors": p, "available_processors": p}}
                      for n, p in (processors or {}).items()}}
    return parse_cluster_stats({"status": "green", "number_of_nodes": len(nodes)}, {"nodes": nodes}, {}, info)


def test_a_nodes_cpus_are_its_containers_quota_else_the_processors_its_engine_was_given():
    parsed = cluster_of({"a": node_stats(0, 0), "b": node_stats(0, 0, quota=50_000), "c": node_stats(0, 0)},
                        {"a": 1, "b": 1, "c": 4})
    assert [(n.node_id, n.cpu_limit) for n in parsed.node_loads] == [("a", 1.0), ("b", 0.5), ("c", 4.0)]


def test_engine_cpu_is_its_own_time_over_the_cpus_it_was_given_on_the_busiest_node():
    before = cluster_of({"a": node_stats(10_000, 1_000_000), "b": node_stats(50_000, 1_000_000)}, {"a": 1, "b": 2})
    # in 10 s node a used 2.5 s of its 1 processor, node b 12 s of its 2
    after = cluster_of({"a": node_stats(12_500, 1_010_000), "b": node_stats(62_000, 1_010_000)}, {"a": 1, "b": 2})
    assert derive_load(before, after).engine_cpu_percent == 60.0
    assert derive_load(None, after).engine_cpu_percent is None  # the first poll: nothing to compare


def test_a_node_that_restarted_or_joined_between_two_polls_gives_no_cpu_until_the_next():
    before = cluster_of({"a": node_stats(90_000, 1_000_000)}, {"a": 1})
    after = cluster_of({"a": node_stats(300, 1_010_000), "b": node_stats(900_000, 1_010_000)}, {"a": 1, "b": 1})
    load = derive_load(before, after)
    assert load.engine_cpu_percent is None
    assert derive_load(after, cluster_of({"b": node_stats(904_000, 1_020_000)}, {"b": 1})).engine_cpu_percent == 40.0


def test_live_heap_is_what_the_last_old_collection_left_where_the_engine_says_else_heap_used():
    # OpenSearch reports the old generation after its last collection; Elasticsearch 8 does not
    parsed = cluster_of({"a": node_stats(0, 0, live=30), "b": node_stats(0, 0), "c": node_stats(0, 0, live=0)})
    assert (parsed.heap_used_bytes, parsed.heap_live_bytes) == (300, 30 + 100 + 100)


def test_requests_refused_for_memory_are_counted_since_the_last_poll():
    before = cluster_of({"a": node_stats(0, 0, tripped=91)})
    load = derive_load(before, cluster_of({"a": node_stats(0, 10, tripped=120, search_rejected=2)}))
    assert (load.breaker_tripped, load.search_rejected, load.rejected) == (29, 2, 31)


def test_queues_are_the_longest_and_rejections_those_since_the_last_poll():
    before = cluster_of({"a": node_stats(0, 0, search_rejected=100, write_rejected=7), "b": node_stats(0, 0)})
    after = cluster_of({"a": node_stats(0, 10, search_queue=3, search_rejected=130, write_rejected=7),
                        "b": node_stats(0, 10, search_queue=12, search_rejected=5)})
    load = derive_load(before, after)
    assert (load.search_queue, load.write_queue, load.search_rejected, load.write_rejected) == (12, 0, 35, 0)
    assert load.rejected == 35
    first = derive_load(None, after)
    assert (first.search_queue, first.search_rejected) == (12, None)


def exposition(latest, up) -> str:
    registry = CollectorRegistry()
    ServiceMetrics(registry)
    registry.register(FleetCollector(latest, up))
    return generate_latest(registry).decode()


def test_prometheus_view_has_tenant_cluster_and_index_labels():
    sample = MetricsSample(
        cluster_id="c1", tenant_org_id="acme", taken_at=datetime.now(timezone.utc), rates=OperationRates(),
        stats=ClusterStats(health="red", nodes=1, docs=42, per_index=[IndexStats(name="books", docs=42)]),
    )
    text = exposition({"c1": sample}, {"c1": ("acme", True)})
    assert 'ess_cluster_docs{cluster="c1",tenant="acme"} 42.0' in text
    assert 'ess_index_docs{cluster="c1",index="books",tenant="acme"} 42.0' in text
    assert 'ess_cluster_health_status{cluster="c1",status="red",tenant="acme"} 1.0' in text
    assert 'ess_cluster_up{cluster="c1",tenant="acme"} 1.0' in text


def test_prometheus_view_has_each_signal_the_controller_scales_on():
    stats = cluster_of({"a": node_stats(0, 0, search_rejected=130, write_rejected=7)}, {"a": 1})
    sample = MetricsSample(cluster_id="c1", tenant_org_id="acme", taken_at=datetime.now(timezone.utc), stats=stats,
                           rates=OperationRates(search_per_s=4, search_latency_ms=250),
                           load=ClusterLoad(engine_cpu_percent=37.5, search_queue=12, write_queue=1))
    text = exposition({"c1": sample}, {"c1": ("acme", True)})
    key = 'cluster="c1",'
    assert f'ess_cluster_engine_cpu_percent{{{key}tenant="acme"}} 37.5' in text
    assert f'ess_cluster_search_latency_seconds{{{key}tenant="acme"}} 0.25' in text
    assert f'ess_cluster_thread_pool_queue{{{key}pool="search",tenant="acme"}} 12.0' in text
    assert f'ess_cluster_thread_pool_queue{{{key}pool="write",tenant="acme"}} 1.0' in text
    assert f'ess_cluster_thread_pool_rejected_total{{{key}pool="search",tenant="acme"}} 130.0' in text
    assert f'ess_cluster_thread_pool_rejected_total{{{key}pool="write",tenant="acme"}} 7.0' in text
    assert f'ess_cluster_circuit_breaker_tripped_total{{{key}tenant="acme"}} 0.0' in text
    assert f'ess_cluster_jvm_heap_live_bytes{{{key}tenant="acme"}} 100.0' in text
    assert "ess_cluster_cpu_percent" not in text  # the host's CPU said nothing about the cluster


def test_a_cluster_that_stops_answering_keeps_only_up_zero():
    text = exposition({}, {"c1": ("acme", False)})
    assert 'ess_cluster_up{cluster="c1",tenant="acme"} 0.0' in text
    assert "ess_cluster_health_status{" not in text
    assert "ess_cluster_docs{" not in text


def test_a_cluster_without_backups_exposes_no_snapshot_age_so_no_alert():
    def cluster(cluster_id: str, every_s: int) -> ClusterRecord:
        return ClusterRecord(id=cluster_id, tenant_org_id="acme", user="alice", service_name=cluster_id,
                             spec=ClusterSpec(replicas=1, cpu="500m", memory="1Gi", storage="5Gi",
                                              engine="opensearch", version="2.19.1"),
                             snapshot_policy=SnapshotPolicy(every_s=every_s),
                             formed_at=datetime.now(timezone.utc) - timedelta(days=2))

    # `backups.new_policy` gives a cluster whose backups are off every_s 0
    records = {"c1": cluster("c1", 3600), "c2": cluster("c2", 0)}
    registry = CollectorRegistry()
    registry.register(FleetCollector({}, {}, records))
    ages = [line for line in generate_latest(registry).decode().splitlines()
            if line.startswith("ess_cluster_snapshot_age_seconds{")]
    assert len(ages) == 1 and 'cluster="c1"' in ages[0]
