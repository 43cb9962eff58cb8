"""What the shard controller keeps in KV: each cluster's latest plan and running operation
(so a restarted controller resumes it), and leases so one instance acts on a cluster at a time.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel

from libs.common.kv import read_model


class Operation(BaseModel):
    """A multi-step change in flight; each step is idempotent, so it can be redone after a crash."""

    kind: Literal["scale_out", "scale_in", "reshard"]
    phase: str
    nodes: int | None = None
    drain: list[str] = []
    alias: str | None = None
    source: str | None = None
    target: str | None = None
    task_id: str | None = None
    started_at: datetime


class ControllerState(BaseModel):
    cluster_id: str
    tenant_org_id: str
    plan: dict | None = None
    planned_at: datetime | None = None
    last_action_at: datetime | None = None
    operation: Operation | None = None


class ControllerStates:
    def __init__(self, kv: KeyValue):
        self._kv = kv

    async def get(self, cluster_id: str, tenant_org_id: str) -> ControllerState:
        found = await read_model(self._kv, cluster_id, ControllerState)
        return found or ControllerState(cluster_id=cluster_id, tenant_org_id=tenant_org_id)

    async def put(self, state: ControllerState) -> None:
        await self._kv.put(state.cluster_id, state.model_dump_json().encode())


class Leases:
    """A cluster's lease: held by renewing it; it lapses by the bucket's TTL when its holder dies."""

    def __init__(self, kv: KeyValue, holder: str | None = None):
        self._kv = kv
        self.holder = holder or uuid.uuid4().hex

    async def hold(self, cluster_id: str) -> bool:
        try:
            entry = await self._kv.get(cluster_id)
        except KeyNotFoundError:
            entry = None
        try:
            if entry is None or not entry.value:
                await self._kv.create(cluster_id, self.holder.encode())
                return True
            if entry.value.decode() != self.holder:
                return False
            await self._kv.update(cluster_id, self.holder.encode(), last=entry.revision)
            return True
        except KeyWrongLastSequenceError:
            return False  # another instance took or renewed it just now
