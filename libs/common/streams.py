"""Declaring JetStream streams idempotently, with the platform's retention per stream."""

from __future__ import annotations

from nats.js.api import StorageType, StreamConfig
from nats.js.errors import BadRequestError


async def ensure_stream(js, name: str, subjects: list[str], max_age_s: float, duplicate_window_s: float = 120) -> None:
    config = StreamConfig(
        name=name, subjects=subjects, max_age=max_age_s, duplicate_window=duplicate_window_s,
        storage=StorageType.FILE,
    )
    try:
        await js.add_stream(config)
    except BadRequestError:  # it exists with other settings: bring them in line
        await js.update_stream(config)
