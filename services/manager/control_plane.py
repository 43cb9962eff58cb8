"""Backups of the platform's own state, applied: the KV buckets and long-lived streams of
`control_backup.BUCKETS` and `STREAMS` read from NATS and written to the snapshot store (a folder
under the state dir locally, the S3 bucket on Kubernetes), on a schedule held by one manager
replica and on the operator's demand; and the restore of one into an empty NATS, after which the
provisioner adopts the engines that still run.

The decisions (what is due, what goes, what a restore reports) are in `control_backup.py`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Protocol

import structlog
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from libs.common import subjects
from libs.common.failures import NATS_FAILURES
from libs.common.kv import all_keys, open_bucket, read_value
from libs.common.leases import Leases
from libs.common.models import ClusterRecord, ClusterStatus, utcnow
from libs.common.streams import AUDIT, USAGE, bind_stream, read_subject
from services.manager import control_backup as plan
from services.manager.control_backup import ControlBackupManifest, ControlRestoreReport
from services.manager.drivers import Driver
from services.manager.object_store import ObjectStore, ObjectStoreError
from services.manager.settings import ManagerSettings

FIRST_CHECK_S = 5.0  # the first scheduled look, soon after start: a new platform gets its first backup early
CHECK_EVERY_S = 60.0  # then this often at most
DEFINITIONS = {USAGE.name: USAGE, AUDIT.name: AUDIT}  # a stream missing at a restore is made from these
RESTORE_MARK = "restore"  # in KV_PLATFORM: which restore is under way, or done


class BackupsUnavailable(Exception):
    """This platform has nowhere to keep control-plane backups; the message says what to set."""


class BackupNotFound(Exception):
    pass


class BackupDamaged(Exception):
    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


class ControlPlaneNotEmpty(Exception):
    def __init__(self, buckets: list[str]):
        super().__init__(", ".join(buckets))
        self.buckets = buckets


class BackupTarget(Protocol):
    async def put(self, key: str, data: bytes) -> None: ...
    async def get(self, key: str) -> bytes | None: ...
    async def folders(self, prefix: str) -> list[str]: ...
    async def delete_prefix(self, prefix: str) -> int: ...


class FolderTarget:
    """Local: the files under a directory of the state dir (keys are relative paths)."""

    def __init__(self, root: Path):
        self.root = root

    async def put(self, key: str, data: bytes) -> None:
        def work() -> None:
            path = self.root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".partial")
            with open(partial, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            partial.replace(path)  # whole or absent: a crash never leaves half a file under its name

        await asyncio.to_thread(work)

    async def get(self, key: str) -> bytes | None:
        path = self.root / key
        return await asyncio.to_thread(path.read_bytes) if path.is_file() else None

    async def folders(self, prefix: str) -> list[str]:
        base = self.root / prefix
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []

    async def delete_prefix(self, prefix: str) -> int:
        """Remove the folder; how many files went (as the bucket's answers how many objects)."""
        def work() -> int:
            files = sum(1 for p in (self.root / prefix).rglob("*") if p.is_file())
            shutil.rmtree(self.root / prefix, ignore_errors=True)
            return files

        return await asyncio.to_thread(work)


def target_for(settings: ManagerSettings, objects: ObjectStore | None) -> BackupTarget | None:
    if settings.driver == "local":
        return FolderTarget(settings.state_dir.resolve() / "control-plane-backups")
    return objects  # kubernetes: the snapshot bucket, if there is one


class ControlPlaneBackups:
    def __init__(self, settings: ManagerSettings, broker, target: BackupTarget | None, leases: Leases,
                 driver: Driver):
        self._settings = settings
        self._broker = broker
        self._target = target
        self._leases = leases
        self._driver = driver
        self._log = structlog.get_logger("control_plane")
        self._lock = asyncio.Lock()  # one backup or restore at a time in this replica

    def _where(self) -> BackupTarget:
        if self._target is None:
            raise BackupsUnavailable("this platform has no snapshot store for control-plane backups: set "
                                     "ESS_SNAPSHOT_BUCKET (and its endpoint and keys) on the manager")
        return self._target

    async def _bucket(self, name: str) -> KeyValue:
        js = self._broker.connection.jetstream()
        try:
            return await js.key_value(name)
        except NotFoundError:  # a bucket its owner has not made yet
            return await open_bucket(self._broker, name, self._settings.nats_replicas)

    # -- backup --------------------------------------------------------------------------
    async def take(self, reason: str) -> ControlBackupManifest:
        target = self._where()
        async with self._lock:
            now = utcnow()
            backup_id = plan.new_backup_id(now)
            base = plan.folder(backup_id)
            files, buckets, streams = [], {}, {}
            for name in plan.BUCKETS:
                kv = await self._bucket(name)
                entries = [(key, value) for key in await all_keys(kv) if (value := await read_value(kv, key))]
                data = plan.encode_entries(entries)
                await target.put(f"{base}/{plan.kv_file(name)}", data)
                files.append(plan.describe(plan.kv_file(name), data, len(entries)))
                buckets[name] = len(entries)
            js = self._broker.connection.jetstream()
            for stream, subject in plan.STREAMS.items():
                messages = [(m.subject, m.data, dict(m.headers or {})) for m in await read_subject(js, stream, subject)]
                data = plan.encode_messages(messages)
                await target.put(f"{base}/{plan.stream_file(stream)}", data)
                files.append(plan.describe(plan.stream_file(stream), data, len(messages)))
                streams[stream] = len(messages)
            manifest = ControlBackupManifest(id=backup_id, taken_at=now, reason=reason, buckets=buckets,
                                             streams=streams, files=files)
            # the manifest last: a backup that has one is whole
            await target.put(f"{base}/{plan.MANIFEST}", manifest.model_dump_json(indent=1).encode())
            self._log.info("control-plane backup taken", backup=backup_id, reason=reason, buckets=buckets,
                           streams=streams)
            for old in plan.to_prune(await self.list(), self._settings.control_backup_keep):
                await target.delete_prefix(f"{plan.folder(old)}/")
                self._log.info("control-plane backup pruned", backup=old)
            return manifest

    async def list(self) -> list[ControlBackupManifest]:
        """Every whole backup, newest first (a folder without a manifest never finished)."""
        target = self._where()
        found = []
        for name in await target.folders(f"{plan.PREFIX}/"):
            if plan.is_backup_id(name) and (manifest := await self.manifest(name)):
                found.append(manifest)
        return sorted(found, key=lambda m: m.taken_at, reverse=True)

    async def manifest(self, backup_id: str) -> ControlBackupManifest | None:
        data = await self._where().get(f"{plan.folder(backup_id)}/{plan.MANIFEST}")
        return ControlBackupManifest.model_validate_json(data) if data else None

    async def run_periodic(self) -> None:
        every_s = self._settings.control_backup_every_s
        if every_s <= 0 or self._target is None:
            self._log.info("no scheduled control-plane backups", every_s=every_s, store=self._target is not None)
            return
        await asyncio.sleep(FIRST_CHECK_S)
        while True:
            try:
                if await self._leases.hold(plan.SCHEDULE_LEASE):  # one replica schedules
                    newest = await self.list()
                    decision = plan.backup_due(newest[0].taken_at if newest else None, utcnow(), every_s)
                    if decision.due:
                        await self.take(f"scheduled: {decision.reason}")
            except (*NATS_FAILURES, ObjectStoreError, OSError):  # the next look tries again
                self._log.exception("scheduled control-plane backup failed; trying again at the next look")
            await asyncio.sleep(min(CHECK_EVERY_S, every_s))

    # -- restore -------------------------------------------------------------------------
    async def restore(self, backup_id: str) -> ControlRestoreReport:
        target = self._where()
        async with self._lock:
            manifest = await self.manifest(backup_id)
            if manifest is None:
                raise BackupNotFound(backup_id)
            base = plan.folder(backup_id)
            read = {f.path: await target.get(f"{base}/{f.path}") for f in manifest.files}
            if problems := plan.damaged_files(manifest, read):
                raise BackupDamaged(problems)  # checked whole before anything is written
            marks = await self._bucket(subjects.KV_PLATFORM)
            under_way = await read_value(marks, RESTORE_MARK)
            occupied = [name for name in plan.MUST_BE_EMPTY if await _holds_any(await self._bucket(name))]
            # only an unfinished restore of this same backup may go on over what it wrote itself
            if occupied and plan.restore_mark(backup_id, done=False) != under_way:
                raise ControlPlaneNotEmpty(occupied)
            await marks.put(RESTORE_MARK, plan.restore_mark(backup_id, done=False))
            records: list[ClusterRecord] = []
            for name in plan.BUCKETS:
                if plan.kv_file(name) not in read:  # a backup taken before the platform had this bucket
                    continue
                kv = await self._bucket(name)
                for key, value in plan.decode_entries(read[plan.kv_file(name)]):
                    await kv.put(key, value)
                    if name == subjects.KV_CLUSTERS:
                        records.append(ClusterRecord.model_validate_json(value))
            js = self._broker.connection.jetstream()
            for stream in plan.STREAMS:
                await bind_stream(js, DEFINITIONS[stream], self._settings.nats_replicas)  # its owner may not run yet
                for n, (subject, data, headers) in enumerate(plan.decode_messages(read[plan.stream_file(stream)])):
                    # an id for each: a restore redone after a failure stores no message twice
                    headers = {"Nats-Msg-Id": f"restore.{backup_id}.{stream}.{n}", **headers}
                    await js.publish(subject, data, stream=stream, headers=headers)
            await marks.put(RESTORE_MARK, plan.restore_mark(backup_id, done=True))
            live = {r.id for r in records if r.status != ClusterStatus.DELETED}
            meters = manifest.buckets.get(subjects.KV_USAGE_METERS, 0)  # the files matched the manifest
            report = plan.compare_with_engines(manifest, live, await self._driver.orphans(set()), utcnow(), meters)
            self._log.warning("control plane restored from a backup", backup=backup_id, clusters=len(live),
                              unknown_engines=report.engines_unknown_to_backup,
                              without_engine=report.clusters_without_engine)
            return report


async def _holds_any(kv: KeyValue) -> bool:
    for key in await all_keys(kv):
        if await read_value(kv, key) is not None:
            return True
    return False
