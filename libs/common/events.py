"""Event models, one per subject kind; each carries id, time and schema version."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from libs.common.metrics import ClusterStats
from libs.common.models import ClusterStatus, utcnow


class Event(BaseModel):
    event_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    occurred_at: datetime = Field(default_factory=utcnow)
    schema_version: int = 1
    request_id: str | None = None


class ClusterDesiredStateChanged(Event):
    """The API changed a cluster's desired state; the provisioner reconciles it."""

    cluster_id: str
    tenant_org_id: str
    change: Literal["created", "updated", "deleted"]
    generation: int


class ClusterStatusChanged(Event):
    """The provisioner moved a cluster to a new lifecycle status."""

    cluster_id: str
    tenant_org_id: str
    status: ClusterStatus
    reason: str
    endpoint: str | None = None
    nodes: int = 0


class OperationRates(BaseModel):
    """Per-second rates and mean latencies between two samples; None when not yet known."""

    indexing_per_s: float | None = None
    search_per_s: float | None = None
    indexing_latency_ms: float | None = None
    search_latency_ms: float | None = None


class ClusterLoad(BaseModel):
    """The cluster's own load between two polls (never its host's); None where not known yet."""

    engine_cpu_percent: float | None = None  # the busiest node's engine process, % of the CPUs it was given
    search_queue: int = 0  # the longest search pool queue of a node when polled
    write_queue: int = 0
    search_rejected: int | None = None  # searches the nodes' pools rejected since the previous poll
    write_rejected: int | None = None
    breaker_tripped: int | None = None  # requests refused for memory since the previous poll

    @property
    def rejected(self) -> int:
        """Requests the cluster refused since the previous poll: its pools full, or its memory short."""
        return (self.search_rejected or 0) + (self.write_rejected or 0) + (self.breaker_tripped or 0)


class MetricsSample(Event):
    """One poll of one tenant cluster (reporting -> shard controller, dashboards)."""

    schema_version: int = 2  # 2: `load`, the cluster's own; `stats.cpu_percent`, the host's, is gone
    cluster_id: str
    tenant_org_id: str
    taken_at: datetime
    stats: ClusterStats
    rates: OperationRates
    load: ClusterLoad = Field(default_factory=ClusterLoad)
    index_rates: dict[str, OperationRates] = {}


class UsageRecord(Event):
    """What one cluster used in one metering period (an hour by default)."""

    cluster_id: str
    tenant_org_id: str
    period_start: datetime
    period_end: datetime
    storage_gb_hours: float
    node_hours: float
    memory_gb_hours: float  # node-hours weighted by each node's memory
    documents_indexed: int
    search_requests: int
    samples: int
    # what tenants' clients sent through the gateway in the period
    requests: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


class ShardPlanChanged(Event):
    """The shard controller's plan for a cluster changed (or first exists), with its reason."""

    cluster_id: str
    tenant_org_id: str
    nodes: int
    current_nodes: int
    replicas: dict[str, int]
    splits: dict[str, int]
    reason: str


class ShardActionTaken(Event):
    """The shard controller acted on a cluster, or a step of an operation moved on."""

    cluster_id: str
    tenant_org_id: str
    action: str  # set_replicas, scale_requested, scale_in, scale_out, reshard
    detail: str
    outcome: Literal["started", "progress", "done", "failed"]


class ClusterScaleRequested(Event):
    """The shard controller asks the manager (the owner of provisioning) for a node count."""

    cluster_id: str
    tenant_org_id: str
    nodes: int
    reason: str


class ClusterActivity(Event):
    """What one gateway forwarded to one cluster since its last report (batched, not per request)."""

    cluster_id: str
    tenant_org_id: str
    gateway: str  # the reporting gateway instance
    requests: int
    bytes_in: int
    bytes_out: int
    last_request_at: datetime


class ClusterWakeRequested(Event):
    """A request reached a hibernated cluster (gateway) or the API asked to wake it."""

    cluster_id: str
    tenant_org_id: str
    reason: str


class AuditEvent(Event):
    """One mutating API call: who (key id, never the key), what, and how it ended."""

    actor: str  # "operator" or a tenant key id
    actor_tenant: str | None
    method: str
    path: str
    status: int
