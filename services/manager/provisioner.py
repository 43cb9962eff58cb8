"""The provisioner: reconciles each cluster's running engine with its record in KV.

Triggered by desired-state events (durable consumer) and by a periodic pass over every
record, so a lost event, a crashed engine or a restarted manager heals by itself. Per
cluster one reconcile runs at a time, in the one manager replica that holds the cluster's
lease; it reads, asks `plan_reconcile`, and applies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from libs.common import subjects
from libs.common.engines import ENGINE_NO_ANSWER, EngineError
from libs.common.failures import NATS_FAILURES
from libs.common.events import ClusterStatusChanged, Event
from libs.common.leases import Leases
from libs.common.models import ClusterRecord, ClusterStatus, queued_reason, utcnow
from libs.common.store import RecordGone
from services.manager import backups
from services.manager.drivers import DataGone, Driver, EngineUnavailable, ResizeAbandoned, ResizeInProgress
from services.manager.settings import ManagerSettings
from services.manager.store_index import ManagerStore
from services.manager.transitions import idle_s, request_hibernation
from services.manager.planning import (
    HEALTHY,
    EngineObservation,
    EngineSize,
    ReconcilePlan,
    Step,
    plan_given_up_resize,
    plan_reconcile,
)

Publish = Callable[[Event, str], Awaitable[None]]
QUEUED_POLL_S = 0.5  # a start waiting its turn looks again this often
# one step of a cluster's final snapshot before its delete: (done, the snapshot's name if it succeeded)
FinalSnapshot = Callable[[ClusterRecord], Awaitable[tuple[bool, str | None]]]


def settle_pause(ready_poll_s: float, queued: bool, settling: int) -> float:
    """How long a cluster whose engine comes up waits before it looks again. Each look reads
    every process and asks the engine, so the clusters settling at once share one look every
    `ready_poll_s` (20 wakes at once spent a core on looking); a queued start looks less often."""
    slowest = max(QUEUED_POLL_S, ready_poll_s)
    return slowest if queued else min(slowest, ready_poll_s * max(1, settling))


class Provisioner:
    def __init__(self, settings: ManagerSettings, store: ManagerStore, driver: Driver, publish: Publish, leases: Leases,
                 final_snapshot: FinalSnapshot | None = None):
        self._settings = settings
        self._final_snapshot = final_snapshot  # None: a delete removes everything at once
        self._store = store
        self._driver = driver
        self._publish = publish
        self._leases = leases
        self._running: dict[str, asyncio.Task] = {}
        self._again: set[str] = set()
        self._queued: set[str] = set()  # clusters whose start waits its turn: looked at less often
        self._settling: set[str] = set()  # clusters whose engine is coming up: looked at again soon
        self._unknown: set[str] = set()  # engines no record ever knew, said once each
        self._log = structlog.get_logger("provisioner")

    def desired_size(self, record: ClusterRecord) -> EngineSize:
        return self._driver.size_for(record.spec)

    # -- scheduling: one reconcile per cluster at a time, never blocking the caller ------
    def kick(self, cluster_id: str) -> None:
        task = self._running.get(cluster_id)
        if task and not task.done():
            self._again.add(cluster_id)  # changed while we worked: look once more after
            return
        self._running[cluster_id] = asyncio.create_task(self._reconcile_loop(cluster_id))

    async def _reconcile_loop(self, cluster_id: str) -> None:
        try:
            while True:
                self._again.discard(cluster_id)
                try:
                    if not await self._leases.hold(cluster_id):
                        return  # another manager replica provisions this cluster
                    async with self._leases.kept(cluster_id, self._settings.lease_ttl_s / 3):
                        settle = await self.reconcile(cluster_id)
                except Exception:  # a bug or an unforeseen failure: said with its traceback, never swallowed
                    self._log.exception("reconcile failed; retrying on the next pass", cluster=cluster_id)
                    return
                if settle:  # an engine is coming up: look again soon rather than at the next pass
                    self._settling.add(cluster_id)
                    settling = len(self._settling - self._queued)
                    await asyncio.sleep(settle_pause(self._settings.ready_poll_interval_s,
                                                     cluster_id in self._queued, settling))
                    continue
                self._settling.discard(cluster_id)
                if cluster_id not in self._again:
                    return
        finally:  # however the loop ends: no longer coming up here
            self._settling.discard(cluster_id)

    async def run_periodic(self) -> None:
        while True:
            try:
                await self.reconcile_all()
            except Exception:  # the same: the loop must outlive one bad pass
                self._log.exception("periodic reconcile failed")
            await asyncio.sleep(self._settings.reconcile_interval_s)

    async def reconcile_all(self) -> None:
        records = await self._store.list()
        for record in records:
            self.kick(record.id)
        self._driver.keep_warm()
        for orphan in await self._driver.orphans({r.id for r in records}):
            # removal destroys a tenant's data: only on a direct read saying there is no record,
            # never on a listing alone (a short listing once deleted a live cluster this way)
            if await self._store.get(orphan) is not None or not await self._leases.hold(orphan):
                continue
            # and only what this store deleted itself: a cluster it never knew may be a tenant's
            # whose record went with NATS's data, waiting for a control-plane restore
            if not await self._store.forgotten(orphan):
                if orphan not in self._unknown:
                    self._unknown.add(orphan)
                    self._log.warning("an engine or data no record ever knew: kept until a control-plane "
                                      "restore, or removed by hand", cluster=orphan)
                continue
            self._log.warning("removing an engine no record knows", cluster=orphan)
            await self._driver.remove(orphan)

    async def stop(self) -> None:
        for task in self._running.values():
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    # -- one step ------------------------------------------------------------------------
    async def reconcile(self, cluster_id: str) -> bool:
        """Take one step toward the desired state; True while an engine is still settling."""
        found = await self._store.get(cluster_id)
        if found is None:
            return False
        record, _ = found
        log = self._log.bind(cluster=cluster_id, tenant=record.tenant_org_id, request_id=record.request_id)
        desired = self.desired_size(record)
        observed = await self._driver.observe(cluster_id)
        plan = plan_reconcile(record, desired, observed, utcnow(), self._settings.provision_timeout_s)
        waited = plan.step == Step.START and cluster_id in self._queued  # said when it was queued
        if plan.step not in (Step.NOTHING, Step.WAIT) and not waited:
            log.info("reconcile", step=plan.step, reason=plan.reason)
        try:
            return await self._apply(record, plan, desired, observed)
        except ResizeInProgress as exc:
            moved = {"endpoint": exc.endpoint} if exc.endpoint else {}
            await self._record(cluster_id, plan.status, str(exc), **moved)
            return True  # the next step follows soon
        except ResizeAbandoned as exc:
            await self._give_up_resize(record, observed, str(exc))
            return False
        except EngineUnavailable as exc:
            await self._record(cluster_id, ClusterStatus.FAILED, str(exc), observed_generation=record.generation)
            return False
        except RecordGone:
            return False

    async def _apply(
        self, record: ClusterRecord, plan: ReconcilePlan, desired: EngineSize, observed: EngineObservation
    ) -> bool:
        match plan.step:
            case Step.REMOVE:
                await self._record(record.id, ClusterStatus.DELETING, plan.reason)
                done, snapshot = await self._before_remove(record, desired, observed)
                if not done:
                    return True
                await self._driver.remove(record.id)
                if snapshot is None:
                    await self._store.remove(record)
                    await self._emit(record, ClusterStatus.DELETED, "engine stopped and data removed")
                    return False
                await self._store.release_name(record)  # a new cluster may take the name meanwhile
                await self._record(record.id, ClusterStatus.DELETED, f"engine stopped and data removed; final "
                                   f"snapshot {snapshot} kept for undelete", endpoint=None, nodes=0, health=None)
                return False
            case Step.START:
                queued = self._driver.start_queued(record, desired)
                if queued:  # written once: the same reason again writes nothing
                    self._queued.add(record.id)
                    await self._record(record.id, plan.status, queued_reason(queued))
                    return True
                self._queued.discard(record.id)
                await self._record(record.id, plan.status, plan.reason)
                endpoint = await self._driver.start(record, desired)
                await self._record(record.id, plan.status, "engine starting", endpoint=endpoint)
                return True
            case Step.RESIZE:
                # each step's own outcome is the reason (a ResizeInProgress says what is under way)
                endpoint = await self._driver.resize(record, observed.size, desired)
                await self._record(record.id, plan.status, "nodes in place; waiting for health", endpoint=endpoint)
                return True
            case Step.HIBERNATE:
                return await self._hibernate(record, plan)
            case Step.MARK_HIBERNATED:
                await self._record(record.id, ClusterStatus.HIBERNATED, plan.reason, health=None, nodes=0)
                return False
            case Step.MARK_READY:
                await self._record(
                    record.id, ClusterStatus.READY, plan.reason, endpoint=observed.endpoint,
                    credentials=observed.credentials, health=observed.health, nodes=observed.nodes,
                    observed_generation=record.generation, formed_at=record.formed_at or utcnow(),
                )
                return False
            case Step.FAIL:
                await self._record(record.id, ClusterStatus.FAILED, plan.reason, observed_generation=record.generation)
                return False
            case Step.WAIT:
                if observed.note:  # what holds the engine back, for a person to read
                    await self._record(record.id, None, plan.reason)
                return True
            case _:
                if observed.running:
                    # a ready cluster's reason says so again once a healing step is over
                    reason = plan.reason if record.status == ClusterStatus.READY else None
                    await self._record(record.id, None, reason, health=observed.health, nodes=observed.nodes)
                return False

    async def _before_remove(self, record: ClusterRecord, desired: EngineSize,
                             observed: EngineObservation) -> tuple[bool, str | None]:
        """A formed cluster's final snapshot, one step per call: (done, its name if it is kept).
        A hibernated engine is started for it; one that cannot snapshot in time is removed without,
        as is one whose backups are off (an OpenSearch image without repository-s3): no snapshot."""
        if (self._final_snapshot is None or record.formed_at is None or self._settings.deleted_retention_s <= 0
                or not backups.backups_on(self._settings, record.spec.engine)):
            return True, None
        asked = (utcnow() - (record.deleted_at or record.updated_at)).total_seconds()
        if asked > self._settings.snapshot_timeout_s:
            self._log.warning("no final snapshot in time; deleting without", cluster=record.id)
            return True, None
        if not observed.running:
            try:
                endpoint = await self._driver.start(record, desired)
            except DataGone:
                return True, None  # nothing left to keep
            except EngineUnavailable as exc:
                # it cannot start yet (no free port slot, say): its data is still there, so it is
                # tried again until the timeout above, not deleted without its snapshot at once
                self._log.warning("final snapshot: the engine cannot start yet", cluster=record.id, error=str(exc))
                await self._record(record.id, None, f"waiting to start the engine for the final snapshot: {exc}")
                return False, None
            # a hibernated cluster starts on whichever port slot is free: the snapshot must go to
            # this engine, not to the one now on the slot it slept from (another cluster's)
            await self._record(record.id, None, "starting the engine for the final snapshot", endpoint=endpoint)
            return False, None
        if observed.health not in HEALTHY:
            return False, None
        try:
            return await self._final_snapshot(record)
        except EngineError as exc:
            if exc.status is None:  # not answering: temporary, until the timeout above
                return False, None
            # it answered and refused (a repository outside an old engine's path.repo): no retry helps
            self._log.warning("final snapshot refused; deleting without", cluster=record.id, error=str(exc))
            return True, None
        except (*ENGINE_NO_ANSWER, *NATS_FAILURES) as exc:  # temporary: a later step, or the timeout ends it
            self._log.warning("final snapshot step failed", cluster=record.id, error=f"{type(exc).__name__}: {exc}")
            return False, None

    async def _hibernate(self, record: ClusterRecord, plan: ReconcilePlan) -> bool:
        """Idle (or asked): mark it, let the gateways' in-flight requests finish, then flush and stop.
        Once marked `hibernating` the stop completes; a wake meanwhile starts it again after."""
        if record.status != ClusterStatus.HIBERNATING:
            def still_idle(current: ClusterRecord) -> ClusterRecord | None:
                if current.hibernate_requested and current.status == ClusterStatus.READY:
                    current.status = ClusterStatus.HIBERNATING  # marked by a manager before `hibernating`
                    return current
                idle = idle_s(current, utcnow())  # a request may have come in since we looked
                if (current.status != ClusterStatus.READY or not current.hibernate_after_s or idle is None
                        or idle < current.hibernate_after_s):
                    return None
                return request_hibernation(current, plan.reason)

            record = await self._store.mutate(record.id, still_idle)
            if record.status != ClusterStatus.HIBERNATING:
                return False
            await self.announce(record)
        # gateways see the mark within milliseconds and hold new requests (each wakes it again)
        await asyncio.sleep(self._settings.hibernate_grace_s)
        stored = await self._driver.hibernate(record)
        if stored is not None:  # unknown keeps what an earlier pass read
            await self._record(record.id, None, None, stored_bytes=stored.store_bytes, stored_docs=stored.docs)
        return True  # look again: the stopped engine is marked hibernated, or woken if asked meanwhile

    async def _give_up_resize(self, record: ClusterRecord, observed: EngineObservation, why: str) -> None:
        """The engine kept its size: its record goes back to that size, ready, with the reason;
        a person asks again once the cause is fixed."""
        given_up: list[ClusterRecord] = []

        def change(current: ClusterRecord) -> ClusterRecord | None:
            if current.generation != record.generation or observed.size is None or current.delete_requested:
                return None  # changed meanwhile: that change is the one to make now
            reverted, reason = plan_given_up_resize(current, observed.size, why)
            reverted.generation += 1
            reverted.observed_generation = reverted.generation
            reverted.status, reverted.status_reason = ClusterStatus.READY, reason
            reverted.health, reverted.nodes = observed.health, observed.nodes
            given_up.append(reverted)
            return reverted

        await self._store.mutate(record.id, change)
        if given_up:
            self._log.warning("change of nodes given up", cluster=record.id, reason=given_up[0].status_reason)
            await self._emit(given_up[0], ClusterStatus.READY, given_up[0].status_reason)

    async def _record(self, cluster_id: str, status: ClusterStatus | None, reason: str | None, **fields) -> None:
        """Write the observed fields, status last; emit a status event when the status changes,
        or its reason while scaling (each step of a resize shows in the cluster's events)."""
        changed: list[ClusterRecord] = []

        def change(record: ClusterRecord) -> ClusterRecord | None:
            updates = {k: v for k, v in fields.items() if getattr(record, k) != v}
            new_status = status if status is not None and status != record.status else None
            new_reason = reason if reason is not None and reason != record.status_reason else None
            if not updates and new_status is None and new_reason is None:
                return None
            for key, value in updates.items():
                setattr(record, key, value)
            if new_reason is not None:
                record.status_reason = new_reason
            if new_status is not None:
                record.status = new_status
            if new_status is not None or (new_reason is not None and record.status == ClusterStatus.SCALING):
                changed.append(record)
            return record

        await self._store.mutate(cluster_id, change)
        if changed:
            record = changed[-1]
            await self._emit(record, record.status, record.status_reason)

    async def announce(self, record: ClusterRecord) -> None:
        """Tell the lifecycle subjects of a status the API or a handler set (a wake)."""
        await self._emit(record, record.status, record.status_reason)

    async def _emit(self, record: ClusterRecord, status: ClusterStatus, reason: str) -> None:
        event = ClusterStatusChanged(
            cluster_id=record.id, tenant_org_id=record.tenant_org_id, status=status, reason=reason,
            endpoint=record.endpoint, nodes=record.nodes, request_id=record.request_id,
        )
        await self._publish(event, subjects.cluster_status(record.tenant_org_id, record.id))
