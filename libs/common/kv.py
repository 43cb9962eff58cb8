"""Reading JetStream KV the same way everywhere: a missing or deleted key is None, no keys is [].

Key listings come from the bucket's stream state, never from nats-py's `KeyValue.keys()`: that
one is a watcher that can signal "no more keys" before the keys have arrived (under CPU load it
answered [] for a full bucket about once in a thousand calls), and a short listing made the
provisioner take live clusters for orphans and delete their data.

Every bucket is opened through `open_bucket`, with `ESS_NATS_REPLICAS` copies: a bucket made
earlier with another count (on a single server, before a move to a cluster of three) is moved
to it by the first service that opens it after the change.
"""

from __future__ import annotations

from typing import TypeVar

from nats.js.errors import BadRequestError, KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel

from libs.common.streams import copies_current

Model = TypeVar("Model", bound=BaseModel)


async def open_bucket(broker, bucket: str, replicas: int, **options) -> KeyValue:
    """A KV bucket through a connected FastStream NatsBroker, made if missing (`options`: history,
    ttl), with `replicas` copies."""
    try:
        return await broker.key_value(bucket, replicas=replicas, **options)
    except BadRequestError:  # it exists with another configuration: its copies, here
        js = broker.connection.jetstream()
        config = (await js.stream_info(f"KV_{bucket}")).config
        if config.num_replicas != replicas:
            config.num_replicas = replicas
            await js.update_stream(config)
            await copies_current(js, f"KV_{bucket}", replicas)
        return await broker.key_value(bucket, declare=False)


async def read_value(kv: KeyValue, key: str) -> bytes | None:
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:  # also a deleted key
        return None
    return entry.value or None


async def read_model(kv: KeyValue, key: str, model: type[Model]) -> Model | None:
    value = await read_value(kv, key)
    return model.model_validate_json(value) if value else None


async def all_keys(kv: KeyValue) -> list[str]:
    """Every key with a subject in the bucket's stream, deleted ones included (their marker is
    a message too): a superset to read back with `read_value`, which skips the deleted."""
    prefix = f"$KV.{kv._name}."
    info = await kv._js.stream_info(kv._stream, subjects_filter=f"{prefix}>")
    return sorted(subject[len(prefix):] for subject in (info.state.subjects or {}))
