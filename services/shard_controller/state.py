"""What the shard controller keeps in KV: each cluster's latest plan and running operation
(so a restarted controller resumes it).
"""

from __future__ import annotations

from nats.js.kv import KeyValue

from libs.common.kv import read_model
from libs.common.models import ControllerState


class ControllerStates:
    def __init__(self, kv: KeyValue):
        self._kv = kv

    async def get(self, cluster_id: str, tenant_org_id: str) -> ControllerState:
        found = await read_model(self._kv, cluster_id, ControllerState)
        return found or ControllerState(cluster_id=cluster_id, tenant_org_id=tenant_org_id)

    async def put(self, state: ControllerState) -> None:
        await self._kv.put(state.cluster_id, state.model_dump_json().encode())
