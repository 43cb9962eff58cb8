"""Per-cluster leases in a KV bucket whose entries expire: one service instance acts on a
cluster at a time (the provisioner of one manager replica, one shard controller).

A lease is held by renewing it with the entry revision; when its holder dies it lapses by the
bucket's TTL and the next instance to ask takes it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue


class Leases:
    def __init__(self, kv: KeyValue, holder: str | None = None):
        self._kv = kv
        self.holder = holder or uuid.uuid4().hex

    async def hold(self, cluster_id: str) -> bool:
        """Take or renew the lease; False while another instance holds it."""
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

    @asynccontextmanager
    async def kept(self, cluster_id: str, every_s: float) -> AsyncIterator[None]:
        """Renew a held lease every `every_s` while a long step runs, so it cannot lapse mid-step."""
        async def renew() -> None:
            while True:
                await asyncio.sleep(every_s)
                await self.hold(cluster_id)

        task = asyncio.create_task(renew())
        try:
            yield
        finally:
            task.cancel()
