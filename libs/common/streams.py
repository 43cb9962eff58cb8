"""JetStream streams: declared idempotently with their retention, and read back by subject."""

from __future__ import annotations

from datetime import datetime

from faststream.nats import JStream

from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from libs.common import subjects


async def ensure_stream(js, name: str, subjects: list[str], max_age_s: float, duplicate_window_s: float = 120) -> None:
    config = StreamConfig(
        name=name, subjects=subjects, max_age=max_age_s, duplicate_window=duplicate_window_s,
        storage=StorageType.FILE,
    )
    try:
        await js.add_stream(config)
    except BadRequestError:  # it exists with other settings: bring them in line
        await js.update_stream(config)


async def read_subject(js, stream: str, subject: str, since: datetime | None = None) -> list[Msg]:
    """Every message on `subject` (wildcards allowed), from `since` or the start, oldest first."""
    config = ConsumerConfig(inactive_threshold=30.0, deliver_policy=DeliverPolicy.ALL)
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


# the activity stream, defined once: the gateway publishes into it, the manager and reporting
# consume it; whichever starts first declares it, with this one configuration
ACTIVITY = JStream(subjects.ACTIVITY_STREAM, subjects=subjects.ACTIVITY_SUBJECTS,
                   max_age=subjects.ACTIVITY_MAX_AGE_S, duplicate_window=120)
