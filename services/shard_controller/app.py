"""Wiring of the shard controller: its handlers (`handlers.py`) on a broker with this instance's
own consumer of the metrics, the metrics stream bound, its KV state, leases and the cluster mirror."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from nats.js.errors import NotFoundError

from libs.common import streams, subjects
from libs.common.kv import open_bucket
from libs.common.leases import Leases
from libs.common.service import build_broker, new_registry, service_app
from libs.common.store import ClusterStore
from services.shard_controller.controller import ShardController
from services.shard_controller.settings import ShardControllerSettings
from services.shard_controller.handlers import CONTROLLER, router, sample_router
from services.shard_controller.state import ControllerStates


def create_app(settings: ShardControllerSettings):
    running: dict[str, object] = {}

    async def on_reconnect() -> None:
        if "store" in running:
            running["store"].resync()

    broker = build_broker(settings, on_reconnect)
    # a stable name: an instance restarted in place takes its consumer and its clusters back at once
    instance = f"{socket.gethostname()}:{settings.shard_controller_port}"
    broker.include_router(router)
    broker.include_router(sample_router(instance))

    async def before_start() -> None:
        # connected, before the subscribers start: the durable consumer needs the metrics stream
        # (reporting's, bound here whichever started first) and the handler its controller
        await broker.connect()
        copies = settings.nats_replicas
        js = broker.connection.jetstream()
        await streams.bind_stream(js, streams.METRICS, copies)
        with contextlib.suppress(NotFoundError):  # the consumer all instances once shared: none reads it now
            await js.delete_consumer(streams.METRICS.name, subjects.CONTROLLER_DURABLE)
        store = running["store"] = await ClusterStore.open(broker, copies)
        broker.context.set_global(CONTROLLER, ShardController(
            settings,  # its policy: the settings are a ShardPolicySection
            ControllerStates(await open_bucket(broker, subjects.KV_SHARD_PLANS, copies)),
            Leases(await open_bucket(broker, subjects.KV_CONTROLLER_LEASES, copies, ttl=settings.lease_ttl_s), instance),
            store.read,
        ))
        running["mirror"] = asyncio.create_task(store.follow())

    async def on_stop() -> None:
        if "mirror" in running:
            running["mirror"].cancel()

    return service_app("shard-controller", broker, new_registry(), on_stop=on_stop, before_start=before_start)
