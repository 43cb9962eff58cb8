"""The manager's own clients of tenant engines (vector routes, backups), one per cluster and
endpoint, kept open between calls and dropped when the credentials change."""

from __future__ import annotations

import asyncio

from libs.common.engines import SearchEngine, connect_engine
from libs.common.models import ClusterRecord


class EngineClients:
    def __init__(self) -> None:
        self._engines: dict[tuple[str, str], SearchEngine] = {}

    def engine_for(self, record: ClusterRecord) -> SearchEngine:
        key = (record.id, record.endpoint or "")
        if key not in self._engines:
            creds = record.credentials
            self._engines[key] = connect_engine(
                record.spec.engine, record.endpoint, creds.username if creds else None, creds.password if creds else None
            )
        return self._engines[key]

    def forget(self, cluster_id: str) -> None:
        """Drop a cached engine client (its credentials changed); the next call connects anew."""
        for key in [k for k in self._engines if k[0] == cluster_id]:
            asyncio.create_task(self._engines.pop(key).close())

    async def close(self) -> None:
        for engine in self._engines.values():
            await engine.close()
        self._engines.clear()
