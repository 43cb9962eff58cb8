"""Reporting's pure parts: rates over counter resets, metering periods, the Prometheus view."""

from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from libs.common.events import MetricsSample, OperationRates
from libs.common.metrics import ClusterStats, IndexStats, OperationTotals, parse_cluster_stats
from libs.common.models import ClusterRecord, ClusterSpec, SnapshotPolicy
from services.reporting.exposition import FleetCollector, ServiceMetrics
from services.reporting.metering import meter_sample, period_of
from services.reporting.rates import counter_growth, derive_rates

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
    assert (parsed.heap_used_bytes, parsed.heap_max_bytes, parsed.cpu_percent) == (20, 200, 9)
    assert (parsed.disk_free_bytes, parsed.unassigned_shards, parsed.indexing_ops, parsed.search_ops) == (100, 1, 6, 4)
    assert [i.name for i in parsed.per_index] == ["books"]


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
