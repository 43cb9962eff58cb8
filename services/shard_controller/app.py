"""Wiring of the shard controller: the metrics it consumes, its KV state, leases, the manager."""

from __future__ import annotations

import asyncio

from faststream import AckPolicy
from faststream.nats import JStream, PullSub
from nats.js.api import ConsumerConfig, DeliverPolicy

from libs.common import subjects
from libs.common.events import ClusterScaleRequested, Event, MetricsSample, ShardActionTaken, ShardPlanChanged
from libs.common.leases import Leases
from libs.common.service import build_broker, new_registry, service_app
from libs.common.store import ClusterStore
from libs.common.streams import ensure_stream
from services.shard_controller.controller import ShardController
from services.shard_controller.settings import ShardControllerSettings
from services.shard_controller.state import ControllerStates

LIFECYCLE = JStream(subjects.LIFECYCLE_STREAM, declare=False)


def create_app(settings: ShardControllerSettings):
    running: dict[str, object] = {}

    async def on_reconnect() -> None:
        if "store" in running:
            running["store"].resync()

    broker = build_broker(settings, on_reconnect)
    for subject, schema, title in ((subjects.cluster_plan("*", "*"), ShardPlanChanged, "shard plans"),
                                   (subjects.cluster_action("*", "*"), ShardActionTaken, "shard actions"),
                                   (subjects.SCALE_ALL, ClusterScaleRequested, "node count requests")):
        broker.publisher(subject, stream=LIFECYCLE, schema=schema, title=title)

    async def publish(event: Event, subject: str) -> None:
        await broker.publish(event, subject, stream=subjects.LIFECYCLE_STREAM,
                             headers={"Nats-Msg-Id": event.event_id})

    @broker.subscriber(
        subjects.METRICS_ALL, stream=JStream(subjects.METRICS_STREAM, declare=False),
        durable=subjects.CONTROLLER_DURABLE, pull_sub=PullSub(batch_size=32, timeout=1.0),
        config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW), ack_policy=AckPolicy.ACK,
        title="cluster metrics", description="Samples the shard controller plans from.",
    )
    async def on_sample(sample: MetricsSample) -> None:
        await running["controller"].on_sample(sample)

    async def before_start() -> None:
        # the metrics stream must exist before the durable consumer is made on it
        await broker.connect()
        js = broker.connection.jetstream()
        await ensure_stream(js, subjects.METRICS_STREAM, subjects.METRICS_SUBJECTS, settings.metrics_max_age_s)
        store = running["store"] = await ClusterStore.open(broker, settings.idempotency_ttl_s)
        running["controller"] = ShardController(
            settings,  # its policy: the settings are a ShardPolicySection
            ControllerStates(await broker.key_value(subjects.KV_SHARD_PLANS)),
            Leases(await broker.key_value(subjects.KV_CONTROLLER_LEASES, ttl=settings.lease_ttl_s)),
            publish, store.read,
        )
        running["mirror"] = asyncio.create_task(store.follow())

    async def on_stop() -> None:
        if "mirror" in running:
            running["mirror"].cancel()

    return service_app("shard-controller", broker, new_registry(), on_stop=on_stop, before_start=before_start)
