"""Tenants and their quotas: records in KV, and the pure check of a change against them."""

from __future__ import annotations

from dataclasses import dataclass

from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from libs.common.models import ClusterRecord, TenantRecord
from libs.common.kv import all_keys, read_model
from libs.common.quantities import parse_bytes

GiB = 2**30


@dataclass(frozen=True)
class QuotaExceeded:
    quota: str
    limit: int
    would_be: int

    @property
    def message(self) -> str:
        return f"quota {self.quota} is {self.limit}; this would make it {self.would_be}"


def check_quotas(tenant: TenantRecord, clusters: list[ClusterRecord], replacing: str | None,
                 replicas: int, storage: str) -> QuotaExceeded | None:
    """Would the tenant's clusters, with one added (or `replacing` changed), stay within quota?"""
    others = [c for c in clusters if c.id != replacing and not c.delete_requested]
    quotas = tenant.quotas
    count = len(others) + 1
    if count > quotas.max_clusters:
        return QuotaExceeded("max_clusters", quotas.max_clusters, count)
    nodes = sum(c.spec.replicas for c in others) + replicas
    if nodes > quotas.max_nodes:
        return QuotaExceeded("max_nodes", quotas.max_nodes, nodes)
    storage_gb = -(-(sum(parse_bytes(c.spec.storage) for c in others) + parse_bytes(storage)) // GiB)
    if storage_gb > quotas.max_storage_gb:
        return QuotaExceeded("max_storage_gb", quotas.max_storage_gb, storage_gb)
    return None


class Tenants:
    def __init__(self, kv: KeyValue):
        self._kv = kv

    async def get(self, tenant_org_id: str) -> TenantRecord | None:
        return await read_model(self._kv, tenant_org_id, TenantRecord)

    async def create(self, tenant: TenantRecord) -> bool:
        """False when it exists already."""
        try:
            await self._kv.create(tenant.tenant_org_id, tenant.model_dump_json().encode())
        except KeyWrongLastSequenceError:
            return False
        return True

    async def put(self, tenant: TenantRecord) -> None:
        await self._kv.put(tenant.tenant_org_id, tenant.model_dump_json().encode())

    async def ensure(self, tenant_org_id: str) -> TenantRecord:
        """The tenant, made with default quotas when the operator names a new one."""
        found = await self.get(tenant_org_id)
        if found:
            return found
        await self.create(TenantRecord(tenant_org_id=tenant_org_id))
        return await self.get(tenant_org_id)

    async def all(self) -> list[TenantRecord]:
        return [t for t in [await self.get(k) for k in await all_keys(self._kv)] if t]
