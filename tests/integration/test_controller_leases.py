"""Two shard controller instances never act on one cluster at once: the lease in KV."""

from __future__ import annotations

import asyncio

from libs.common.leases import Leases

TTL_S = 2.0


async def test_one_holder_at_a_time_and_a_dead_holder_lapses(nats, settings):
    import nats as nats_client

    connection = await nats_client.connect(settings.nats_url)
    try:
        js = connection.jetstream()
        kv = await js.create_key_value(bucket="test_leases", ttl=TTL_S)
        first, second = Leases(kv, "first"), Leases(kv, "second")

        assert await first.hold("c1")
        assert not await second.hold("c1")  # held by the first
        assert await second.hold("c2")  # other clusters are free
        assert await first.hold("c1")  # renewing keeps it

        await asyncio.sleep(TTL_S + 1)  # the first instance died: no renewal
        assert await second.hold("c1")
        assert not await first.hold("c1")
        await js.delete_key_value("test_leases")
    finally:
        await connection.close()
