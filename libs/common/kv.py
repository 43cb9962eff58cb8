"""Reading JetStream KV the same way everywhere: a missing or deleted key is None, no keys is []."""

from __future__ import annotations

from typing import TypeVar

from nats.js.errors import KeyNotFoundError, NoKeysError
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
    try:
        return await kv.keys()
    except NoKeysError:
        return []
