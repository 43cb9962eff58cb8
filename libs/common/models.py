"""The domain records kept in JetStream KV: a cluster's spec, status and observed state, tenants,
API keys, and the shard controller's state that the manager shows."""

from __future__ import annotations

from datetime import datetime, timezone
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

EngineKind = Literal["opensearch", "elasticsearch"]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class ClusterStatus(StrEnum):
    REQUESTED = "requested"
    PROVISIONING = "provisioning"
    READY = "ready"
    SCALING = "scaling"
    HIBERNATING = "hibernating"  # the engine is being flushed and stopped; this stop always completes
    HIBERNATED = "hibernated"  # no engine runs, data kept; the next request wakes it
    WAKING = "waking"
    DELETING = "deleting"
    DELETED = "deleted"
    FAILED = "failed"


# a scaling cluster's engine serves throughout: the API and the shard controller treat it as ready
SERVING = (ClusterStatus.READY, ClusterStatus.SCALING)
# on the way down, down, or on the way up again: nothing to serve, poll, snapshot or resize
ASLEEP = (ClusterStatus.HIBERNATING, ClusterStatus.HIBERNATED, ClusterStatus.WAKING)
# a start that waits its turn on a busy machine says so first in its reason: the gateway holds
# a request for such a cluster past `wake_timeout_s`, which counts from the start itself
QUEUED = "queued: "


def queued_reason(why: str) -> str:
    return QUEUED + why


def waits_its_turn(record: ClusterRecord) -> bool:
    """The cluster's engine start waits its turn (the provisioner wrote `queued_reason`)."""
    return record.status_reason.startswith(QUEUED)


class ClusterSpec(BaseModel):
    """What the tenant asked for (desired state)."""

    # the node count: the seed's request named it `replicas`, and the API keeps that name; the
    # copies of an index are "replicas" only in the shard controller's `ShardPlan`
    replicas: int
    cpu: str
    memory: str
    storage: str
    engine: EngineKind = "opensearch"
    version: str


class ScalingPolicy(BaseModel):
    """The tenant's say over the shard controller: pin the cluster, or bound its node count."""

    autoscaling: bool = True
    min_nodes: int = 1
    max_nodes: int = 9


class SnapshotPolicy(BaseModel):
    """Scheduled snapshots: one per `every_s` period (0: none), the newest `keep` of them kept."""

    every_s: int = 3600
    keep: int = 24


class RestoreState(BaseModel):
    """A restore asked of the cluster: indices replaced by their copies in a snapshot."""

    snapshot: str
    source_cluster_id: str | None = None  # None: the cluster's own repository; else a clone's source
    indices: list[str] = []  # empty: every index in the snapshot
    state: Literal["requested", "running", "done", "failed"] = "requested"
    reason: str = "waiting for the backup pass"
    requested_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class EngineCredentials(BaseModel):
    username: str
    password: str = Field(repr=False)  # never in a log line, even when a whole record is printed


class ClusterRecord(BaseModel):
    """One tenant cluster: desired spec plus what the provisioner last observed."""

    id: str
    tenant_org_id: str
    user: str
    service_name: str
    spec: ClusterSpec
    scaling: ScalingPolicy = Field(default_factory=ScalingPolicy)
    generation: int = 1  # bumped on every spec change
    observed_generation: int = 0  # the generation the running engine was built from
    # when the engine first answered healthy: from then on its data must exist, and a driver
    # refuses to start it empty (a new cluster in place of the tenant's)
    formed_at: datetime | None = None
    delete_requested: bool = False
    # serverless: hibernate after this many idle seconds (0: never); the gateway's activity
    # reports move `last_active_at`; `hibernate_requested` is the desired state, set idle or by
    # the API and cleared by a wake; the status says where the engine is (a wake while it is
    # `hibernating` lets that stop complete, then starts it again)
    hibernate_after_s: int = 0
    hibernate_requested: bool = False
    last_active_at: datetime | None = None
    stored_bytes: int = 0  # the store's size when last hibernated: metered while no engine runs
    stored_docs: int = 0  # its documents when last hibernated: shown while it sleeps, with no wake
    snapshot_policy: SnapshotPolicy = Field(default_factory=SnapshotPolicy)
    restore: RestoreState | None = None  # the latest restore (or a clone's first one) and how it went
    # deleted with a final snapshot: the record stays (status deleted) until the retention ends
    deleted_at: datetime | None = None
    final_snapshot: str | None = None
    # what the backup pass last saw in the repository, for reporting's /metrics
    last_snapshot_at: datetime | None = None  # when the newest successful snapshot finished
    snapshot_failure: str | None = None  # the reason of the newest snapshot, when it failed
    status: ClusterStatus = ClusterStatus.REQUESTED
    status_reason: str = "waiting for the provisioner"
    health: str | None = None
    nodes: int = 0
    endpoint: str | None = None
    credentials: EngineCredentials | None = None
    engine_lacks: list[str] = []  # modules its engine lacks where the driver runs it (set at creation)
    request_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def asleep(self) -> bool:
        """Hibernation asked, under way, done or being undone: no engine serves it now."""
        return self.hibernate_requested or self.status in ASLEEP


class TenantQuotas(BaseModel):
    max_clusters: int = 5
    max_nodes: int = 9  # summed over the tenant's clusters
    max_storage_gb: int = 100  # summed `storage` of the tenant's clusters, in GiB


class TenantRecord(BaseModel):
    tenant_org_id: str
    quotas: TenantQuotas = Field(default_factory=TenantQuotas)
    created_at: datetime = Field(default_factory=utcnow)


class ApiKeyRecord(BaseModel):
    """A tenant's API key as stored: only a salted hash of its secret, never the secret."""

    key_id: str
    tenant_org_id: str
    salt: str
    secret_hash: str
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


# -- the shard controller's state in KV (bucket ess_shard_plans), read by the manager ----------
class Operation(BaseModel):
    """A multi-step change in flight; each step is idempotent, so it can be redone after a crash."""

    kind: Literal["scale_out", "scale_in", "reshard"]
    phase: str
    nodes: int | None = None
    alias: str | None = None
    source: str | None = None
    target: str | None = None
    task_id: str | None = None
    started_at: datetime


class ControllerState(BaseModel):
    """A cluster's latest shard plan and the operation in flight (written by the shard controller)."""

    cluster_id: str
    tenant_org_id: str
    plan: dict | None = None
    planned_at: datetime | None = None
    last_action_at: datetime | None = None
    operation: Operation | None = None
