"""Cluster records in JetStream KV, with optimistic concurrency by entry revision.

Also the name index (one cluster per tenant and service name) and the idempotency answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from libs.common import subjects
from libs.common.kv import all_keys, read_value
from libs.common.models import ClusterRecord, utcnow


class AlreadyExists(Exception):
    """The key is taken: another cluster has this tenant and service name."""


class RecordGone(Exception):
    """The record was deleted while we worked on it."""


class ClusterStore:
    def __init__(self, records: KeyValue, names: KeyValue, idempotency: KeyValue):
        self._records = records
        self._names = names
        self._idempotency = idempotency
        # an in-memory mirror of the records bucket, fed by a KV watch, for the API's reads
        self._mirror: dict[str, tuple[ClusterRecord, int]] = {}
        self._mirror_ready = False
        self._watching: asyncio.Task | None = None

    @classmethod
    async def open(cls, broker, idempotency_ttl_s: float) -> "ClusterStore":
        """Open (declaring if needed) the buckets through a connected FastStream NatsBroker."""
        return cls(
            await broker.key_value(subjects.KV_CLUSTERS, history=5),
            await broker.key_value(subjects.KV_CLUSTER_NAMES),
            await broker.key_value(subjects.KV_IDEMPOTENCY, ttl=idempotency_ttl_s),
        )

    async def get(self, cluster_id: str) -> tuple[ClusterRecord, int] | None:
        try:
            entry = await self._records.get(cluster_id)
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        return ClusterRecord.model_validate_json(entry.value), entry.revision

    async def follow(self, on_change: Callable[[str, ClusterRecord | None], None] | None = None) -> None:
        """Keep the mirror current, telling `on_change` of each write (None: deleted).

        Runs until cancelled, re-watching after a NATS outage or a `resync`.
        """
        while True:
            self._watching = asyncio.create_task(self._watch(on_change))
            try:
                await self._watching
            except asyncio.CancelledError:
                if asyncio.current_task().cancelling():
                    self._watching.cancel()
                    raise
                # only the watch was cancelled (resync): watch anew
            except Exception:
                self._mirror_ready = False  # reads go to KV until the watch is back
                await asyncio.sleep(0.5)

    def resync(self) -> None:
        """NATS is back: read from KV until a new watch has caught up. The old watch would notice
        the outage only after missed heartbeats, serving a stale mirror for about 17 s."""
        self._mirror_ready = False
        if self._watching is not None and not self._watching.done():
            self._watching.cancel()

    async def _watch(self, on_change) -> None:
        watcher = await self._records.watchall()
        try:
            async for entry in watcher:
                if entry is None:
                    await self._fill_in(on_change)
                    self._mirror_ready = True
                elif entry.operation in ("DEL", "PURGE") or not entry.value:
                    self._mirror.pop(entry.key, None)
                    if on_change:
                        on_change(entry.key, None)
                else:
                    record = ClusterRecord.model_validate_json(entry.value)
                    self._remember(record, entry.revision)
                    if on_change:
                        on_change(record.id, record)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()

    async def _fill_in(self, on_change) -> None:
        """The watch's "initial values are in" can come before the values (the race that made
        key listings short): read directly what the mirror lacks before serving from it."""
        for key in await all_keys(self._records):
            if key not in self._mirror and (found := await self.get(key)):
                self._remember(*found)
                if on_change:
                    on_change(key, found[0])

    def _remember(self, record: ClusterRecord, revision: int) -> None:
        known = self._mirror.get(record.id)
        if known is None or known[1] < revision:  # a late older entry never wins
            self._mirror[record.id] = (record, revision)

    async def read(self, cluster_id: str) -> ClusterRecord | None:
        """A record for display: from the mirror when it is current, else from KV."""
        if self._mirror_ready:
            found = self._mirror.get(cluster_id)
            return found[0] if found else None
        found = await self.get(cluster_id)
        return found[0] if found else None

    async def read_all(self) -> list[ClusterRecord]:
        if self._mirror_ready:
            return [record for record, _ in self._mirror.values()]
        return await self.list()

    async def list(self) -> list[ClusterRecord]:
        found = [await self.get(key) for key in await all_keys(self._records)]
        return [record for record, _ in filter(None, found)]

    async def create(self, record: ClusterRecord) -> None:
        """Reserve the tenant's service name, then write the record; undo the name on failure."""
        name_key = subjects.cluster_name_key(record.tenant_org_id, record.service_name)
        try:
            await self._names.create(name_key, record.id.encode())
        except KeyWrongLastSequenceError as exc:
            raise AlreadyExists(name_key) from exc
        try:
            revision = await self._records.create(record.id, record.model_dump_json().encode())
        except BaseException:
            await self._names.delete(name_key)
            raise
        self._remember(record, revision)  # read-your-writes before the watch catches up

    async def mutate(
        self, cluster_id: str, change: Callable[[ClusterRecord], ClusterRecord | None]
    ) -> ClusterRecord | None:
        """Read, apply `change`, write back; on a revision conflict read again and redo.

        `change` returns None to leave the record alone.
        """
        while True:
            found = await self.get(cluster_id)
            if found is None:
                raise RecordGone(cluster_id)
            record, revision = found
            updated = change(record.model_copy(deep=True))
            if updated is None:
                return record
            updated.updated_at = utcnow()
            try:
                written = await self._records.update(cluster_id, updated.model_dump_json().encode(), last=revision)
                self._remember(updated, written)
                return updated
            except KeyWrongLastSequenceError:
                continue

    async def remove(self, record: ClusterRecord) -> None:
        """Forget a deleted cluster: its name becomes free again."""
        await self.release_name(record)
        await self._records.delete(record.id)
        self._mirror.pop(record.id, None)

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
