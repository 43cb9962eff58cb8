"""Tenant records in KV, with their quotas; what a tenant holds against them is in quotas.py."""

from __future__ import annotations

from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from libs.common.models import TenantRecord
from libs.common.kv import all_keys, read_model


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
