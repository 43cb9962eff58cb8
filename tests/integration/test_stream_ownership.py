"""Streams on a real nats-server: a consumer that starts first creates the stream from the one
definition, never changes an existing one; its owner brings the stream in line with its settings."""

from __future__ import annotations

import nats as nats_client
from faststream.nats import JStream

from libs.common import streams

HOUR = 3600.0


def definition(name: str) -> JStream:
    return JStream(name, subjects=[f"{name.lower()}.>"], max_age=HOUR, duplicate_window=120, declare=False)


async def test_consumer_first_then_owner_with_its_own_retention(nats, settings):
    connection = await nats_client.connect(settings.nats_url)
    js = connection.jetstream()
    stream = definition("TEST_OWNERSHIP")
    try:
        await streams.bind_stream(js, stream, 1)  # the consumer started first: made from the definition
        made = (await js.stream_info(stream.name)).config
        assert (made.subjects, made.max_age, made.duplicate_window) == (["test_ownership.>"], HOUR, 120)

        await streams.declare_stream(js, stream, 1, max_age_s=2 * HOUR)  # the owner, with its setting
        await streams.bind_stream(js, stream, 1)  # a consumer restarting leaves the owner's setting be
        assert (await js.stream_info(stream.name)).config.max_age == 2 * HOUR

        await streams.declare_stream(js, stream, 1)  # the owner again, without it: the definition
        assert (await js.stream_info(stream.name)).config.max_age == HOUR
    finally:
        await js.delete_stream(stream.name)
        await connection.close()
