"""Cluster records in JetStream KV, the contract every service reads: optimistic concurrency
by entry revision, and an in-memory mirror fed by a KV watch for fast reads.

What only the manager keeps beside the records (the name index, one cluster per tenant and
service name, and the idempotency answers) is in `services/manager/store_index.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from libs.common import subjects
from libs.common.failures import KNOWN_STATE_WAIT_S, NATS_FAILURES
from libs.common.kv import all_keys, open_bucket
from libs.common.models import ClusterRecord, utcnow

log = structlog.get_logger("store")
LANDED_WAIT_S = 10.0  # reading back an unanswered write: through a leader election, not longer
READ_PATIENCE_S = 8.0  # a record read asked again this long: a leader election, not an outage


class RecordGone(Exception):
    """The record was deleted while we worked on it."""


class ClusterStore:
    def __init__(self, records: KeyValue):
        self._records = records
        # an in-memory mirror of the records bucket, fed by a KV watch, for the API's reads
        self._mirror: dict[str, tuple[ClusterRecord, int]] = {}
        self._mirror_ready = False
        self._watching: asyncio.Task | None = None

    @classmethod
    async def open(cls, broker, replicas: int) -> "ClusterStore":
        """Open (declaring if needed) the records bucket through a connected FastStream NatsBroker."""
        return cls(await records_bucket(broker, replicas))

    async def get(self, cluster_id: str) -> tuple[ClusterRecord, int] | None:
        """The record and its revision, read from KV. A read is asked again when the store does not
        answer at once (a request lost with a dying server's connection, a leader being elected),
        for up to READ_PATIENCE_S, so a NATS server's death is a pause for the caller."""
        deadline = asyncio.get_running_loop().time() + READ_PATIENCE_S
        while True:
            try:
                entry = await asyncio.wait_for(self._records.get(cluster_id), KNOWN_STATE_WAIT_S)
                break
            except KeyNotFoundError:
                return None
            except NATS_FAILURES:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.2)
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
            except Exception as exc:  # NATS away, or a bad entry: never leave the mirror stale
                if self._mirror_ready:  # once per outage, not every half second of it
                    log.warning("cluster watch lost; reading from KV until it is back", error=type(exc).__name__)
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
        if cluster_id not in self._mirror:
            found = await self.get(cluster_id)
            return found[0] if found else None
        try:
            found = await asyncio.wait_for(self.get(cluster_id), KNOWN_STATE_WAIT_S)
        except NATS_FAILURES:  # the store not answering (a leader election): the record last seen
            return self._mirror[cluster_id][0]
        return found[0] if found else None

    async def read_all(self) -> list[ClusterRecord]:
        if self._mirror_ready:
            return [record for record, _ in self._mirror.values()]
        return await self.list()

    async def list(self) -> list[ClusterRecord]:
        found = [await self.get(key) for key in await all_keys(self._records)]
        return [record for record, _ in filter(None, found)]

    async def create(self, record: ClusterRecord) -> None:
        """Write a new record (its id must be new)."""
        revision = await self._records.create(record.id, record.model_dump_json().encode())
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
            value = updated.model_dump_json().encode()
            try:
                written = await self._records.update(cluster_id, value, last=revision)
            except KeyWrongLastSequenceError:
                continue
            except NATS_FAILURES:
                # no answer (the server holding the connection died): read back whether it was
                # written (this exact value: its updated_at is new); if not, read and change again
                if await self._landed(cluster_id, value):
                    return updated
                continue
            self._remember(updated, written)
            return updated

    async def _landed(self, cluster_id: str, value: bytes) -> bool:
        deadline = asyncio.get_running_loop().time() + LANDED_WAIT_S
        while True:
            try:
                entry = await self._records.get(cluster_id)
                if entry.value == value:
                    self._remember(ClusterRecord.model_validate_json(value), entry.revision)
                return entry.value == value
            except KeyNotFoundError:
                return False
            except NATS_FAILURES:
                if asyncio.get_running_loop().time() > deadline:
                    return False
                await asyncio.sleep(0.2)

    async def forgotten(self, cluster_id: str) -> bool:
        """Whether this store once held the cluster's record and deleted it (its delete marker is
        the latest entry): unlike a key never seen, as after NATS lost its data."""
        try:
            await self._records.get(cluster_id)
        except KeyNotFoundError as exc:  # nats-py raises it for a deleted key too, with the marker
            return exc.entry is not None
        return False

    async def remove(self, record: ClusterRecord) -> None:
        """Forget a deleted cluster's record."""
        await self._records.delete(record.id)
        self._mirror.pop(record.id, None)


async def records_bucket(broker, replicas: int) -> KeyValue:
    return await open_bucket(broker, subjects.KV_CLUSTERS, replicas, history=5)
