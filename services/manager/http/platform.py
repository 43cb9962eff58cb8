"""Platform routes without a key: liveness, readiness, and the AsyncAPI document."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

public = APIRouter()


@public.get("/health", response_class=PlainTextResponse, tags=["platform"])
async def health() -> str:
    return "ok"


@public.get("/ready", tags=["platform"])
async def ready(request: Request) -> JSONResponse:
    deps = getattr(request.app.state, "deps", None)  # none yet: still starting, not ready
    connected = deps is not None and deps.nats_connected()
    body = {"status": "ready" if connected else "not ready", "nats": "connected" if connected else "unreachable"}
    return JSONResponse(body, status_code=200 if connected else 503)


@public.get("/asyncapi.json", tags=["platform"], include_in_schema=False)
async def asyncapi(request: Request) -> Response:
    return Response(request.app.state.outbox.asyncapi_json(), media_type="application/json")
