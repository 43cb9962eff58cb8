"""The manager's composition root: the broker, its subscribers and publishers, the wiring built
once NATS is connected, the background loops, and the FastAPI app with its routes and middleware.
Nothing here decides anything; see the package docstring for who does."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI

from libs.common.service import add_metrics_route, build_broker, new_registry
from services.manager import handlers, wiring
from services.manager.drivers import build_driver
from services.manager.http import add_routes
from services.manager.http.errors import add_error_handlers
from services.manager.http.middleware import RequestContext
from services.manager.outbox import Outbox
from services.manager.settings import ManagerSettings


def create_app(settings: ManagerSettings) -> FastAPI:
    async def on_reconnect() -> None:
        deps: wiring.ManagerDeps | None = getattr(app.state, "deps", None)
        if deps is not None:  # NATS back before start-up finished: the store is not open yet
            deps.store.resync()

    broker = build_broker(settings, on_reconnect)
    outbox = Outbox(broker)  # publishers declared before start: the AsyncAPI document lists them
    handlers.subscribe(broker)
    driver = build_driver(settings)
    log = structlog.get_logger("manager")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await broker.connect()
        deps = await wiring.connect(settings, broker, driver, outbox)
        broker.context.set_global(handlers.CONTEXT_KEY, deps)  # before any event is handled
        app.state.deps = deps
        await broker.start()
        loops = [asyncio.create_task(loop) for loop in (
            deps.store.follow(), deps.provisioner.run_periodic(), deps.backups.run_periodic(), deps.activity.run(),
            deps.control.run_periodic(), deps.fleet.run_periodic(),
        )]
        log.info("manager started", api=f"http://{settings.api_host}:{settings.api_port}", nats=settings.nats_url)
        yield
        for loop in loops:
            loop.cancel()
        await deps.provisioner.stop()
        await deps.engines.close()
        await broker.stop()

    app = FastAPI(
        title="es-serverless",
        version="0.1.0",
        description="Search clusters (OpenSearch, Elasticsearch) as a multi-tenant serverless service.",
        lifespan=lifespan,
    )
    app.state.outbox = outbox  # the AsyncAPI route's, before and after start-up
    add_routes(app)
    add_metrics_route(app, new_registry())
    app.add_middleware(RequestContext, max_body_bytes=settings.max_body_bytes, audit=outbox.audit)
    add_error_handlers(app)
    return app
