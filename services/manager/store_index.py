"""The manager's store: the cluster records (`libs.common.store`) plus what only the manager
keeps beside them, the name index (one cluster per tenant and service name) and the answers
remembered for an Idempotency-Key."""

from __future__ import annotations

import json

from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from libs.common import subjects
from libs.common.kv import read_value
from libs.common.models import ClusterRecord
from libs.common.kv import open_bucket
from libs.common.store import ClusterStore, records_bucket


class AlreadyExists(Exception):
    """The key is taken: another cluster has this tenant and service name."""


class ManagerStore(ClusterStore):
    def __init__(self, records: KeyValue, names: KeyValue, idempotency: KeyValue):
        super().__init__(records)
        self._names = names
        self._idempotency = idempotency

    @classmethod
    async def open(cls, broker, replicas: int, idempotency_ttl_s: float | None = None) -> "ManagerStore":
        """Open (declaring if needed) the three buckets through a connected FastStream NatsBroker."""
        return cls(
            await records_bucket(broker, replicas),
            await open_bucket(broker, subjects.KV_CLUSTER_NAMES, replicas),
            await open_bucket(broker, subjects.KV_IDEMPOTENCY, replicas, ttl=idempotency_ttl_s),
        )

    async def create(self, record: ClusterRecord) -> None:
        """Reserve the tenant's service name, then write the record; undo the name on failure."""
        name_key = subjects.cluster_name_key(record.tenant_org_id, record.service_name)
        try:
            await self._names.create(name_key, record.id.encode())
        except KeyWrongLastSequenceError as exc:
            raise AlreadyExists(name_key) from exc
        try:
            await super().create(record)
        except BaseException:
            await self._names.delete(name_key)
            raise

    async def remove(self, record: ClusterRecord) -> None:
        """Forget a deleted cluster: its name becomes free again."""
        await self.release_name(record)
        await super().remove(record)

    async def release_name(self, record: ClusterRecord) -> None:
        """Free the cluster's service name, unless another cluster holds it by now (a deleted
        cluster kept for undelete gives its name up at once, and a new one may take it)."""
        key = subjects.cluster_name_key(record.tenant_org_id, record.service_name)
        if await read_value(self._names, key) in (None, record.id.encode()):
            await self._names.delete(key)

    async def reserve_name(self, record: ClusterRecord) -> None:
        """Take the service name back for an undeleted cluster; AlreadyExists if another has it."""
        key = subjects.cluster_name_key(record.tenant_org_id, record.service_name)
        if await read_value(self._names, key) == record.id.encode():
            return
        try:
            await self._names.create(key, record.id.encode())
        except KeyWrongLastSequenceError as exc:
            raise AlreadyExists(key) from exc

    async def remembered_answer(self, key: str) -> dict | None:
        value = await read_value(self._idempotency, key)
        return json.loads(value) if value else None

    async def remember_answer(self, key: str, answer: dict) -> None:
        await self._idempotency.put(key, json.dumps(answer).encode())
