"""Pure transitions of a cluster record, the one place each is written: a new record from a
validated request (the API and `render`), a changed spec (PATCH), a node count the shard
controller asks for (its NATS handler), asked to hibernate, asked to wake, activity seen.

Each change returns the changed record, or None to leave it (a redelivered event or a repeated
call changes nothing twice); none reads KV or NATS, so each is tested as a plain function."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import get_args
from datetime import datetime

from libs.common.models import ClusterRecord, ClusterSpec, ClusterStatus, EngineKind, RestoreState, SnapshotPolicy
from services.manager import backups
from services.manager.settings import ManagerSettings
from services.manager.schemas import CreateClusterRequest, UpdateClusterRequest


class NotNow(Exception):
    """The transition does not apply to the cluster as it is; the message says why."""


class Invalid(ValueError):
    """The request cannot be applied as asked: which field, why, and what to send instead."""

    def __init__(self, field: str, message: str, fix: str):
        super().__init__(message)
        self.field, self.message, self.fix = field, message, fix


@dataclass(frozen=True)
class NewClusterDefaults:
    """What the platform fills in where a create request is silent."""

    engine: str | None  # None: the first engine the driver runs
    hibernate_after_s: int
    snapshot_policies: Mapping[str, SnapshotPolicy]  # by engine: no schedule where its backups are off

    @classmethod
    def of(cls, settings: ManagerSettings) -> "NewClusterDefaults":
        return cls(settings.default_engine, settings.hibernate_after_s,
                   {engine: backups.new_policy(settings, engine) for engine in get_args(EngineKind)})


@dataclass(frozen=True)
class EnginesOnOffer:
    """The engines a driver runs: versions by engine (the default first) and what each one lacks."""

    driver: str
    versions: Mapping[str, Sequence[str]]
    lacks: Mapping[str, frozenset[str]] = field(default_factory=dict)


def pick_engine(engine: str | None, version: str | None, offer: EnginesOnOffer,
                default_engine: str | None) -> tuple[str, str]:
    """The engine and version a new cluster runs: the asked ones, else the platform's default
    engine if the driver runs it (else the driver's first), at its first (default) version."""
    available = offer.versions
    engine = engine or (default_engine if default_engine in available else next(iter(available)))
    if engine not in available:
        raise Invalid("engine", f"engine {engine!r} cannot run on the {offer.driver} driver",
                      f"use one of {sorted(available)}")
    version = version or available[engine][0]
    if version not in available[engine]:
        raise Invalid("version", f"{engine} {version} is not available on this platform",
                      f"use one of {available[engine]} or leave version out")
    return engine, version


def new_cluster_id() -> str:
    return "c" + uuid.uuid4().hex[:12]  # a DNS label too: it names the cluster's Kubernetes objects


def new_record(body: CreateClusterRequest, cluster_id: str, offer: EnginesOnOffer, defaults: NewClusterDefaults,
               request_id: str | None = None, restore: RestoreState | None = None) -> ClusterRecord:
    """The record a create request makes; Invalid if the driver cannot run the engine asked."""
    engine, version = pick_engine(body.engine, body.version, offer, defaults.engine)
    return ClusterRecord(
        id=cluster_id, tenant_org_id=body.tenant_org_id, user=body.user, service_name=body.service_name,
        spec=ClusterSpec(replicas=body.replicas, cpu=body.cpu, memory=body.memory, storage=body.storage,
                         engine=engine, version=version),
        request_id=request_id, engine_lacks=sorted(offer.lacks.get(engine, ())),
        hibernate_after_s=defaults.hibernate_after_s if body.hibernate_after_s is None else body.hibernate_after_s,
        snapshot_policy=defaults.snapshot_policies[engine].model_copy(), restore=restore,
    )


# a major version is reached only from the last minor line of the one before (the engines' own rule)
MAJOR_UPGRADE_FROM = {"opensearch": {3: (2, 19)}, "elasticsearch": {8: (7, 17), 9: (8, 18)}}


def _numbers(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def check_upgrade(engine: str, current: str, wanted: str, offer: EnginesOnOffer) -> None:
    """Raises Invalid (field `version`) unless `current` may be upgraded to `wanted` here: a version
    this driver runs, never lower, a major only from the last minor line of the one before."""
    available = list(offer.versions.get(engine, ()))
    if wanted not in available:
        raise Invalid("version", f"{engine} {wanted} is not available on this platform",
                      f"use one of {available}")
    old, new = _numbers(current), _numbers(wanted)
    if new < old:
        raise Invalid("version", f"{engine} {current} cannot go down to {wanted}: an engine's data is never "
                      "read by an older version",
                      f"stay on {current}; a snapshot taken before the upgrade restores into a new cluster of {wanted}")
    if new[0] > old[0]:
        since = MAJOR_UPGRADE_FROM.get(engine, {}).get(new[0])
        if new[0] - old[0] > 1 or since is None or old[:2] < since:
            path = (f"{engine} {new[0]}.x is reached from {since[0]}.{since[1]} or later of {new[0] - 1}.x"
                    if since and new[0] - old[0] == 1 else f"no upgrade path from {old[0]}.x to {new[0]}.x")
            raise Invalid("version", f"{engine} {current} cannot be upgraded to {wanted} in one step: {path}",
                          f"upgrade to {since[0]}.{since[1]} first" if since and new[0] - old[0] == 1
                          else f"create a cluster of {wanted} and index the data into it again")


def start_upgrade(record: ClusterRecord, version: str, request_id: str | None) -> ClusterRecord | None:
    """The record on its way to `version`. Asleep: it wakes on it. Ready: the driver moves it while
    it serves, several nodes one at a time, a single node by surge (a node of the new version joins
    and takes its shards, then it restarts on it and takes them back). None: on that version already."""
    if record.spec.version == version or record.delete_requested:
        return None
    was = record.spec.version
    if record.status == ClusterStatus.HIBERNATED:
        record.spec = record.spec.model_copy(update={"version": version})
        record.status_reason = f"hibernated; wakes on {record.spec.engine} {version} (was {was})"
    elif record.status == ClusterStatus.READY and not record.hibernate_requested:
        how = "node by node" if record.spec.replicas > 1 else "by surge (a second node for the while)"
        record.spec = record.spec.model_copy(update={"version": version})
        record.generation += 1
        record.status = ClusterStatus.SCALING
        record.status_reason = f"upgrading {record.spec.engine} {was} to {version} {how}"
    else:
        raise NotNow(f"cluster {record.id} is {record.status}; upgrade it once it is ready or hibernated")
    record.request_id = request_id
    return record


def change_spec(record: ClusterRecord, body: UpdateClusterRequest, request_id: str | None) -> ClusterRecord | None:
    """A PATCH: a changed node count or memory is a new generation for the provisioner; bounds,
    idle time and snapshot policy change in place. None: nothing differs, or it is being deleted."""
    spec = record.spec.model_copy(update=body.spec_changes())
    scaling = record.scaling.model_copy(update=body.scaling_changes())
    idle = record.hibernate_after_s if body.hibernate_after_s is None else body.hibernate_after_s
    policy = record.snapshot_policy.model_copy(update=body.policy_changes())
    if ((spec, scaling, idle, policy) == (record.spec, record.scaling, record.hibernate_after_s,
                                          record.snapshot_policy) or record.delete_requested):
        return None
    if scaling.min_nodes > scaling.max_nodes:
        # one bound sent, checked against the other as stored
        raise Invalid("min_nodes", f"min_nodes {scaling.min_nodes} is above max_nodes {scaling.max_nodes}",
                      "send both, or keep min_nodes <= max_nodes")
    record.hibernate_after_s = idle
    record.snapshot_policy = policy
    record.scaling = scaling
    record.request_id = request_id
    if spec != record.spec:
        record.spec = spec
        record.generation += 1
        record.status = ClusterStatus.SCALING
        record.status_reason = "spec changed; waiting for the provisioner"
    return record


def scale_wanted(record: ClusterRecord, nodes: int) -> bool:
    """Whether the shard controller's ask still applies: the tenant may have pinned or bounded
    the cluster since, or it sleeps, is going, or has that many nodes already."""
    scaling = record.scaling
    allowed = scaling.autoscaling and scaling.min_nodes <= nodes <= scaling.max_nodes
    return allowed and not record.asleep and not record.delete_requested and record.spec.replicas != nodes


def accept_scale(record: ClusterRecord, nodes: int, reason: str) -> ClusterRecord | None:
    """The shard controller's node count as the cluster's new spec, if it still applies."""
    if not scale_wanted(record, nodes):
        return None
    record.spec = record.spec.model_copy(update={"replicas": nodes})
    record.generation += 1
    record.status = ClusterStatus.SCALING
    record.status_reason = f"shard controller: {reason}"
    return record


def request_hibernation(record: ClusterRecord, reason: str) -> ClusterRecord | None:
    if record.hibernate_requested:
        return None
    if record.delete_requested or record.status != ClusterStatus.READY:
        raise NotNow(f"cluster {record.id} is {record.status}; hibernate it once it is ready")
    # the stop is decided here, once: a request arriving after this waits for it, then wakes it
    record.hibernate_requested = True
    record.status = ClusterStatus.HIBERNATING
    record.status_reason = f"hibernating: {reason}"
    return record


def request_wake(record: ClusterRecord, now: datetime, reason: str) -> ClusterRecord | None:
    """Wake a hibernated (or hibernating) cluster; its idle time counts from now."""
    if record.delete_requested:
        raise NotNow(f"cluster {record.id} is being deleted")
    if not record.hibernate_requested:
        return None  # awake, or already waking
    record.hibernate_requested = False
    record.last_active_at = now
    if record.status == ClusterStatus.HIBERNATING:
        # the stop under way completes first; the provisioner then starts it as a wake
        record.status_reason = f"hibernating, then waking: {reason}"
        return record
    record.status = ClusterStatus.WAKING  # the gateways hold requests until it is ready
    record.status_reason = f"waking: {reason}"
    return record


def note_activity(record: ClusterRecord, last_request_at: datetime) -> ClusterRecord | None:
    if record.last_active_at is not None and record.last_active_at >= last_request_at:
        return None  # another gateway's later report is in already
    record.last_active_at = last_request_at
    return record


def idle_s(record: ClusterRecord, now: datetime) -> float | None:
    """Seconds since the cluster's last request (or since it formed); None if never formed."""
    since = record.last_active_at or record.formed_at
    return (now - since).total_seconds() if since else None
