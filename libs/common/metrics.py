"""What an engine reports about itself: cluster and index statistics, engine-agnostic.

Elasticsearch 8 and OpenSearch answer `_cluster/health`, `_nodes/stats` and `_stats` with the
same field names, so one parser serves both adapters.
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
    cpu_percent: float = 0.0  # the busiest node
    disk_free_bytes: int = 0
    disk_total_bytes: int = 0
    per_index: list[IndexStats] = []


def _totals(section: dict[str, Any]) -> dict[str, int]:
    indexing, search = section.get("indexing", {}), section.get("search", {})
    return {
        "indexing_ops": indexing.get("index_total", 0),
        "indexing_time_ms": indexing.get("index_time_in_millis", 0),
        "search_ops": search.get("query_total", 0),
        "search_time_ms": search.get("query_time_in_millis", 0),
    }


def parse_cluster_stats(health: dict[str, Any], nodes: dict[str, Any], indices: dict[str, Any]) -> ClusterStats:
    """From `_cluster/health?level=indices`, `_nodes/stats/jvm,os,fs` and `_stats/docs,store,indexing,search`."""
    node_list = list(nodes.get("nodes", {}).values())
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
        cpu_percent=max((n["os"]["cpu"]["percent"] for n in node_list), default=0),
        disk_free_bytes=sum(n["fs"]["total"]["available_in_bytes"] for n in node_list),
        disk_total_bytes=sum(n["fs"]["total"]["total_in_bytes"] for n in node_list),
        indexing_ops=sum(i.indexing_ops for i in per_index),
        indexing_time_ms=sum(i.indexing_time_ms for i in per_index),
        search_ops=sum(i.search_ops for i in per_index),
        search_time_ms=sum(i.search_time_ms for i in per_index),
        per_index=per_index,
    )
