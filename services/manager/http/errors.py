"""Every error answer is JSON that names the field and the fix."""

from __future__ import annotations

import traceback

import structlog
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from libs.common.failures import NATS_FAILURES
from services.manager.schemas import field_of, fix_for

STORE_RETRY_AFTER_S = 2
log = structlog.get_logger("api")


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def problem(request: Request, exc: HTTPException) -> JSONResponse:
        body = exc.detail if isinstance(exc.detail, dict) else {"error": "http_error", "message": str(exc.detail)}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    async def store_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # NATS away, or a leader election longer than ESS_NATS_TIMEOUT_S: a retryable answer
        # that says so, never a bare 500
        ours = [f for f in traceback.extract_tb(exc.__traceback__) if "/services/" in f.filename or "/libs/" in f.filename]
        where = f"{ours[-1].filename.rsplit('/', 2)[-1]}:{ours[-1].lineno} {ours[-1].name}" if ours else "?"
        log.warning("store unavailable", method=request.method, path=request.url.path, where=where,
                    error=f"{type(exc).__name__}: {exc}")
        return JSONResponse({"error": "store_unavailable", "message": "the platform's store (NATS) did not "
                             f"answer in time ({type(exc).__name__}); send the request again shortly"},
                            status_code=503, headers={"Retry-After": str(STORE_RETRY_AFTER_S)})

    for failure in NATS_FAILURES:
        app.add_exception_handler(failure, store_unavailable)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e["type"] == "json_invalid" for e in errors):
            return JSONResponse(
                {"error": "invalid_json", "message": "the body is not valid JSON",
                 "fields": [{"field": "body", "message": "not valid JSON", "fix": "send a JSON object"}]},
                status_code=400,
            )
        fields = []
        for e in errors:
            loc = tuple(e["loc"])
            message = e["msg"].removeprefix("Value error, ")
            fix = fix_for(loc)
            if e["type"] == "extra_forbidden":
                fix = f"remove {field_of(loc)}; it is not a field of this request"
            elif e["type"] == "missing":
                fix = f"add {field_of(loc)}" + (f": {fix}" if fix else "")
            fields.append({"field": field_of(loc), "message": message, "fix": fix})
        summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return JSONResponse({"error": "invalid_request", "message": summary, "fields": fields}, status_code=422)
