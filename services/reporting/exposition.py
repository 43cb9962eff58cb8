"""Prometheus exposition: the fleet's latest samples and the reporting service's own metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from libs.common.events import MetricsSample
from libs.common.models import ClusterRecord, utcnow

HEALTH_STATES = ("green", "yellow", "red")


class ServiceMetrics:
    """The reporting service's own metrics, in a registry built at start-up."""

    def __init__(self, registry: CollectorRegistry):
        self.poll_duration = Histogram(
            "ess_reporting_poll_duration_seconds", "Time to poll one cluster's statistics.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=registry,
        )
        self.poll_errors = Counter(
            "ess_reporting_poll_errors", "Polls that failed or timed out.", ["tenant", "cluster"], registry=registry,
        )
        self.events_published = Counter(
            "ess_reporting_events_published", "Events published to NATS.", ["kind"], registry=registry,
        )


class FleetCollector:
    """Renders the latest sample of every polled cluster at scrape time; gone clusters vanish."""

    def __init__(self, latest: dict[str, MetricsSample], up: dict[str, tuple[str, bool]],
                 records: dict[str, ClusterRecord] | None = None):
        self._latest = latest
        self._up = up
        self._records = records if records is not None else {}  # the polled clusters' records: backups

    def collect(self):
        labels = ["tenant", "cluster"]
        up = GaugeMetricFamily("ess_cluster_up", "1 when the last poll of the cluster succeeded.", labels=labels)
        for cluster, (tenant, ok) in sorted(self._up.items()):
            up.add_metric([tenant, cluster], 1.0 if ok else 0.0)
        yield up

        health = GaugeMetricFamily("ess_cluster_health_status", "1 for the cluster's current health colour.",
                                   labels=labels + ["status"])
        gauges = {
            name: GaugeMetricFamily(f"ess_cluster_{name}", text, labels=labels)
            for name, text in (
                ("nodes", "Nodes in the cluster."),
                ("indices", "Tenant indices."),
                ("docs", "Documents in tenant indices (primaries)."),
                ("store_bytes", "Bytes stored by tenant indices, replicas included."),
                ("jvm_heap_used_bytes", "JVM heap in use, all nodes."),
                ("jvm_heap_max_bytes", "JVM heap available, all nodes."),
                ("jvm_heap_live_bytes", "JVM heap left by the last old-generation collection (where the engine "
                 "reports it: OpenSearch), else heap in use; all nodes."),
                ("disk_free_bytes", "Free disk on the data paths, all nodes."),
                ("disk_total_bytes", "Disk size of the data paths, all nodes."),
            )
        }
        shards = GaugeMetricFamily("ess_cluster_shards", "Shards by state.", labels=labels + ["state"])
        # the cluster's own load, what the shard controller scales on (never the host's CPU)
        engine_cpu = GaugeMetricFamily("ess_cluster_engine_cpu_percent", "CPU of the busiest node's engine process "
                                       "between the last two polls, % of the CPUs the node was given.", labels=labels)
        latency = GaugeMetricFamily("ess_cluster_search_latency_seconds", "Mean query time of the searches "
                                    "between the last two polls (query_time_in_millis over query_total).",
                                    labels=labels)
        pool_labels = labels + ["pool"]
        queued = GaugeMetricFamily("ess_cluster_thread_pool_queue", "Requests waiting in the pool, on the node "
                                   "with the longest queue.", labels=pool_labels)
        rejected = CounterMetricFamily("ess_cluster_thread_pool_rejected", "Requests the pool rejected, all "
                                       "nodes (engine counters: reset when a node restarts).", labels=pool_labels)
        tripped = CounterMetricFamily("ess_cluster_circuit_breaker_tripped", "Requests refused for memory (429 "
                                      "circuit_breaking_exception), all nodes and breakers.", labels=labels)
        counters = {
            name: CounterMetricFamily(f"ess_cluster_{name}", text, labels=labels)
            for name, text in (
                ("indexing_operations", "Documents indexed since the engine started."),
                ("indexing_time_seconds", "Time spent indexing."),
                ("search_operations", "Search queries since the engine started."),
                ("search_time_seconds", "Time spent searching."),
            )
        }
        index_labels = labels + ["index"]
        index_docs = GaugeMetricFamily("ess_index_docs", "Documents in the index (primaries).", labels=index_labels)
        index_store = GaugeMetricFamily("ess_index_store_bytes", "Bytes stored by the index.", labels=index_labels)
        index_indexing = CounterMetricFamily("ess_index_indexing_operations", "Documents indexed.", labels=index_labels)
        index_search = CounterMetricFamily("ess_index_search_operations", "Search queries.", labels=index_labels)

        for cluster, sample in sorted(self._latest.items()):
            key = [sample.tenant_org_id, cluster]
            stats = sample.stats
            for state in HEALTH_STATES:
                health.add_metric(key + [state], 1.0 if stats.health == state else 0.0)
            values = {
                "nodes": stats.nodes, "indices": stats.indices, "docs": stats.docs, "store_bytes": stats.store_bytes,
                "jvm_heap_used_bytes": stats.heap_used_bytes, "jvm_heap_max_bytes": stats.heap_max_bytes,
                "jvm_heap_live_bytes": stats.heap_live_bytes,
                "disk_free_bytes": stats.disk_free_bytes,
                "disk_total_bytes": stats.disk_total_bytes,
            }
            for name, value in values.items():
                gauges[name].add_metric(key, value)
            for state, value in (("active", stats.active_shards), ("relocating", stats.relocating_shards),
                                 ("unassigned", stats.unassigned_shards)):
                shards.add_metric(key + [state], value)
            if sample.load.engine_cpu_percent is not None:
                engine_cpu.add_metric(key, sample.load.engine_cpu_percent)
            if sample.rates.search_latency_ms is not None:
                latency.add_metric(key, sample.rates.search_latency_ms / 1000)
            for pool, waiting, refused in (
                ("search", sample.load.search_queue, sum(n.search_rejected for n in stats.node_loads)),
                ("write", sample.load.write_queue, sum(n.write_rejected for n in stats.node_loads)),
            ):
                queued.add_metric(key + [pool], waiting)
                rejected.add_metric(key + [pool], refused)
            tripped.add_metric(key, sum(n.breaker_tripped for n in stats.node_loads))
            counters["indexing_operations"].add_metric(key, stats.indexing_ops)
            counters["indexing_time_seconds"].add_metric(key, stats.indexing_time_ms / 1000)
            counters["search_operations"].add_metric(key, stats.search_ops)
            counters["search_time_seconds"].add_metric(key, stats.search_time_ms / 1000)
            for index in stats.per_index:
                index_key = key + [index.name]
                index_docs.add_metric(index_key, index.docs)
                index_store.add_metric(index_key, index.store_bytes)
                index_indexing.add_metric(index_key, index.indexing_ops)
                index_search.add_metric(index_key, index.search_ops)
        yield health
        yield from gauges.values()
        yield shards
        yield from (engine_cpu, latency, queued, rejected, tripped)
        yield from counters.values()
        yield from (index_docs, index_store, index_indexing, index_search)
        yield from self._backups(labels)

    def _backups(self, labels: list[str]):
        """Per awake cluster with a schedule: how old its newest successful snapshot is (since it
        formed, if it has none), its period (the alert compares both), and a failed newest one."""
        age = GaugeMetricFamily("ess_cluster_snapshot_age_seconds", "Seconds since the newest successful "
                                "snapshot finished (since the cluster formed, if none).", labels=labels)
        period = GaugeMetricFamily("ess_cluster_snapshot_period_seconds", "The snapshot policy's period.",
                                   labels=labels)
        failed = GaugeMetricFamily("ess_cluster_snapshot_failed", "1 when the newest snapshot failed; the "
                                   "reason is on GET /clusters/{id}/snapshots.", labels=labels + ["reason"])
        now = utcnow()
        for cluster, record in sorted(self._records.items()):
            since = record.last_snapshot_at or record.formed_at
            if record.snapshot_policy.every_s <= 0 or since is None or record.hibernate_requested:
                continue  # no schedule, never formed, or asleep (nothing changes while it sleeps)
            key = [record.tenant_org_id, cluster]
            age.add_metric(key, (now - since).total_seconds())
            period.add_metric(key, record.snapshot_policy.every_s)
            failed.add_metric(key + [(record.snapshot_failure or "")[:120]], 1.0 if record.snapshot_failure else 0.0)
        yield from (age, period, failed)
