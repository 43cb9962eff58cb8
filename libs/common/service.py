"""The skeleton every background service shares: NATS connection plus /health and /ready."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager

import structlog
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from faststream.nats import NatsBroker

from libs.common.logging import configure_logging
from libs.common.settings import Settings


def build_broker(settings: Settings) -> NatsBroker:
    return NatsBroker(
        settings.nats_url, connect_timeout=settings.nats_connect_timeout_s,
        max_reconnect_attempts=-1, reconnect_time_wait=0.5, logger=None,
    )


def service_app(name: str, broker: NatsBroker, on_start: Callable[[], Awaitable[None]] | None = None) -> FastAPI:
    log = structlog.get_logger(name)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await broker.start()
        if on_start:
            await on_start()
        log.info(f"{name} started")
        yield
        await broker.stop()

    app = FastAPI(title=f"es-serverless {name}", lifespan=lifespan)

    @app.get("/health", response_class=PlainTextResponse)
    async def health() -> str:
        return "ok"

    @app.get("/ready")
    async def ready() -> JSONResponse:
        connected = bool(broker.connection and broker.connection.is_connected)
        return JSONResponse({"status": "ready" if connected else "not ready"}, status_code=200 if connected else 503)

    return app


def run_service(name: str, port_of: Callable[[Settings], int]) -> None:
    """Entry point for a `python -m services.<name>` that so far only connects and answers health."""
    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    app = service_app(name, build_broker(settings))
    uvicorn.run(app, host=settings.api_host, port=port_of(settings), log_config=None, access_log=False)
