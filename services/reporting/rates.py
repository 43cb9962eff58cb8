"""Rates and the cluster's own load from successive samples, robust to counters that restart
from zero and to nodes that join, leave or restart between two polls."""

from __future__ import annotations

from libs.common.events import ClusterLoad, OperationRates
from libs.common.metrics import ClusterStats, NodeLoad, OperationTotals


def counter_growth(previous: int, current: int) -> int:
    """How much a counter grew; a smaller value means it restarted, so all of it is new."""
    return current - previous if current >= previous else current


def derive_rates(previous: OperationTotals | None, current: OperationTotals, elapsed_s: float) -> OperationRates:
    if previous is None or elapsed_s <= 0:
        return OperationRates()
    indexed = counter_growth(previous.indexing_ops, current.indexing_ops)
    searched = counter_growth(previous.search_ops, current.search_ops)
    indexing_ms = counter_growth(previous.indexing_time_ms, current.indexing_time_ms)
    search_ms = counter_growth(previous.search_time_ms, current.search_time_ms)
    return OperationRates(
        indexing_per_s=indexed / elapsed_s,
        search_per_s=searched / elapsed_s,
        indexing_latency_ms=indexing_ms / indexed if indexed else None,
        search_latency_ms=search_ms / searched if searched else None,
    )


def _cpu_percent(before: NodeLoad, now: NodeLoad) -> float | None:
    """A node's engine CPU between two reads, % of the CPUs it was given; None for a node that
    restarted meanwhile (its CPU time starts again) or an engine that cannot tell."""
    elapsed_ms = now.measured_at_ms - before.measured_at_ms
    used_ms = now.cpu_time_ms - before.cpu_time_ms
    if elapsed_ms <= 0 or used_ms < 0 or before.cpu_time_ms < 0:
        return None
    return 100 * used_ms / (elapsed_ms * now.cpu_limit)


def derive_load(previous: ClusterStats | None, current: ClusterStats) -> ClusterLoad:
    """Node by node, between the nodes of both polls: the busiest engine's CPU, the longest queues
    of the latest poll, and what was rejected meanwhile (a node new since then counts next time)."""
    before = {node.node_id: node for node in previous.node_loads} if previous else {}
    both = [(before[node.node_id], node) for node in current.node_loads if node.node_id in before]
    cpu = [c for c in (_cpu_percent(old, new) for old, new in both) if c is not None]
    return ClusterLoad(
        engine_cpu_percent=max(cpu) if cpu else None,
        search_queue=max((node.search_queue for node in current.node_loads), default=0),
        write_queue=max((node.write_queue for node in current.node_loads), default=0),
        search_rejected=sum(counter_growth(old.search_rejected, new.search_rejected) for old, new in both)
        if both else None,
        write_rejected=sum(counter_growth(old.write_rejected, new.write_rejected) for old, new in both)
        if both else None,
        breaker_tripped=sum(counter_growth(old.breaker_tripped, new.breaker_tripped) for old, new in both)
        if both else None,
    )
