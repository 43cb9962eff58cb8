"""Pure decisions about a cluster's backups: whether it has any (`backups_off`, per engine: the
one place routes, schedule, final snapshot and the Kubernetes renderer ask), where its repository
is (and where a clone reads its source's), which scheduled snapshot is due, which to prune,
whether a restore ran too long, when a deleted cluster's snapshot goes.

No I/O here: every function takes values and returns a value (plans carry a `reason`). The
snapshotter (services/manager/snapshotter.py) applies them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from libs.common.models import ClusterRecord, SnapshotPolicy
from services.manager.settings import KubernetesDriverSettings, ManagerSettings

REPOSITORY = "ess-backups"  # a cluster's own repository, by the same name in every engine
AUTO_PREFIX = "auto-"


def source_repository(cluster_id: str) -> str:
    """The name under which a clone registers its source cluster's repository (read-only)."""
    return f"ess-source-{cluster_id}"


OPENSEARCH_S3_FIX = ("build the engine image from deploy/docker/opensearch-s3.Dockerfile, point "
                     "ESS_OPENSEARCH_REPOSITORY and ESS_OPENSEARCH_IMAGE_TAG at it and set "
                     "ESS_OPENSEARCH_S3_PLUGIN=true")


@dataclass(frozen=True)
class BackupsOff:
    """Why a cluster has no backups: the `setting` the operator changes, and how (`fix`)."""

    reason: str
    setting: str
    fix: str

    def __str__(self) -> str:
        return f"{self.reason}; the operator can {self.fix}"


def engines_reach_the_bucket(settings: KubernetesDriverSettings, engine: str) -> bool:
    """Kubernetes: whether the engine's nodes get the S3 client (settings, keystore, keys Secret).

    A bucket must be set, and the engine must have repository-s3: Elasticsearch bundles it; the
    official OpenSearch image has not, and a node given `s3.client.*` without it does not start.
    """
    return bool(settings.snapshot_bucket) and (engine != "opensearch" or settings.opensearch_s3_plugin)


def backups_off(settings: ManagerSettings, engine: str) -> BackupsOff | None:
    """Why a cluster of `engine` has no backups on this platform; None when it has them. The one
    decision: routes, schedule, final snapshot and the Kubernetes renderer all come here."""
    if settings.driver == "local":
        return None  # local engines always have their `fs` repository
    if not settings.snapshot_bucket:
        return BackupsOff("backups are off on this platform: the Kubernetes driver has no bucket",
                          "ESS_SNAPSHOT_BUCKET", "set ESS_SNAPSHOT_BUCKET (and the store's keys, "
                          "ESS_SNAPSHOT_ACCESS_KEY and ESS_SNAPSHOT_SECRET_KEY)")
    if not engines_reach_the_bucket(settings, engine):
        return BackupsOff(f"backups are off for {engine} clusters: the {engine} image has no repository-s3 "
                          "plugin", "ESS_OPENSEARCH_S3_PLUGIN", OPENSEARCH_S3_FIX)
    return None


def backups_on(settings: ManagerSettings, engine: str) -> bool:
    return backups_off(settings, engine) is None


def new_policy(settings: ManagerSettings, engine: str) -> SnapshotPolicy:
    """A new cluster's snapshot policy: the platform's defaults, with no schedule (every_s 0) when
    its backups are off.

    Off is written into the record rather than kept as a separate flag: the policy is what the API
    shows, the snapshotter follows and reporting exposes (`ess_cluster_snapshot_age_seconds` only
    for clusters with a schedule), so "no schedule" then reads the same everywhere and the
    snapshot-age alert cannot fire for a cluster that takes none. A schedule asked later through
    PATCH is refused with 409 `backups_off` until the operator turns them on; the snapshotter
    zeroes the schedule of a record made before (`Snapshotter.tend`).
    """
    every_s = settings.snapshot_every_s if backups_on(settings, engine) else 0
    return SnapshotPolicy(every_s=every_s, keep=settings.snapshot_keep)


def base_path(cluster_id: str) -> str:
    """Where a cluster's repository lies in the Kubernetes snapshot bucket; nothing else is there."""
    return f"clusters/{cluster_id}"


def repository_body(settings: ManagerSettings, cluster_id: str, readonly: bool = False) -> dict[str, Any]:
    """The engine's repository definition for `cluster_id`'s snapshots.

    Local: an `fs` directory under the state dir (inside its own nodes' `path.repo`). Kubernetes: a
    prefix of the S3 bucket; endpoint, region and path-style are the engines' `s3.client.default.*`
    node settings and the keys sit in their keystores, so nothing secret is in this body.
    """
    if settings.driver == "local":
        location = str(settings.snapshots_dir / cluster_id)
        return {"type": "fs", "settings": {"location": location, "compress": True, "readonly": readonly}}
    return {"type": "s3", "settings": {"bucket": settings.snapshot_bucket, "base_path": base_path(cluster_id),
                                       "client": "default", "readonly": readonly}}


def incoming_location(settings: ManagerSettings, target_id: str, source_id: str) -> Path:
    """Local: where `target_id` reads `source_id`'s repository from, a hard-linked copy in its own
    incoming directory, since its nodes' `path.repo` holds no other cluster's directory."""
    return settings.restores_dir / target_id / source_id


def source_repository_body(settings: ManagerSettings, target_id: str, source_id: str) -> dict[str, Any]:
    """The read-only definition under which `target_id` restores from `source_id`'s snapshots.

    Local: `fs` at the incoming copy (`incoming_location`). Kubernetes: the source's own prefix of
    the bucket, which every engine's S3 client reaches.
    """
    if settings.driver == "local":
        location = str(incoming_location(settings, target_id, source_id))
        return {"type": "fs", "settings": {"location": location, "compress": True, "readonly": True}}
    return repository_body(settings, source_id, readonly=True)


def manual_name(now: datetime) -> str:
    """A snapshot asked through the API: sortable by time, unique within the second."""
    return f"manual-{now.strftime('%Y%m%dt%H%M%Sz')}-{uuid.uuid4().hex[:4]}"


def final_name(now: datetime) -> str:
    return f"final-{int(now.timestamp())}"


def period_start(now: datetime, every_s: int) -> int:
    """The epoch second the schedule's current period began (periods are aligned to the epoch)."""
    epoch = int(now.timestamp())
    return epoch - epoch % every_s


def auto_name(start: int) -> str:
    """The one name of a period's snapshot: taking it twice is refused by the engine, so a manager
    that restarts mid-period, or a second replica, cannot snapshot a period twice."""
    return f"{AUTO_PREFIX}{start}"


def auto_start(name: str) -> int | None:
    if not name.startswith(AUTO_PREFIX):
        return None
    number = name[len(AUTO_PREFIX):]
    return int(number) if number.isdigit() else None


@dataclass(frozen=True)
class ScheduledSnapshots:
    """What the schedule does now: `create` a snapshot of that name (or none), `prune` these."""

    create: str | None
    prune: list[str] = field(default_factory=list)
    reason: str = ""


def plan_scheduled(policy: SnapshotPolicy, formed_at: datetime | None, now: datetime,
                   existing: list[tuple[str, str]]) -> ScheduledSnapshots:
    """The scheduled snapshot due now and the scheduled ones beyond `keep`.

    `existing`: (name, status) of every snapshot in the repository. Only `auto-` snapshots are
    the schedule's: those taken through the API are never pruned. A period that began before
    the cluster formed has nothing to keep, so the first snapshot is the first whole period's.
    """
    if policy.every_s <= 0:
        return ScheduledSnapshots(None, [], "schedule off (every_s 0)")
    start = period_start(now, policy.every_s)
    names = {name for name, _ in existing}
    create = auto_name(start)
    if formed_at is None or start < formed_at.timestamp():
        create, reason = None, "the cluster formed in this period; the first snapshot is the next period's"
    elif create in names:
        create, reason = None, f"this period's snapshot {create} is taken"
    else:
        reason = f"period {start} has no snapshot"
    autos = sorted((auto_start(name), name) for name, status in existing
                   if auto_start(name) is not None and status != "in_progress")
    room = policy.keep - (1 if create else 0)  # the one being taken counts as kept
    prune = [name for _, name in autos[:max(0, len(autos) - room)]]
    if prune:
        reason += f"; {len(prune)} beyond keep {policy.keep}"
    return ScheduledSnapshots(create, prune, reason)


def restore_overdue(record: ClusterRecord, now: datetime, timeout_s: float) -> bool:
    restore = record.restore
    return bool(restore and restore.state in ("requested", "running")
                and (now - restore.requested_at).total_seconds() > timeout_s)


def purge_due(record: ClusterRecord, now: datetime, retention_s: float) -> bool:
    """A deleted cluster's final snapshot and record go once the retention has passed."""
    return record.deleted_at is not None and (now - record.deleted_at).total_seconds() >= retention_s
