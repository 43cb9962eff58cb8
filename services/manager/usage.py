"""Reading a tenant's usage records back from the usage stream, and adding them up."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from libs.common import subjects
from libs.common.events import UsageRecord
from libs.common.streams import read_subject

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
    return UsageTotals(**{name: sum(getattr(r, name) for r in records) for name in UsageTotals.model_fields})


async def read_usage(js, tenant_org_id: str, start: datetime, end: datetime) -> list[UsageRecord]:
    """Records of periods starting in [start, end), oldest first.

    A record is published when its period ends, so reading from `start` finds all of them.
    """
    messages = await read_subject(js, subjects.USAGE_STREAM, subjects.tenant_usage(tenant_org_id), since=start)
    records = [UsageRecord.model_validate_json(m.data) for m in messages]
    return sorted((r for r in records if start <= r.period_start < end), key=lambda r: (r.period_start, r.cluster_id))
