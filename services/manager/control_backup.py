"""Pure decisions about backups of the platform's own state (the control plane in NATS): what a
backup holds, how its files are written and checked, when the next is due, which go, and what a
restore reports as changed since the backup.

No I/O here; `control_plane.py` reads NATS, writes the files to the snapshot store and applies.
A backup is a folder `control-plane/<id>/` of JSON-lines files and a `manifest.json` written
last, with each file's SHA-256: a folder without a manifest is a backup that never finished.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel

from libs.common import subjects

FORMAT = 1
PREFIX = "control-plane"
MANIFEST = "manifest.json"
BACKUP_ID = r"^cp-[0-9]{8}t[0-9]{6}z-[0-9a-f]{6}$"
SCHEDULE_LEASE = "control-plane-backup"  # the key, among the provisioner's leases, of the replica that schedules

# what a backup holds, in the order a restore writes it: records last, so the provisioner finds
# everything a cluster refers to (tenant, quota claim, name) when it first sees the cluster again.
# Leases, idempotency answers and the controller's plans are left out: each is made again.
BUCKETS = (subjects.KV_TENANTS, subjects.KV_API_KEYS, subjects.KV_QUOTA_CLAIMS, subjects.KV_CLUSTER_NAMES,
           subjects.KV_USAGE_METERS, subjects.KV_FLEET_UPGRADES, subjects.KV_CLUSTERS)
# the long-lived streams: every message with its subject and headers (its Nats-Msg-Id, so a
# second restore of the same record within the duplicate window is dropped by JetStream)
STREAMS = {subjects.USAGE_STREAM: subjects.USAGE_SUBJECTS[0], subjects.AUDIT_STREAM: subjects.AUDIT_ALL}
# a restore refuses a NATS that already knows any of these: it would mix two platforms' state
MUST_BE_EMPTY = (subjects.KV_CLUSTERS, subjects.KV_TENANTS, subjects.KV_API_KEYS)


class BackupFile(BaseModel):
    path: str  # relative to the backup's folder
    sha256: str
    bytes: int
    entries: int


class ControlBackupManifest(BaseModel):
    id: str
    format: int = FORMAT
    taken_at: datetime
    reason: str  # "scheduled", or who asked
    buckets: dict[str, int]  # bucket -> keys
    streams: dict[str, int]  # stream -> messages
    files: list[BackupFile]


class ControlRestoreReport(BaseModel):
    backup_id: str
    taken_at: datetime
    restored_at: datetime
    buckets: dict[str, int]
    streams: dict[str, int]
    clusters: int
    # what changed after the backup, found by comparing it with what the driver still runs or holds
    engines_unknown_to_backup: list[str]  # made after the backup: kept, not adopted, never removed
    clusters_without_engine: list[str]  # in the backup, but their engine and data are gone
    since_backup: list[str]  # a sentence per kind of change a person should know of


@dataclass(frozen=True)
class Decision:
    due: bool
    reason: str


def new_backup_id(now: datetime) -> str:
    return f"cp-{now.strftime('%Y%m%dt%H%M%Sz')}-{secrets.token_hex(3)}"


def is_backup_id(text: str) -> bool:
    return re.match(BACKUP_ID, text) is not None


def folder(backup_id: str) -> str:
    return f"{PREFIX}/{backup_id}"


def kv_file(bucket: str) -> str:
    return f"kv/{bucket}.jsonl"


def stream_file(stream: str) -> str:
    return f"streams/{stream}.jsonl"


def _line(entry: dict) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def encode_entries(entries: list[tuple[str, bytes]]) -> bytes:
    """KV entries (key, value) as JSON lines; a value is kept byte for byte, in base64."""
    return b"".join(_line({"key": key, "value": base64.b64encode(value).decode()}) for key, value in entries)


def decode_entries(data: bytes) -> list[tuple[str, bytes]]:
    return [(row["key"], base64.b64decode(row["value"])) for row in map(json.loads, data.splitlines()) if row]


def encode_messages(messages: list[tuple[str, bytes, dict[str, str]]]) -> bytes:
    """Stream messages (subject, data, headers) as JSON lines."""
    return b"".join(_line({"subject": subject, "data": base64.b64encode(data).decode(), "headers": headers})
                    for subject, data, headers in messages)


def decode_messages(data: bytes) -> list[tuple[str, bytes, dict[str, str]]]:
    return [(row["subject"], base64.b64decode(row["data"]), row["headers"])
            for row in map(json.loads, data.splitlines()) if row]


def restore_mark(backup_id: str, done: bool) -> bytes:
    """What KV_PLATFORM says of a restore: under way (a failed one may be redone), or done."""
    return f"{backup_id} {'done' if done else 'under way'}".encode()


def describe(path: str, data: bytes, entries: int) -> BackupFile:
    return BackupFile(path=path, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data), entries=entries)


def damaged_files(manifest: ControlBackupManifest, read: dict[str, bytes | None]) -> list[str]:
    """Each file of the manifest that is missing or whose checksum differs, said as a person reads it."""
    problems = []
    for file in manifest.files:
        data = read.get(file.path)
        if data is None:
            problems.append(f"{file.path}: missing")
        elif hashlib.sha256(data).hexdigest() != file.sha256:
            problems.append(f"{file.path}: checksum {hashlib.sha256(data).hexdigest()[:12]}... "
                            f"differs from the manifest's {file.sha256[:12]}...")
    if manifest.format != FORMAT:
        problems.append(f"manifest format {manifest.format}: this manager reads format {FORMAT}")
    return problems


def backup_due(latest: datetime | None, now: datetime, every_s: int) -> Decision:
    if every_s <= 0:
        return Decision(False, "scheduled control-plane backups are off (ESS_CONTROL_BACKUP_EVERY_S=0)")
    if latest is None:
        return Decision(True, "no control-plane backup yet")
    if now - latest >= timedelta(seconds=every_s):
        return Decision(True, f"the latest backup is older than {every_s} s")
    return Decision(False, f"the latest backup is {int((now - latest).total_seconds())} s old")


def to_prune(manifests: list[ControlBackupManifest], keep: int) -> list[str]:
    """The oldest backups beyond the newest `keep`."""
    newest_first = sorted(manifests, key=lambda m: m.taken_at, reverse=True)
    return [m.id for m in newest_first[keep:]]


def compare_with_engines(manifest: ControlBackupManifest, live_cluster_ids: set[str], held_by_driver: set[str],
                         restored_at: datetime, meters: int) -> ControlRestoreReport:
    """The report of a restore: `live_cluster_ids` are the restored records not deleted, and
    `held_by_driver` every cluster the driver runs or keeps data of."""
    unknown = sorted(held_by_driver - live_cluster_ids)
    gone = sorted(live_cluster_ids - held_by_driver)
    since = [f"the backup is {int((restored_at - manifest.taken_at).total_seconds())} s old: keys, tenants and "
             "changes made after it are not in it"]
    if unknown:
        since.append(f"{len(unknown)} cluster(s) made after the backup still run or hold data, with no record: "
                     "they are kept, never removed by the platform; copy out their data and remove "
                     "them by hand, or restore a later backup")
    if gone:
        since.append(f"{len(gone)} cluster(s) in the backup have no engine or data any more (deleted after "
                     "it): each is marked failed by the provisioner; delete them or restore them from a snapshot")
    if meters:
        since.append(f"usage: {meters} open metering period(s) resume from the backup's totals; use between "
                     "the backup and this restore is billed only as far as reporting's samples reach back")
    return ControlRestoreReport(
        backup_id=manifest.id, taken_at=manifest.taken_at, restored_at=restored_at, buckets=manifest.buckets,
        streams=manifest.streams, clusters=len(live_cluster_ids), engines_unknown_to_backup=unknown,
        clusters_without_engine=gone, since_backup=since)
