"""Wiring of reporting: its handlers (`handlers.py`) on a broker, the metrics and usage streams
it owns, the clusters it polls (a KV watch; with several replicas, those whose lease it holds),
/metrics and the period sweeper."""

from __future__ import annotations

import asyncio
import socket

import structlog
from fastapi import FastAPI

from libs.common import streams, subjects
from libs.common.failures import NATS_FAILURES
from libs.common.kv import open_bucket
from libs.common.leases import Leases
from libs.common.service import build_broker, new_registry, service_app
from libs.common.store import ClusterStore
from services.reporting.exposition import FleetCollector, ServiceMetrics
from services.reporting.handlers import POLLER, publish_sample, publish_usage, router
from services.reporting.polling import Poller, UsageMeters
from services.reporting.settings import ReportingSettings


def create_app(settings: ReportingSettings) -> FastAPI:
    running: dict[str, object] = {}

    async def on_reconnect() -> None:
        if "store" in running:
            running["store"].resync()

    broker = build_broker(settings, on_reconnect)
    broker.include_router(router)
    registry = new_registry()
    metrics = ServiceMetrics(registry)
    log = structlog.get_logger("reporting")

    async def sweep(poller: Poller) -> None:
        while True:
            await asyncio.sleep(settings.poll_interval_s)
            try:
                await poller.close_stale_periods()
            except NATS_FAILURES:  # the meters are in KV: the next sweep closes them
                log.exception("closing stale usage periods failed; trying again")

    async def before_start() -> None:
        # connected, before the subscribers start: its streams declared (it owns metrics and
        # usage), the activity stream bound (the gateway's), and the handler's poller made
        await broker.connect()
        js = broker.connection.jetstream()
        copies = settings.nats_replicas
        await streams.declare_stream(js, streams.METRICS, copies, max_age_s=settings.metrics_max_age_s)
        await streams.declare_stream(js, streams.USAGE, copies)
        await streams.bind_stream(js, streams.ACTIVITY, copies)
        # a stable holder: reporting restarted in place takes its clusters back at once
        leases = Leases(await open_bucket(broker, subjects.KV_REPORTING_LEASES, copies, ttl=settings.lease_ttl_s),
                        f"{socket.gethostname()}:{settings.reporting_port}")
        poller = Poller(settings, publish_sample, publish_usage,
                        UsageMeters(await open_bucket(broker, subjects.KV_USAGE_METERS, copies)), metrics,
                        leases=leases)
        broker.context.set_global(POLLER, poller)
        registry.register(FleetCollector(poller.latest, poller.up, poller.tracked))
        running["poller"] = poller
        running["store"] = await ClusterStore.open(broker, copies)

    async def on_start() -> None:
        poller, store = running["poller"], running["store"]

        def on_change(cluster_id, record) -> None:
            poller.track(record) if record else poller.forget(cluster_id)

        running["tasks"] = [asyncio.create_task(store.follow(on_change)), asyncio.create_task(sweep(poller))]

    async def on_stop() -> None:
        for task in running.get("tasks", []):
            task.cancel()
        if "poller" in running:
            await running["poller"].stop()

    return service_app("reporting", broker, registry, on_start, on_stop, before_start=before_start)
