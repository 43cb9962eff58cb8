"""Metering, pure: fold metric samples into per-period usage, and close a period into a record.

Time between two samples is billed at the later sample's size (storage, nodes), split at the
period boundary; a gap longer than `max_gap_s` (reporting down, engine dead) is not billed.
"""

from __future__ import annotations

from datetime import datetime, timezone

from pydantic import BaseModel

from libs.common.events import UsageRecord
from libs.common.metrics import ClusterStats, OperationTotals
from services.reporting.rates import counter_growth

GB = 10**9


class UsageMeter(BaseModel):
    """The open period's running totals of one cluster (kept in KV across restarts)."""

    cluster_id: str
    tenant_org_id: str
    period_start: int  # epoch seconds
    last_sample_at: float  # epoch seconds
    last_totals: OperationTotals
    storage_byte_seconds: float = 0.0
    node_seconds: float = 0.0
    memory_gb_seconds: float = 0.0
    documents_indexed: int = 0
    search_requests: int = 0
    samples: int = 1
    requests: int = 0  # through the gateway
    bytes_in: int = 0
    bytes_out: int = 0
    # opened by gateway activity before any sample: the next sample is the baseline, billing nothing
    awaiting_baseline: bool = False
    # the latest gateway batches folded in (their event ids): a batch delivered again, after a
    # reporting replica died between its write and its ack, counts once
    activity_ids: list[str] = []


ACTIVITY_IDS_KEPT = 256  # far more batches than arrive for one cluster within a redelivery's wait


def period_of(epoch_s: float, period_s: int) -> int:
    return int(epoch_s // period_s * period_s)


def _bill(meter: UsageMeter, seconds: float, stats: ClusterStats, node_memory_gb: float) -> None:
    meter.storage_byte_seconds += stats.store_bytes * seconds
    meter.node_seconds += stats.nodes * seconds
    meter.memory_gb_seconds += stats.nodes * node_memory_gb * seconds


def meter_sample(
    meter: UsageMeter | None,
    cluster_id: str,
    tenant_org_id: str,
    stats: ClusterStats,
    taken_at: float,
    node_memory_gb: float,
    period_s: int,
    max_gap_s: float,
) -> tuple[UsageMeter, UsageRecord | None]:
    """Fold one sample in; returns the meter to keep and the record of a period that just ended."""
    totals = OperationTotals(**stats.model_dump(include=set(OperationTotals.model_fields)))
    if meter is None:
        # the first sample is the baseline: nothing to bill before it
        return UsageMeter(cluster_id=cluster_id, tenant_org_id=tenant_org_id,
                          period_start=period_of(taken_at, period_s), last_sample_at=taken_at, last_totals=totals), None
    if meter.awaiting_baseline:
        return meter.model_copy(update={"awaiting_baseline": False, "last_sample_at": taken_at,
                                        "last_totals": totals}), None
    if taken_at <= meter.last_sample_at:
        return meter, None  # a sample already folded in (redelivered after a restart)
    closed = None
    elapsed = taken_at - meter.last_sample_at
    billable = min(elapsed, max_gap_s)
    period_end = meter.period_start + period_s
    in_this_period = min(billable, max(0.0, period_end - meter.last_sample_at))
    _bill(meter, in_this_period, stats, node_memory_gb)
    meter.documents_indexed += counter_growth(meter.last_totals.indexing_ops, totals.indexing_ops)
    meter.search_requests += counter_growth(meter.last_totals.search_ops, totals.search_ops)
    meter.samples += 1
    if taken_at >= period_end:
        closed = close_period(meter, period_s)
        meter = UsageMeter(cluster_id=cluster_id, tenant_org_id=tenant_org_id,
                           period_start=period_of(taken_at, period_s), last_sample_at=taken_at,
                           last_totals=totals, samples=0, activity_ids=meter.activity_ids)
        _bill(meter, billable - in_this_period, stats, node_memory_gb)
    meter.last_sample_at = taken_at
    meter.last_totals = totals
    return meter, closed


def meter_storage_only(
    meter: UsageMeter | None, cluster_id: str, tenant_org_id: str, store_bytes: int, taken_at: float,
    period_s: int, max_gap_s: float,
) -> tuple[UsageMeter, UsageRecord | None]:
    """A hibernated cluster: no engine to sample, so a sample of its kept store and no nodes."""
    totals = meter.last_totals if meter else OperationTotals()
    stats = ClusterStats(health="hibernated", nodes=0, store_bytes=store_bytes, **totals.model_dump())
    return meter_sample(meter, cluster_id, tenant_org_id, stats, taken_at, 0.0, period_s, max_gap_s)


def add_activity(meter: UsageMeter | None, cluster_id: str, tenant_org_id: str, requests: int, bytes_in: int,
                 bytes_out: int, at: float, period_s: int, batch_id: str | None = None) -> UsageMeter:
    """Gateway counts go into the open period (the next sample closes it when it ends); a batch
    (`batch_id`, its event id) already folded in changes nothing."""
    if meter is None:
        meter = UsageMeter(cluster_id=cluster_id, tenant_org_id=tenant_org_id, period_start=period_of(at, period_s),
                           last_sample_at=at, last_totals=OperationTotals(), samples=0, awaiting_baseline=True)
    if batch_id is not None and batch_id in meter.activity_ids:
        return meter
    seen = [*meter.activity_ids, batch_id][-ACTIVITY_IDS_KEPT:] if batch_id else meter.activity_ids
    return meter.model_copy(update={"requests": meter.requests + requests, "bytes_in": meter.bytes_in + bytes_in,
                                    "bytes_out": meter.bytes_out + bytes_out, "activity_ids": seen})


def close_period(meter: UsageMeter, period_s: int) -> UsageRecord:
    def at(epoch: int) -> datetime:
        return datetime.fromtimestamp(epoch, timezone.utc)

    return UsageRecord(
        cluster_id=meter.cluster_id,
        tenant_org_id=meter.tenant_org_id,
        period_start=at(meter.period_start),
        period_end=at(meter.period_start + period_s),
        storage_gb_hours=meter.storage_byte_seconds / GB / 3600,
        node_hours=meter.node_seconds / 3600,
        memory_gb_hours=meter.memory_gb_seconds / 3600,
        documents_indexed=meter.documents_indexed,
        search_requests=meter.search_requests,
        samples=meter.samples,
        requests=meter.requests,
        bytes_in=meter.bytes_in,
        bytes_out=meter.bytes_out,
    )
