"""What an engine reports about itself: cluster, node and index statistics, engine-agnostic.

Elasticsearch 8 and OpenSearch answer `_cluster/health`, `_nodes/stats`, `_nodes/os` and `_stats`
with the same field names, so one parser serves both adapters.

A node's CPU is its engine process's own (CPU time, `process.cpu.total_in_millis`), never the
host's (`os.cpu.percent`): on a shared host that is every neighbour's load. Both engines' own
`process.cpu.percent` is a share of the host's CPUs outside a container (measured: the JVM divides
by the host's ticks whatever `-XX:ActiveProcessorCount` says) and of the quota inside one, and it
is measured since whoever asked last; so the platform divides CPU time by the CPUs the node was
given itself (`cpu_limit`), between its own polls.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class OperationTotals(BaseModel):
    """Monotonic counters since the engine (or index) started; they reset on a restart."""

    indexing_ops: int = 0
    indexing_time_ms: int = 0
    search_ops: int = 0
    search_time_ms: int = 0


class IndexStats(OperationTotals):
    name: str
    docs: int = 0
    store_bytes: int = 0
    primary_store_bytes: int = 0
    primaries: int = 1
    replicas: int = 0


# `_nodes/stats` metrics and fields read; the filter keeps each poll's answer small (the
# thread_pool metric alone lists some twenty pools per node)
NODE_STATS_METRICS = "jvm,os,fs,process,thread_pool,breaker"
NODE_STATS_FIELDS = ",".join(f"nodes.*.{f}" for f in (
    "jvm.mem.heap_used_in_bytes", "jvm.mem.heap_max_in_bytes", "jvm.mem.pools.old.last_gc_stats.used_in_bytes",
    "os.cgroup.cpu", "fs.total", "process.timestamp", "process.cpu", "thread_pool.search", "thread_pool.write",
    "breakers.*.tripped"))
NODE_INFO_FIELDS = "nodes.*.os.allocated_processors,nodes.*.os.available_processors"  # of `_nodes/os`


class NodeLoad(BaseModel):
    """One node's own load counters, read from its engine."""

    node_id: str
    cpu_limit: float = 1.0  # CPUs the engine was given: its container's quota, else its processors
    cpu_time_ms: int = 0  # the engine process's CPU time since it started
    measured_at_ms: int = 0  # the engine's clock when it read them
    search_queue: int = 0  # searches waiting for a thread of the search pool
    search_rejected: int = 0  # since the node started
    write_queue: int = 0
    write_rejected: int = 0
    breaker_tripped: int = 0  # requests refused for memory (429 circuit_breaking_exception), all breakers


class ClusterStats(OperationTotals):
    health: str
    nodes: int
    indices: int = 0
    docs: int = 0
    store_bytes: int = 0
    active_shards: int = 0
    relocating_shards: int = 0
    unassigned_shards: int = 0
    heap_used_bytes: int = 0
    heap_max_bytes: int = 0
    heap_live_bytes: int = 0  # what the last collection of the old generation left; else heap used
    disk_free_bytes: int = 0
    disk_total_bytes: int = 0
    node_loads: list[NodeLoad] = []
    per_index: list[IndexStats] = []


def _totals(section: dict[str, Any]) -> dict[str, int]:
    indexing, search = section.get("indexing", {}), section.get("search", {})
    return {
        "indexing_ops": indexing.get("index_total", 0),
        "indexing_time_ms": indexing.get("index_time_in_millis", 0),
        "search_ops": search.get("query_total", 0),
        "search_time_ms": search.get("query_time_in_millis", 0),
    }


def _cpu_limit(node: dict[str, Any], info: dict[str, Any]) -> float:
    """The CPUs a node was given: its cgroup's quota where one is set (a container's CPU limit,
    which may be a fraction), else the processors the engine sizes itself for (the local driver's
    `-XX:ActiveProcessorCount`, or the container's rounded up)."""
    cgroup = node.get("os", {}).get("cgroup", {}).get("cpu", {})
    quota, period = int(cgroup.get("cfs_quota_micros", -1)), int(cgroup.get("cfs_period_micros", 0))
    if quota > 0 and period > 0:
        return quota / period
    os_info = info.get("os", {})
    return float(os_info.get("allocated_processors") or os_info.get("available_processors") or 1)


def _node_load(node_id: str, node: dict[str, Any], info: dict[str, Any]) -> NodeLoad:
    process, pools = node.get("process", {}), node.get("thread_pool", {})
    search, write = pools.get("search", {}), pools.get("write", {})
    return NodeLoad(
        node_id=node_id, cpu_limit=_cpu_limit(node, info),
        cpu_time_ms=process.get("cpu", {}).get("total_in_millis", -1), measured_at_ms=process.get("timestamp", 0),
        search_queue=search.get("queue", 0), search_rejected=search.get("rejected", 0),
        write_queue=write.get("queue", 0), write_rejected=write.get("rejected", 0),
        breaker_tripped=sum(b.get("tripped", 0) for b in node.get("breakers", {}).values()),
    )


def _heap_live(node: dict[str, Any]) -> int:
    """A node's heap still in use after its old generation was last collected, which OpenSearch
    reports (`last_gc_stats`); heap used (garbage included) where the engine does not say, as
    Elasticsearch 8 does not, or before the first collection."""
    mem = node["jvm"]["mem"]
    after_gc = mem.get("pools", {}).get("old", {}).get("last_gc_stats", {}).get("used_in_bytes", 0)
    return after_gc or mem["heap_used_in_bytes"]


def parse_cluster_stats(health: dict[str, Any], nodes: dict[str, Any], indices: dict[str, Any],
                        nodes_info: dict[str, Any] | None = None) -> ClusterStats:
    """From `_cluster/health?level=indices`, `_nodes/stats/<NODE_STATS_METRICS>`, `_stats/docs,store,
    indexing,search` and `_nodes/os` (the processors each node was given)."""
    node_list = list(nodes.get("nodes", {}).values())
    info = (nodes_info or {}).get("nodes", {})
    layout = health.get("indices", {})
    per_index = [
        IndexStats(
            name=name,
            docs=body["primaries"].get("docs", {}).get("count", 0),
            store_bytes=body["total"].get("store", {}).get("size_in_bytes", 0),
            primary_store_bytes=body["primaries"].get("store", {}).get("size_in_bytes", 0),
            primaries=layout.get(name, {}).get("number_of_shards", 1),
            replicas=layout.get(name, {}).get("number_of_replicas", 0),
            **_totals(body["total"]),
        )
        for name, body in sorted(indices.get("indices", {}).items())
        if not name.startswith(".")  # system indices are the platform's, not the tenant's
    ]
    return ClusterStats(
        health=health["status"],
        nodes=health["number_of_nodes"],
        indices=len(per_index),
        docs=sum(i.docs for i in per_index),
        store_bytes=sum(i.store_bytes for i in per_index),
        active_shards=health.get("active_shards", 0),
        relocating_shards=health.get("relocating_shards", 0),
        unassigned_shards=health.get("unassigned_shards", 0),
        heap_used_bytes=sum(n["jvm"]["mem"]["heap_used_in_bytes"] for n in node_list),
        heap_max_bytes=sum(n["jvm"]["mem"]["heap_max_in_bytes"] for n in node_list),
        heap_live_bytes=sum(_heap_live(n) for n in node_list),
        disk_free_bytes=sum(n["fs"]["total"]["available_in_bytes"] for n in node_list),
        disk_total_bytes=sum(n["fs"]["total"]["total_in_bytes"] for n in node_list),
        indexing_ops=sum(i.indexing_ops for i in per_index),
        indexing_time_ms=sum(i.indexing_time_ms for i in per_index),
        search_ops=sum(i.search_ops for i in per_index),
        search_time_ms=sum(i.search_time_ms for i in per_index),
        node_loads=[_node_load(node_id, node, info.get(node_id, {})) for node_id, node in
                    sorted(nodes.get("nodes", {}).items())],
        per_index=per_index,
    )
