"""Rates from successive counter totals, robust to counters that restart from zero."""

from __future__ import annotations

from libs.common.events import OperationRates
from libs.common.metrics import OperationTotals


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
