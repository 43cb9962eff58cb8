"""Key listings read the bucket's stream state: every key, every time (nats-py's watcher-based
`keys()` once answered [] for a full bucket under load, and a live cluster's data was deleted)."""

from __future__ import annotations

import asyncio

import nats as nats_client

from libs.common.kv import all_keys, read_value


async def test_every_key_is_listed_in_every_one_of_many_concurrent_listings(nats, settings):
    connection = await nats_client.connect(settings.nats_url)
    try:
        js = connection.jetstream()
        kv = await js.create_key_value(bucket="test_listing", history=5)
        for i in range(20):
            await kv.put(f"c{i:02d}", b"record")
        await kv.delete("c19")  # a deleted key's marker is listed; reading it back says gone
        listings = await asyncio.gather(*(all_keys(kv) for _ in range(200)))
        assert all(listing == [f"c{i:02d}" for i in range(20)] for listing in listings)
        assert await read_value(kv, "c19") is None and await read_value(kv, "c00") == b"record"
        await js.delete_key_value("test_listing")
    finally:
        await connection.close()


async def test_a_deleted_record_is_told_from_one_never_written(nats, settings):
    """What the orphan sweep asks before it removes data: only a record this store deleted."""
    from libs.common.store import ClusterStore

    connection = await nats_client.connect(settings.nats_url)
    try:
        js = connection.jetstream()
        kv = await js.create_key_value(bucket="test_forgotten", history=5)
        store = ClusterStore(kv)
        await kv.put("c-deleted", b"{}")
        await kv.delete("c-deleted")
        await kv.put("c-live", b"{}")
        assert await store.forgotten("c-deleted")
        assert not await store.forgotten("c-never")  # as after NATS lost its data
        assert not await store.forgotten("c-live")
        await js.delete_key_value("test_forgotten")
    finally:
        await connection.close()


async def test_a_stream_is_read_back_whole_past_a_consumers_ack_limit(nats, settings):
    """The audit trail and the control-plane backup read every message: past 1,000 a reader that
    asked for acks and sent none was stopped by the server, and the backup answered 503."""
    from nats.js.api import StreamConfig

    from libs.common.streams import read_subject

    connection = await nats_client.connect(settings.nats_url)
    try:
        js = connection.jetstream()
        await js.add_stream(StreamConfig(name="TEST_LONG", subjects=["test.long.>"]))
        for i in range(1500):
            await js.publish(f"test.long.{i % 3}", str(i).encode())
        messages = await read_subject(js, "TEST_LONG", "test.long.>")
        assert [int(m.data) for m in messages] == list(range(1500))
        await js.delete_stream("TEST_LONG")
    finally:
        await connection.close()
