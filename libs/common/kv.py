"""Reading JetStream KV the same way everywhere: a missing or deleted key is None, no keys is [].

Key listings come from the bucket's stream state, never from nats-py's `KeyValue.keys()`: that
one is a watcher that can signal "no more keys" before the keys have arrived (under CPU load it
answered [] for a full bucket about once in a thousand calls), and a short listing made the
provisioner take live clusters for orphans and delete their data.
"""

from __future__ import annotations

from typing import TypeVar

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel

Model = TypeVar("Model", bound=BaseModel)


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
