"""The backup pass: for each serving cluster whose lease this manager holds, register its snapshot
repository, advance a restore asked of it, take the scheduled snapshot due and prune the old ones.

It runs beside the provisioner's periodic pass and never waits on an engine: a snapshot or a
restore is started, recorded, and looked at again on the next pass. Decisions are in backups.py.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable

import structlog

from libs.common.engines import ENGINE_NO_ANSWER, SearchEngine
from libs.common.failures import NATS_FAILURES
from libs.common.engines.snapshots import SnapshotExists, SnapshotInfo, SnapshotMissing, Snapshots
from libs.common.leases import Leases
from libs.common.models import SERVING, ClusterRecord, ClusterStatus, utcnow
from libs.common.store import ClusterStore, RecordGone
from services.manager import backups
from services.manager.settings import ManagerSettings
from services.manager.object_store import ObjectStore, ObjectStoreError
from services.manager.repository_links import link_repository, remove_links

BUCKET_RETRY_S = 30.0


class Snapshotter:
    def __init__(self, settings: ManagerSettings, store: ClusterStore, leases: Leases,
                 engine_for: Callable[[ClusterRecord], SearchEngine], objects: ObjectStore | None = None):
        self._settings = settings
        self._objects = objects  # kubernetes with a bucket: the store the engines' repositories are in
        self._bucket_ready = objects is None
        self._bucket_problem: str | None = None
        self._bucket_next_try = 0.0
        self._store = store
        self._leases = leases
        self._engine_for = engine_for
        self._registered: set[tuple[str, ...]] = set()  # repositories this process put, per engine
        self._busy: set[str] = set()
        self._taken: dict[str, tuple[str, int]] = {}  # cluster -> a period whose work is done: no listing until the next
        self._log = structlog.get_logger("snapshotter")

    def snapshots(self, record: ClusterRecord) -> Snapshots:
        return self._engine_for(record).admin().snapshots()

    async def ensure_repository(self, record: ClusterRecord, source: str | None = None) -> str:
        """Register the cluster's repository (or, read-only, a clone source's) once per engine."""
        name = backups.source_repository(source) if source else backups.REPOSITORY
        key = (record.id, record.endpoint or "", name, str(record.formed_at))  # a new engine has none
        if key not in self._registered:
            body = (backups.source_repository_body(self._settings, record.id, source) if source
                    else backups.repository_body(self._settings, record.id))
            await self.snapshots(record).register(name, body)
            self._registered.add(key)
            self._log.info("snapshot repository registered", cluster=record.id, repository=name,
                           type=body["type"])
        return name

    async def run_periodic(self) -> None:
        while True:
            try:
                await self.ensure_bucket()
                await self.pass_all()
            except Exception:  # a bug or an unforeseen failure: said with its traceback, never swallowed
                self._log.exception("backup pass failed")
            await asyncio.sleep(self._settings.reconcile_interval_s)

    async def ensure_bucket(self) -> None:
        """Make the bucket once (at start-up, on the first pass); a store that cannot is logged with
        its reason, once per reason, and tried again every BUCKET_RETRY_S meanwhile."""
        now = asyncio.get_running_loop().time()
        if self._bucket_ready or now < self._bucket_next_try:
            return
        # a store that times out would hold up every pass: at most one try per BUCKET_RETRY_S
        self._bucket_next_try = now + BUCKET_RETRY_S
        try:
            created = await self._objects.ensure_bucket()
        except ObjectStoreError as exc:
            if str(exc) != self._bucket_problem:
                self._log.error("snapshot bucket not ready: snapshots fail until it is; trying again",
                                bucket=self._objects.bucket, reason=str(exc))
            self._bucket_problem = str(exc)
            return
        self._bucket_ready, self._bucket_problem = True, None
        self._log.info("snapshot bucket ready", bucket=self._objects.bucket, created=created)

    async def pass_all(self) -> None:
        for record in await self._store.read_all():  # the mirror: each cluster is read afresh when tended
            self.kick(record)

    def kick(self, record: ClusterRecord) -> None:
        """Tend one cluster in the background; a cluster already being tended is left to that pass."""
        if record.id not in self._busy:
            self._busy.add(record.id)
            asyncio.create_task(self._tend_guarded(record.id))

    async def _tend_guarded(self, cluster_id: str) -> None:
        try:
            found = await self._store.get(cluster_id)
            if found and found[0].status == ClusterStatus.DELETED:
                if backups.purge_due(found[0], utcnow(), self._settings.deleted_retention_s):
                    await self.purge(found[0])
            elif found and self._serving(found[0]) and await self._leases.hold(cluster_id):
                await self.tend(found[0])
        except RecordGone:
            pass
        except (*ENGINE_NO_ANSWER, *NATS_FAILURES, ObjectStoreError) as exc:
            self._log.warning("backup step failed; retrying on the next pass", cluster=cluster_id,
                              error=f"{type(exc).__name__}: {exc}")
        except Exception:  # a bug: said with its traceback (this is a task no one awaits)
            self._log.exception("backup step failed; retrying on the next pass", cluster=cluster_id)
        finally:
            self._busy.discard(cluster_id)

    @staticmethod
    def _serving(record: ClusterRecord) -> bool:
        return (record.status in SERVING and bool(record.endpoint) and not record.hibernate_requested
                and not record.delete_requested)

    async def tend(self, record: ClusterRecord) -> None:
        if not backups.backups_on(self._settings, record.spec.engine):
            await self._no_schedule(record)
            return
        await self.ensure_repository(record)
        if record.restore and record.restore.state in ("requested", "running"):
            await self._advance_restore(record)
            return  # a snapshot taken mid-restore would hold half-restored indices
        await self._schedule(record)

    async def _no_schedule(self, record: ClusterRecord) -> None:
        """A cluster without backups has no schedule: its policy says so (an older record, made
        before its engine's backups were known to be off, still has one), and no alert expects one."""
        if record.snapshot_policy.every_s <= 0:
            return

        def change(current: ClusterRecord) -> ClusterRecord:
            current.snapshot_policy = current.snapshot_policy.model_copy(update={"every_s": 0})
            return current

        await self._store.mutate(record.id, change)
        self._log.info("snapshot schedule off: backups are off for this cluster", cluster=record.id,
                       reason=backups.backups_off(self._settings, record.spec.engine))

    # -- delete and undelete ----------------------------------------------------------------
    async def final_snapshot(self, record: ClusterRecord) -> tuple[bool, str | None]:
        """One step of the snapshot a delete takes first: (done, its name if it succeeded). Its
        name is recorded before it starts, so a manager killed meanwhile finds it again."""
        snapshots = self.snapshots(record)
        await self.ensure_repository(record)
        name = record.final_snapshot
        if name is not None:
            try:
                info = await snapshots.get(backups.REPOSITORY, name)
            except SnapshotMissing:
                info = None  # recorded, then the manager died before it started
            if info is not None and info.status != "in_progress":
                self._log.info("final snapshot finished", cluster=record.id, snapshot=name, status=info.status)
                return True, name if info.status in ("success", "partial") else None
            if info is not None:
                return False, name
        else:
            name = backups.final_name(utcnow())

            def note(current: ClusterRecord) -> ClusterRecord:
                current.final_snapshot = name
                return current

            await self._store.mutate(record.id, note)
        try:
            await snapshots.create(backups.REPOSITORY, name)
        except SnapshotExists:
            pass
        return False, name

    async def purge(self, record: ClusterRecord) -> None:
        """The retention of a deleted cluster is over: its repository data and its record go."""
        if self._settings.driver == "local":
            shutil.rmtree(self._settings.snapshots_dir / record.id, ignore_errors=True)
            remove_links(self._settings.restores_dir, record.id)
        elif self._objects is not None:
            # a store that fails raises: the record stays, and the next pass tries again
            gone = await self._objects.delete_prefix(f"{backups.base_path(record.id)}/")
            self._log.info("repository data removed", cluster=record.id, bucket=self._objects.bucket, objects=gone)
        await self._store.remove(record)
        self._log.info("deleted cluster purged", cluster=record.id, snapshot=record.final_snapshot)

    # -- restore ----------------------------------------------------------------------------
    async def _advance_restore(self, record: ClusterRecord) -> None:
        restore = record.restore
        now = utcnow()
        if backups.restore_overdue(record, now, self._settings.snapshot_timeout_s):
            await self._finish_restore(record, "failed", f"not done within {self._settings.snapshot_timeout_s:.0f} s")
            return
        snapshots = self.snapshots(record)
        if restore.state == "requested":
            source = restore.source_cluster_id if restore.source_cluster_id != record.id else None
            if source and self._settings.driver == "local":
                await self._link_source(record.id, source)
            repository = await self.ensure_repository(record, source)
            try:
                indices = await snapshots.restore(repository, restore.snapshot, restore.indices)
            except SnapshotMissing as exc:
                await self._finish_restore(record, "failed", str(exc))
                return
            await self._restore_state(record.id, "running", f"restoring {len(indices)} index(es) from "
                                      f"{restore.snapshot}", indices=indices)
            self._log.info("restore started", cluster=record.id, snapshot=restore.snapshot, indices=indices)
        elif await snapshots.restored(restore.indices):
            await self._finish_restore(record, "done", f"restored {len(restore.indices)} index(es) from "
                                       f"{restore.snapshot}")
            self._log.info("restore done", cluster=record.id, snapshot=restore.snapshot)

    async def _finish_restore(self, record: ClusterRecord, state: str, reason: str) -> None:
        await self._restore_state(record.id, state, reason)
        source = record.restore.source_cluster_id
        if self._settings.driver == "local" and source and source != record.id:
            # the copy held every snapshot of the source: the target keeps none once it has its one
            location = backups.incoming_location(self._settings, record.id, source)
            await asyncio.to_thread(shutil.rmtree, location, True)

    async def _link_source(self, target: str, source: str) -> None:
        """Local: the source's repository hard-linked afresh into the target's own `path.repo`,
        the only place its nodes may read it from."""
        location = backups.incoming_location(self._settings, target, source)
        made = await asyncio.to_thread(link_repository, self._settings.snapshots_dir / source, location)
        self._log.info("source repository linked", cluster=target, source=source, location=str(location),
                       linked=made.linked, copied=made.copied)

    async def _restore_state(self, cluster_id: str, state: str, reason: str, indices: list[str] | None = None) -> None:
        def change(record: ClusterRecord) -> ClusterRecord | None:
            if record.restore is None or record.restore.state in ("done", "failed"):
                return None  # a newer request replaced it, or another pass finished it
            record.restore.state = state
            record.restore.reason = reason
            if indices is not None:
                record.restore.indices = indices
            if state in ("done", "failed"):
                record.restore.finished_at = utcnow()
            return record

        await self._store.mutate(cluster_id, change)

    # -- schedule ---------------------------------------------------------------------------
    async def _schedule(self, record: ClusterRecord) -> None:
        policy = record.snapshot_policy
        if policy.every_s <= 0:
            return
        done = (backups.auto_name(backups.period_start(utcnow(), policy.every_s)), policy.keep)
        if self._taken.get(record.id) == done:
            return  # this period is done; the engine need not be asked again until the next
        snapshots = self.snapshots(record)
        existing = await snapshots.list(backups.REPOSITORY, sizes=False)
        await self._note(record, existing)
        plan = backups.plan_scheduled(policy, record.formed_at, utcnow(), [(s.name, s.status) for s in existing])
        if plan.create:
            try:
                await snapshots.create(backups.REPOSITORY, plan.create)
                self._log.info("scheduled snapshot started", cluster=record.id, snapshot=plan.create,
                               reason=plan.reason)
            except SnapshotExists:
                pass  # another pass (or replica) took it a moment ago: the period has its one
        for name in plan.prune:
            await snapshots.delete(backups.REPOSITORY, name)
            self._log.info("scheduled snapshot pruned", cluster=record.id, snapshot=name, keep=policy.keep)
        if plan.create is None and not any(s.status == "in_progress" for s in existing):
            self._taken[record.id] = done  # all finished and noted: nothing more to do this period

    async def _note(self, record: ClusterRecord, existing: list[SnapshotInfo]) -> None:
        """Record the newest successful snapshot's time and the newest one's failure, if it failed."""
        done = [s for s in existing if s.status != "in_progress" and s.finished_at]
        good = [s.finished_at for s in done if s.status == "success"]
        last = max(good) if good else None
        newest = max(done, key=lambda s: s.finished_at) if done else None
        failure = f"{newest.name}: {newest.reason or newest.status}" if newest and newest.status in (
            "failed", "partial") else None
        if (last, failure) == (record.last_snapshot_at, record.snapshot_failure):
            return

        def change(current: ClusterRecord) -> ClusterRecord:
            current.last_snapshot_at, current.snapshot_failure = last, failure
            return current

        await self._store.mutate(record.id, change)
