"""What the shard controller keeps in KV: each cluster's latest plan and running operation
(so a restarted controller resumes it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from nats.js.kv import KeyValue
from pydantic import BaseModel

from libs.common.kv import read_model


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
