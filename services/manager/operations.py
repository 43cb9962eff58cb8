"""What the API and the NATS handlers both do to a running cluster beyond one record change:
hibernate, wake or upgrade it (record, announce, reconcile), and count the API's own engine calls
as activity."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

import structlog

from libs.common.models import ClusterRecord, ClusterStatus, utcnow
from libs.common.store import ClusterStore, RecordGone
from libs.common.failures import NATS_FAILURES
from services.manager.provisioner import Provisioner
from services.manager.transitions import NotNow, note_activity, request_hibernation, request_wake, start_upgrade

log = structlog.get_logger("manager")


async def _transition(store: ClusterStore, cluster_id: str,
                      transition: Callable[[ClusterRecord], ClusterRecord | None]) -> tuple[ClusterRecord, bool]:
    """The record after `transition` (redone on a revision conflict), and whether this call changed
    it: a second ask, or another replica's first, changes nothing and announces nothing."""
    changed = False

    def change(record: ClusterRecord) -> ClusterRecord | None:
        nonlocal changed
        result = transition(record)
        changed = result is not None
        return result

    record = await store.mutate(cluster_id, change)
    return record, changed


async def hibernate(store: ClusterStore, provisioner: Provisioner, cluster_id: str, reason: str) -> ClusterRecord:
    """Mark the cluster `hibernating`: its stop is decided now and completes even if a request
    comes meanwhile (that one waits, then wakes it). Raises NotNow or RecordGone."""
    record, marked = await _transition(store, cluster_id, lambda r: request_hibernation(r, reason))
    if marked:
        await provisioner.announce(record)
        provisioner.kick(cluster_id)
    return record


async def wake(store: ClusterStore, provisioner: Provisioner, cluster_id: str, reason: str) -> ClusterRecord | None:
    """Clear the cluster's hibernation; the provisioner starts its engine. None: nothing to wake."""
    try:
        record, woken = await _transition(store, cluster_id, lambda r: request_wake(r, utcnow(), reason))
    except (RecordGone, NotNow):
        return None
    if not woken:
        return None  # awake already, or another wake was first: one status event per wake
    if record.status == ClusterStatus.WAKING:
        await provisioner.announce(record)
    provisioner.kick(cluster_id)
    return record


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


async def upgrade(store: ClusterStore, provisioner: Provisioner, cluster_id: str, version: str,
                  request_id: str | None, wake_now: bool = False) -> ClusterRecord:
    """Move the cluster to `version` (`transitions.start_upgrade`); `wake_now`: a hibernated one is
    woken for it rather than at its next request. Raises NotNow or RecordGone."""
    def transition(record: ClusterRecord) -> ClusterRecord | None:
        moved = start_upgrade(record, version, request_id)
        if moved is not None and wake_now and moved.status == ClusterStatus.HIBERNATED:
            moved = request_wake(moved, utcnow(), f"woken for its upgrade to {version}") or moved
        return moved

    record, changed = await _transition(store, cluster_id, transition)
    if changed:
        await provisioner.announce(record)
        provisioner.kick(cluster_id)
    return record
