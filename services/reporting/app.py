"""Wiring of reporting: the clusters it polls (a KV watch), streams, /metrics, the sweeper."""

from __future__ import annotations

import asyncio

import structlog
from fastapi import FastAPI
from faststream import AckPolicy
from faststream.nats import JStream, PullSub

from libs.common import subjects
from libs.common.events import ClusterActivity, Event, MetricsSample, UsageRecord
from libs.common.service import build_broker, new_registry, service_app
from libs.common.store import ClusterStore
from libs.common.streams import ACTIVITY, ensure_stream
from services.reporting.exposition import FleetCollector, ServiceMetrics
from services.reporting.polling import Poller, UsageMeters
from services.reporting.settings import ReportingSettings


def create_app(settings: ReportingSettings) -> FastAPI:
    running: dict[str, object] = {}

    async def on_reconnect() -> None:
        if "store" in running:
            running["store"].resync()

    broker = build_broker(settings, on_reconnect)
    registry = new_registry()
    metrics = ServiceMetrics(registry)
    log = structlog.get_logger("reporting")
    # declared for the AsyncAPI document; the streams themselves are ensured at start
    broker.publisher(subjects.METRICS_ALL, stream=JStream(subjects.METRICS_STREAM, declare=False),
                     schema=MetricsSample, title="cluster metrics", description="One poll of one tenant cluster.")
    broker.publisher(subjects.USAGE_ALL, stream=JStream(subjects.USAGE_STREAM, declare=False), schema=UsageRecord,
                     title="usage records", description="What one cluster used in one metering period.")

    async def publish(event: Event, subject: str, message_id: str | None) -> None:
        stream = subjects.USAGE_STREAM if isinstance(event, UsageRecord) else subjects.METRICS_STREAM
        headers = {"Nats-Msg-Id": message_id} if message_id else None
        await broker.publish(event, subject, stream=stream, headers=headers)

    @broker.subscriber(
        subjects.ACTIVITY_ALL, stream=ACTIVITY, durable=subjects.REPORTING_ACTIVITY_DURABLE,
        pull_sub=PullSub(batch_size=64, timeout=1.0), ack_policy=AckPolicy.NACK_ON_ERROR,
        title="cluster activity", description="A gateway's request and byte counts, metered per period.",
    )
    async def on_activity(event: ClusterActivity) -> None:
        await running["poller"].add_activity(event)  # before start-up is done: a KeyError, redelivered

    async def sweep(poller: Poller) -> None:
        while True:
            await asyncio.sleep(settings.poll_interval_s)
            try:
                await poller.close_stale_periods()
            except Exception:
                log.exception("closing stale usage periods failed; trying again")

    async def on_start() -> None:
        js = broker.connection.jetstream()
        await ensure_stream(js, subjects.METRICS_STREAM, subjects.METRICS_SUBJECTS, settings.metrics_max_age_s)
        await ensure_stream(js, subjects.USAGE_STREAM, subjects.USAGE_SUBJECTS, subjects.USAGE_MAX_AGE_S,
                            subjects.USAGE_DUPLICATE_WINDOW_S)
        poller = Poller(settings, publish, UsageMeters(await broker.key_value(subjects.KV_USAGE_METERS)), metrics)
        registry.register(FleetCollector(poller.latest, poller.up, poller.tracked))
        store = await ClusterStore.open(broker, settings.idempotency_ttl_s)

        def on_change(cluster_id, record) -> None:
            poller.track(record) if record else poller.forget(cluster_id)

        running.update(poller=poller, store=store, tasks=[asyncio.create_task(store.follow(on_change)),
                                             asyncio.create_task(sweep(poller))])

    async def on_stop() -> None:
        for task in running.get("tasks", []):
            task.cancel()
        if "poller" in running:
            await running["poller"].stop()

    return service_app("reporting", broker, registry, on_start, on_stop)
