"""The skeleton every service shares: NATS connection, /health, /ready and /metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager

import structlog
import uvicorn
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from faststream.nats import NatsBroker
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from libs.common.settings import BindSection, NatsSection

Hook = Callable[[], Awaitable[None]]


def build_broker(settings: NatsSection, on_reconnect: Hook | None = None) -> NatsBroker:
    """The service's NATS connection; `on_reconnect` runs each time it is back after an outage."""
    return NatsBroker(
        settings.nats_servers, connect_timeout=settings.nats_connect_timeout_s,
        max_reconnect_attempts=-1, reconnect_time_wait=0.5, logger=None, reconnected_cb=on_reconnect,
        js_options={"timeout": settings.nats_timeout_s},
    )


def new_registry() -> CollectorRegistry:
    """A registry per service, with the process's own CPU and memory figures."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


def add_metrics_route(app: FastAPI, registry: CollectorRegistry) -> None:
    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def service_app(
    name: str, broker: NatsBroker, registry: CollectorRegistry,
    on_start: Hook | None = None, on_stop: Hook | None = None, before_start: Hook | None = None,
) -> FastAPI:
    log = structlog.get_logger(name)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if before_start:  # runs connected, before the subscribers start
            await before_start()
        await broker.start()
        if on_start:
            await on_start()
        log.info(f"{name} started")
        yield
        if on_stop:
            await on_stop()
        await broker.stop()

    app = FastAPI(title=f"es-serverless {name}", lifespan=lifespan)

    @app.get("/health", response_class=PlainTextResponse)
    async def health() -> str:
        return "ok"

    @app.get("/ready")
    async def ready() -> JSONResponse:
        connected = bool(broker.connection and broker.connection.is_connected)
        return JSONResponse({"status": "ready" if connected else "not ready"}, status_code=200 if connected else 503)

    add_metrics_route(app, registry)
    return app


def serve(app: FastAPI, settings: BindSection, port: int) -> None:
    uvicorn.run(app, host=settings.api_host, port=port, log_config=None, access_log=False)
