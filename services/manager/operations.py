"""What the API and the NATS handlers both do to a running cluster beyond one record change:
hibernate or wake it (record, announce, reconcile), and count the API's own engine calls as activity."""

from __future__ import annotations

import asyncio
from datetime import datetime

import structlog

from libs.common.models import ClusterRecord, ClusterStatus, utcnow
from libs.common.store import ClusterStore, RecordGone
from libs.common.failures import NATS_FAILURES
from services.manager.provisioner import Provisioner
from services.manager.transitions import NotNow, note_activity, request_hibernation, request_wake

log = structlog.get_logger("manager")


async def hibernate(store: ClusterStore, provisioner: Provisioner, cluster_id: str, reason: str) -> ClusterRecord:
    """Mark the cluster `hibernating`: its stop is decided now and completes even if a request
    comes meanwhile (that one waits, then wakes it). Raises NotNow or RecordGone."""
    marked: list[ClusterRecord] = []

    def change(record: ClusterRecord) -> ClusterRecord | None:
        marked[:] = [changed] if (changed := request_hibernation(record, reason)) else []
        return changed

    record = await store.mutate(cluster_id, change)
    if marked:  # asked twice: one status event
        await provisioner.announce(record)
        provisioner.kick(cluster_id)
    return record


async def wake(store: ClusterStore, provisioner: Provisioner, cluster_id: str, reason: str) -> ClusterRecord | None:
    """Clear the cluster's hibernation; the provisioner starts its engine. None: nothing to wake."""
    woken: list[ClusterRecord] = []

    def change(record: ClusterRecord) -> ClusterRecord | None:
        woken[:] = [changed] if (changed := request_wake(record, utcnow(), reason)) else []
        return changed

    try:
        await store.mutate(cluster_id, change)
    except (RecordGone, NotNow):
        return None
    if not woken:
        return None  # awake already, or another wake was first: one status event per wake
    if woken[0].status == ClusterStatus.WAKING:
        await provisioner.announce(woken[0])
    provisioner.kick(cluster_id)
    return woken[0]


class ActivityBatch:
    """The API's own engine calls keep a cluster awake, in batches as the gateway's do."""

    def __init__(self, store: ClusterStore, flush_s: float):
        self._store = store
        self._flush_s = flush_s
        self._used: dict[str, datetime] = {}  # vector-route calls since the last flush

    def used(self, cluster_id: str) -> None:
        self._used[cluster_id] = utcnow()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._flush_s)
            await self.flush()

    async def flush(self) -> None:
        used, self._used = self._used, {}
        for cluster_id, at in used.items():
            try:
                await self._store.mutate(cluster_id, lambda r, at=at: note_activity(r, at))
            except RecordGone:
                pass  # deleted meanwhile: nothing to keep awake
            except NATS_FAILURES as exc:  # NATS away: the next call counts again
                log.warning("activity not recorded", cluster=cluster_id, error=type(exc).__name__)
