"""Request and response bodies of the manager API; every bound is stated in the schema, and
each name pattern is written once, here.

Names: `replicas` in a request or a view is the cluster's node count (the seed's request named it
so and the API keeps it); index copies are called replicas only in the shard controller's plans."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictFloat, StrictInt, model_validator

from libs.common.models import SERVING, ClusterRecord, ClusterStatus, EngineCredentials, RestoreState, SnapshotPolicy
from libs.common.quantities import QuantityError, parse_bytes, parse_cpu_millis

# each pattern written once, here; a path, query or body field of that kind uses it
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"  # RFC 1123, at most 63 long (DnsName, is_dns_label)
CLUSTER_ID = r"^c[0-9a-f]{12}$"  # as `transitions.new_cluster_id` makes them
SNAPSHOT_NAME = r"^[a-z0-9][a-z0-9_.-]*$"
FIELD_NAME = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"
INDEX_NAME = r"^[a-z0-9][a-z0-9_-]*$"


def _bounded_bytes(low: str, high: str):
    def check(value: str) -> str:
        try:
            size = parse_bytes(value)
        except QuantityError as exc:
            raise ValueError(f"{exc}; use e.g. 512Mi, 1Gi or 10Gi") from exc
        if not parse_bytes(low) <= size <= parse_bytes(high):
            raise ValueError(f"{value} is outside {low}..{high}")
        return value

    return AfterValidator(check)


def _check_cpu(value: str) -> str:
    try:
        millis = parse_cpu_millis(value)
    except QuantityError as exc:
        raise ValueError(str(exc)) from exc
    if not 100 <= millis <= 16000:
        raise ValueError(f"{value} is outside 100m..16")
    return value


DnsName = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]


def is_dns_label(value: str) -> bool:
    return len(value) <= 63 and re.fullmatch(DNS_LABEL, value) is not None
Cpu = Annotated[str, Field(max_length=16, examples=["500m", "1", "2"]), AfterValidator(_check_cpu)]
Memory = Annotated[str, Field(max_length=16, examples=["1Gi"]), _bounded_bytes("256Mi", "64Gi")]
Storage = Annotated[str, Field(max_length=16, examples=["5Gi"]), _bounded_bytes("1Gi", "16Ti")]
Number = StrictInt | StrictFloat
FieldValue = str | StrictInt | StrictFloat | bool

# what to send instead, by field: joined to the validation message
FIXES = {
    "tenant_org_id": "a DNS-1123 label: lowercase letters, digits and '-', at most 63, e.g. acme",
    "service_name": "a DNS-1123 label: lowercase letters, digits and '-', at most 63, e.g. search",
    "user": "a non-empty string of at most 128 characters",
    "replicas": "an integer from 1 to 9",
    "cpu": "a Kubernetes CPU quantity from 100m to 16, e.g. 500m or 2",
    "memory": "a Kubernetes memory quantity from 256Mi to 64Gi, e.g. 1Gi",
    "storage": "a Kubernetes storage quantity from 1Gi to 16Ti, e.g. 5Gi",
    "engine": "'opensearch' or 'elasticsearch'",
    "version": "an engine version such as 2.19.1",
    "name": "an index name: lowercase letters, digits, '-' and '_', starting with a letter or digit",
    "dimensions": "an integer from 1 to 4096",
    "similarity": "'cosine', 'l2' or 'dot_product'",
    "k": "an integer from 1 to 100",
    "vector": "a list of numbers, as many as the index's dimensions",
    "documents": "a list of 1 to 1000 objects with id, vector and optional fields",
    "autoscaling": "true or false",
    "min_nodes": "an integer from 1 to 9, at most max_nodes",
    "max_nodes": "an integer from 1 to 9, at least min_nodes",
    "hibernate_after_s": "0 (never hibernate) or idle seconds from 10 to 2592000 (30 days), e.g. 600",
}


def _check_hibernate_after(value: int) -> int:
    if 0 < value < MIN_IDLE_S:
        raise ValueError(f"must be 0 (never) or at least {MIN_IDLE_S} seconds")
    return value


# gateways report activity every few seconds: a shorter idle time would hibernate a busy cluster
MIN_IDLE_S = 10
HibernateAfter = Annotated[StrictInt, Field(ge=0, le=30 * 24 * 3600), AfterValidator(_check_hibernate_after)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SnapshotPolicyRequest(Strict):
    every_s: Annotated[StrictInt, Field(ge=0, le=30 * 24 * 3600)] | None = None  # 0: no scheduled snapshots
    keep: Annotated[StrictInt, Field(ge=1, le=1000)] | None = None


class CloneSource(Strict):
    """`from` of a new cluster: it starts with this snapshot of that cluster restored."""

    cluster_id: Annotated[str, Field(pattern=CLUSTER_ID)]
    snapshot: Annotated[str, Field(max_length=200, pattern=SNAPSHOT_NAME)]


class CreateClusterRequest(Strict):
    tenant_org_id: DnsName
    user: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f]+$")]
    service_name: DnsName
    replicas: Annotated[StrictInt, Field(ge=1, le=9)]
    cpu: Cpu
    memory: Memory
    storage: Storage
    engine: Literal["opensearch", "elasticsearch"] | None = None
    version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")] | None = None
    hibernate_after_s: HibernateAfter | None = None  # None: the platform's default
    source: CloneSource | None = Field(default=None, alias="from")  # a clone of another cluster's snapshot

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "tenant_org_id": "acme", "user": "alice", "service_name": "search",
                    "replicas": 1, "cpu": "500m", "memory": "1Gi", "storage": "5Gi",
                }
            ]
        },
    )


class UpdateClusterRequest(Strict):
    replicas: Annotated[StrictInt, Field(ge=1, le=9)] | None = None
    memory: Memory | None = None
    autoscaling: bool | None = None  # false pins the cluster: the shard controller leaves it alone
    min_nodes: Annotated[StrictInt, Field(ge=1, le=9)] | None = None
    max_nodes: Annotated[StrictInt, Field(ge=1, le=9)] | None = None
    hibernate_after_s: HibernateAfter | None = None
    snapshot_policy: SnapshotPolicyRequest | None = None
    # an engine upgrade: alone in its request (it restarts the engine; the rest waits for that)
    version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")] | None = None

    @model_validator(mode="after")
    def _something(self) -> "UpdateClusterRequest":
        asked = self.model_dump(exclude_none=True)
        if not asked:
            raise ValueError("nothing to change: send replicas, memory, autoscaling, min_nodes, max_nodes, "
                             "hibernate_after_s, snapshot_policy or version")
        if "version" in asked and len(asked) > 1:
            raise ValueError("version is changed alone: send it in a request of its own")
        if self.min_nodes and self.max_nodes and self.min_nodes > self.max_nodes:
            raise ValueError("min_nodes is above max_nodes")
        return self

    def spec_changes(self) -> dict:
        return self.model_dump(include={"replicas", "memory"}, exclude_none=True)

    def scaling_changes(self) -> dict:
        return self.model_dump(include={"autoscaling", "min_nodes", "max_nodes"}, exclude_none=True)

    def policy_changes(self) -> dict:
        return self.snapshot_policy.model_dump(exclude_none=True) if self.snapshot_policy else {}


class ClusterView(BaseModel):
    id: str
    tenant_org_id: str
    user: str
    service_name: str
    replicas: int
    cpu: str
    memory: str
    storage: str
    engine: str
    version: str
    autoscaling: bool
    min_nodes: int
    max_nodes: int
    status: ClusterStatus
    status_reason: str
    health: str | None
    nodes: int
    hibernate_after_s: int
    last_active_at: datetime | None
    # what clients dial: the gateway's address of the cluster, once it has formed; it stays the
    # same while the cluster scales, hibernates and wakes
    endpoint: str | None
    engine_endpoint: str | None = None  # the engine itself: shown to the operator only
    credentials: EngineCredentials | None
    engine_lacks: list[str]
    snapshot_policy: SnapshotPolicy
    restore: RestoreState | None = None  # the latest restore asked of it: `state` says when it is done
    deleted_at: datetime | None = None  # a deleted cluster kept for undelete: since when
    final_snapshot: str | None = None  # ...and the snapshot an undelete restores
    # while it sleeps, what it holds as of its hibernation: read from the record, so looking wakes nothing
    stored_documents: int | None = None
    stored_bytes: int | None = None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, record: ClusterRecord, gateway_url: str, operator: bool) -> "ClusterView":
        ready = record.status == ClusterStatus.READY
        addressable = record.formed_at is not None and not record.delete_requested
        return cls(
            **record.model_dump(include={"id", "tenant_org_id", "user", "service_name", "status", "status_reason",
                                         "health", "nodes", "hibernate_after_s", "last_active_at", "created_at",
                                         "updated_at", "engine_lacks", "snapshot_policy", "restore",
                                         "deleted_at", "final_snapshot"}),
            **record.spec.model_dump(),
            **record.scaling.model_dump(),
            endpoint=f"{gateway_url}/{record.id}" if addressable else None,
            engine_endpoint=record.endpoint if operator and record.status in SERVING else None,
            credentials=record.credentials if ready else None,
            stored_documents=record.stored_docs if record.status == ClusterStatus.HIBERNATED else None,
            stored_bytes=record.stored_bytes if record.status == ClusterStatus.HIBERNATED else None,
        )


class ClusterList(BaseModel):
    clusters: list[ClusterView]


class VectorIndexRequest(Strict):
    name: Annotated[str, Field(min_length=1, max_length=200, pattern=INDEX_NAME)]
    dimensions: Annotated[StrictInt, Field(ge=1, le=4096)]
    similarity: Literal["cosine", "l2", "dot_product"] = "cosine"
    text_fields: Annotated[list[Annotated[str, Field(pattern=FIELD_NAME)]], Field(max_length=32)] = []


class VectorIndexView(BaseModel):
    name: str
    dimensions: int
    similarity: str
    text_fields: list[str]


class VectorDocumentIn(Strict):
    id: Annotated[str, Field(min_length=1, max_length=512)]
    vector: Annotated[list[Number], Field(min_length=1, max_length=4096)]
    fields: dict[Annotated[str, Field(pattern=FIELD_NAME)], FieldValue | None] = {}

    @model_validator(mode="after")
    def _no_vector_field(self) -> "VectorDocumentIn":
        if "vector" in self.fields:
            raise ValueError("fields may not contain 'vector'; put the embedding in the vector attribute")
        return self


class DocumentsRequest(Strict):
    documents: Annotated[list[VectorDocumentIn], Field(min_length=1, max_length=1000)]


class DocumentsResult(BaseModel):
    indexed: int
    errors: list[dict[str, str]]


class SearchRequest(Strict):
    vector: Annotated[list[Number], Field(min_length=1, max_length=4096)]
    k: Annotated[StrictInt, Field(ge=1, le=100)] = 10
    filter: dict[Annotated[str, Field(pattern=FIELD_NAME)], FieldValue] = {}


class SearchHitView(BaseModel):
    id: str
    score: float
    fields: dict[str, Any]


class SearchResult(BaseModel):
    hits: list[SearchHitView]


def field_of(loc: tuple[Any, ...]) -> str:
    """'body.documents.0.vector' -> 'documents[0].vector' for people."""
    parts = [p for p in loc if p != "body"]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


def fix_for(loc: tuple[Any, ...]) -> str | None:
    names = [p for p in loc if isinstance(p, str) and p in FIXES]
    return FIXES[names[-1]] if names else None


