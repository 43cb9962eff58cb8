"""What each tenant holds against its quotas: one KV entry per tenant listing its claims.

A claim is one cluster's share of the quotas (its nodes and storage). It is taken before the
cluster record is written and given back when the delete is requested. Every change of the entry
goes read -> pure decision -> update(last=revision), redone on a conflict, so neither two
concurrent requests nor two manager replicas can both take the last unit of a quota.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel, Field

from libs.common.models import ClusterRecord, TenantQuotas, TenantRecord, utcnow
from libs.common.quantities import parse_bytes
from libs.common.store import ClusterStore

GiB = 2**30
# a claim untouched this long has no request in flight: its record, read directly, is the truth
SETTLE_AFTER = timedelta(minutes=1)


@dataclass(frozen=True)
class QuotaExceeded:
    quota: str
    limit: int
    would_be: int

    @property
    def message(self) -> str:
        return f"quota {self.quota} is {self.limit}; this would make it {self.would_be}"


class QuotaRefused(Exception):
    def __init__(self, exceeded: QuotaExceeded):
        super().__init__(exceeded.message)
        self.exceeded = exceeded


class Claim(BaseModel):
    nodes: int
    storage_bytes: int
    changed_at: datetime = Field(default_factory=utcnow)
    # node counts on their way to the record, by change: held until that change has settled, so a
    # concurrent change of the same cluster can never leave the record above its claim
    resizing: dict[str, int] = Field(default_factory=dict)

    @property
    def held_nodes(self) -> int:
        return max([self.nodes, *self.resizing.values()])


class TenantClaims(BaseModel):
    claims: dict[str, Claim] = Field(default_factory=dict)  # cluster id -> claim


Claims = dict[str, Claim]


def claim_of(record: ClusterRecord, now: datetime) -> Claim:
    return Claim(nodes=record.spec.replicas, storage_bytes=parse_bytes(record.spec.storage), changed_at=now)


def measures(claims: Claims) -> dict[str, int]:
    return {
        "max_clusters": len(claims),
        "max_nodes": sum(c.held_nodes for c in claims.values()),
        "max_storage_gb": -(-sum(c.storage_bytes for c in claims.values()) // GiB),
    }


def check_claims(quotas: TenantQuotas, before: Claims, after: Claims) -> QuotaExceeded | None:
    """The first quota the change takes past its limit; a measure that does not grow never refuses,
    so scaling down works even when the operator lowered a quota below what the tenant has."""
    was, will = measures(before), measures(after)
    for quota, would_be in will.items():
        limit = getattr(quotas, quota)
        if would_be > limit and would_be > was[quota]:
            return QuotaExceeded(quota, limit, would_be)
    return None


def with_resize(claims: Claims, record: ClusterRecord, change: str, nodes: int, now: datetime) -> Claims:
    claim = claims.get(record.id) or claim_of(record, now)
    resized = claim.model_copy(update={"changed_at": now, "resizing": {**claim.resizing, change: nodes}})
    return {**claims, record.id: resized}


def settled(claims: Claims, cluster_id: str, record: ClusterRecord | None, now: datetime,
            finished: Iterable[str]) -> Claims:
    """The claim brought to what its record says now, the `finished` changes no longer held.

    A cluster without a record, or with its delete requested, claims nothing."""
    claim = claims.get(cluster_id)
    if claim is None:
        return claims
    rest = {k: v for k, v in claims.items() if k != cluster_id}
    if record is None or record.delete_requested:
        return rest
    done = set(finished)
    return {**rest, cluster_id: claim.model_copy(update={
        "nodes": record.spec.replicas, "changed_at": now,
        "resizing": {k: v for k, v in claim.resizing.items() if k not in done},
    })}


def untouched(claims: Claims, now: datetime) -> list[str]:
    """Claims to check against their records: a create or resize that died would hold them forever."""
    return [cluster_id for cluster_id, claim in claims.items() if now - claim.changed_at > SETTLE_AFTER]


class QuotaLedger:
    """The tenants' claims in KV. Claims are settled against cluster records read from KV, never the
    mirror, which may lag behind a write just made."""

    def __init__(self, kv: KeyValue, clusters: ClusterStore):
        self._kv = kv
        self._clusters = clusters

    @asynccontextmanager
    async def creating(self, tenant: TenantRecord, record: ClusterRecord):
        """Claim the new cluster's share (QuotaRefused if over quota); give it back if the body fails."""
        await self._claim(tenant, lambda claims, now: {**claims, record.id: claim_of(record, now)})
        try:
            yield
        except BaseException:
            await self.release(record.tenant_org_id, record.id)  # nothing half-made stays
            raise

    @asynccontextmanager
    async def resizing(self, tenant: TenantRecord, record: ClusterRecord, nodes: int):
        """Hold `nodes` for the cluster while the body writes its record (QuotaRefused if over quota),
        then settle the claim to what the record says."""
        change = uuid.uuid4().hex[:12]
        await self._claim(tenant, lambda claims, now: with_resize(claims, record, change, nodes, now))
        try:
            yield
        finally:
            await self._settle(record.tenant_org_id, record.id, change)

    async def release(self, tenant_org_id: str, cluster_id: str) -> None:
        while True:
            claims, revision = await self._read(tenant_org_id)
            if cluster_id not in claims:
                return
            if await self._write(tenant_org_id, {k: v for k, v in claims.items() if k != cluster_id}, revision):
                return

    async def _claim(self, tenant: TenantRecord, change: Callable[[Claims, datetime], Claims]) -> None:
        while True:
            claims, revision = await self._read(tenant.tenant_org_id)
            now = utcnow()
            refused = check_claims(tenant.quotas, claims, change(claims, now))
            if refused and (old := untouched(claims, now)):
                for cluster_id in old:
                    claims = settled(claims, cluster_id, await self._record(cluster_id), now,
                                     claims[cluster_id].resizing)
                refused = check_claims(tenant.quotas, claims, change(claims, now))
            if refused:
                raise QuotaRefused(refused)
            if await self._write(tenant.tenant_org_id, change(claims, now), revision):
                return

    async def _settle(self, tenant_org_id: str, cluster_id: str, change: str) -> None:
        while True:
            claims, revision = await self._read(tenant_org_id)
            # the record is read after the entry: a change that claims after this read bumps the
            # revision and makes this write redo, so no record write can slip under the claim
            after = settled(claims, cluster_id, await self._record(cluster_id), utcnow(), [change])
            if after == claims or await self._write(tenant_org_id, after, revision):
                return

    async def _record(self, cluster_id: str) -> ClusterRecord | None:
        found = await self._clusters.get(cluster_id)
        return found[0] if found else None

    async def _read(self, tenant_org_id: str) -> tuple[Claims, int | None]:
        try:
            entry = await self._kv.get(tenant_org_id)
        except KeyNotFoundError:
            entry = None
        if entry is None or not entry.value:
            # first claim of the tenant: count the clusters it had before claims were kept (those are
            # old enough for the mirror to hold them)
            now = utcnow()
            return {r.id: claim_of(r, now) for r in await self._clusters.read_all()
                    if r.tenant_org_id == tenant_org_id and not r.delete_requested}, None
        return TenantClaims.model_validate_json(entry.value).claims, entry.revision

    async def _write(self, tenant_org_id: str, claims: Claims, revision: int | None) -> bool:
        """False when another writer came first: read again and redo."""
        value = TenantClaims(claims=claims).model_dump_json().encode()
        try:
            if revision is None:
                await self._kv.create(tenant_org_id, value)
            else:
                await self._kv.update(tenant_org_id, value, last=revision)
        except KeyWrongLastSequenceError:
            return False
        return True
