"""Reading a tenant's usage records back from the usage stream, and adding them up."""

from __future__ import annotations

from datetime import datetime

from nats.js.api import ConsumerConfig, DeliverPolicy
from pydantic import BaseModel

from libs.common import subjects
from libs.common.events import UsageRecord

SUMMED = ("storage_gb_hours", "node_hours", "memory_gb_hours", "documents_indexed", "search_requests")


class UsageTotals(BaseModel):
    storage_gb_hours: float = 0.0
    node_hours: float = 0.0
    memory_gb_hours: float = 0.0
    documents_indexed: int = 0
    search_requests: int = 0


class TenantUsage(BaseModel):
    tenant_org_id: str
    start: datetime
    end: datetime
    records: list[UsageRecord]
    totals: UsageTotals


def total(records: list[UsageRecord]) -> UsageTotals:
    return UsageTotals(**{name: sum(getattr(r, name) for r in records) for name in SUMMED})


async def read_usage(js, tenant_org_id: str, start: datetime, end: datetime) -> list[UsageRecord]:
    """Records of periods starting in [start, end), oldest first.

    A record is published when its period ends, so reading from `start` finds all of them.
    """
    subscription = await js.pull_subscribe(
        subjects.tenant_usage(tenant_org_id), stream=subjects.USAGE_STREAM,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=start.isoformat(),
                              inactive_threshold=30.0),
    )
    records: list[UsageRecord] = []
    try:
        pending = (await subscription.consumer_info()).num_pending
        while pending > 0:
            for message in await subscription.fetch(min(pending, 256), timeout=5):
                record = UsageRecord.model_validate_json(message.data)
                if start <= record.period_start < end:
                    records.append(record)
                pending = message.metadata.num_pending
    finally:
        await subscription.unsubscribe()
    return sorted(records, key=lambda r: (r.period_start, r.cluster_id))
