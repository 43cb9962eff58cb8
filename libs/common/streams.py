"""JetStream streams: each one defined once here (name, subjects, retention, duplicate window),
declared only by the service that owns it, bound by its consumers; and read back by subject.

The definitions say `declare=False`: FastStream never declares a stream on its own when a
subscriber or publisher names it. The owner calls `declare_stream` at start-up; a consumer calls
`bind_stream`, which creates a missing stream from this same definition and otherwise leaves it
as its owner made it, so start-up order does not matter and nobody but the owner changes one.
Both make a stream with `ESS_NATS_REPLICAS` copies; the owner also moves an existing stream to
that count (one made on a single server, now on a cluster of three).
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime

from faststream.nats import JStream

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from libs.common import subjects


def _define(name: str, subject_list: list[str], max_age_s: float,
            duplicate_window_s: float = subjects.DUPLICATE_WINDOW_S) -> JStream:
    return JStream(name, subjects=list(subject_list), max_age=max_age_s, duplicate_window=duplicate_window_s,
                   storage=StorageType.FILE, declare=False)


# owner: the manager (desired state in, status out); the shard controller and the gateway publish
# plans, actions, node-count and wake requests into it
LIFECYCLE = _define(subjects.LIFECYCLE_STREAM, subjects.LIFECYCLE_SUBJECTS, subjects.LIFECYCLE_MAX_AGE_S)
# owner: reporting, its producer (retention from ESS_METRICS_MAX_AGE_S); the shard controller binds
METRICS = _define(subjects.METRICS_STREAM, subjects.METRICS_SUBJECTS, subjects.METRICS_MAX_AGE_S)
# owner: reporting, its producer; the manager reads it by subject
USAGE = _define(subjects.USAGE_STREAM, subjects.USAGE_SUBJECTS, subjects.USAGE_MAX_AGE_S,
                subjects.USAGE_DUPLICATE_WINDOW_S)
# owner: the gateway, its producer; the manager and reporting bind
ACTIVITY = _define(subjects.ACTIVITY_STREAM, subjects.ACTIVITY_SUBJECTS, subjects.ACTIVITY_MAX_AGE_S)
# owner: the manager (every mutating API call); it reads it back by subject
AUDIT = _define(subjects.AUDIT_STREAM, subjects.AUDIT_SUBJECTS, subjects.AUDIT_MAX_AGE_S)


def _config(stream: JStream, replicas: int, max_age_s: float | None = None) -> StreamConfig:
    config = dataclasses.replace(stream.config, subjects=list(stream.subjects), num_replicas=replicas)
    if max_age_s is not None:
        config.max_age = max_age_s
    return config


async def declare_stream(js, stream: JStream, replicas: int, max_age_s: float | None = None) -> None:
    """The owner, at start-up: create the stream, or bring an existing one in line with the
    definition (`max_age_s`: a retention the owner's settings tune; `replicas`: ESS_NATS_REPLICAS)."""
    config = _config(stream, replicas, max_age_s)
    try:
        await js.add_stream(config)
    except BadRequestError:  # it exists with other settings: the owner brings them in line
        await js.update_stream(config)
        await copies_current(js, stream.name, replicas)


async def copies_current(js, name: str, replicas: int, timeout_s: float = 60) -> None:
    """Until a stream moved to `replicas` copies has a leader and every copy caught up: a write
    before that can time out."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        cluster = (await js.stream_info(name)).cluster
        peers = (cluster.replicas or []) if cluster else []
        if replicas == 1 or (cluster and cluster.leader and len(peers) == replicas - 1
                             and all(p.current and not p.offline for p in peers)):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"stream {name}: {len(peers) + 1} of {replicas} copies current after {timeout_s} s")
        await asyncio.sleep(0.2)


async def bind_stream(js, stream: JStream, replicas: int) -> None:
    """A consumer, at start-up, before its durable consumer is made on the stream.

    A missing stream is created from the same definition rather than waited for: a consumer
    then starts whatever ran first, and its owner brings a tuned retention in line when it
    starts. An existing stream is never changed here: only its owner does that.
    """
    try:
        await js.stream_info(stream.name)
    except NotFoundError:
        try:
            await js.add_stream(_config(stream, replicas))
        except BadRequestError:  # the owner made it just now, with its own settings: kept
            pass


async def read_subject(js, stream: str, subject: str, since: datetime | None = None) -> list[Msg]:
    """Every message on `subject` (wildcards allowed), from `since` or the start, oldest first."""
    # no acks: a reader acks nothing, and with acks asked the server stops at max_ack_pending (1,000)
    config = ConsumerConfig(inactive_threshold=30.0, deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE)
    if since is not None:
        config.deliver_policy, config.opt_start_time = DeliverPolicy.BY_START_TIME, since.isoformat()
    try:
        subscription = await js.pull_subscribe(subject, stream=stream, config=config)
    except NotFoundError:
        return []  # nothing was ever recorded there
    messages: list[Msg] = []
    try:
        pending = (await subscription.consumer_info()).num_pending
        while pending > 0:
            for message in await subscription.fetch(min(pending, 256), timeout=5):
                messages.append(message)
                pending = message.metadata.num_pending
    finally:
        await subscription.unsubscribe()
    return messages
