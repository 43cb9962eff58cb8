"""The ASGI middleware around every API call: one request id, the body's size limit, the audit
event of each change, and one log line."""

from __future__ import annotations

import json
import time
import uuid

import structlog

from libs.common.failures import NATS_FAILURES
from services.manager.http.deps import is_mutation


class BodyTooLarge(Exception):
    pass


class RequestContext:
    """One request id per API call (taken from X-Request-ID or made), bound to every log line.

    Plain ASGI rather than Starlette's BaseHTTPMiddleware, which costs a third of a cheap GET.
    """

    QUIET = ("/health", "/ready", "/metrics")

    def __init__(self, app, max_body_bytes: int, audit):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.audit = audit  # (principal, method, path, status, request id) -> None
        self.log = structlog.get_logger("api")

    async def _too_large(self, send) -> None:
        body = json.dumps({"error": "too_large", "message": f"the body is over {self.max_body_bytes} bytes",
                           "fields": [{"field": "body", "message": "too large",
                                       "fix": "send fewer documents per request"}]}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = dict(scope["headers"]).get(b"x-request-id", b"").decode()[:64] or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        status = 500
        started = time.perf_counter()
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.max_body_bytes:
            return await self._too_large(send)
        received = 0

        async def receive_bounded():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:  # a chunked body that outgrows its limit
                raise BodyTooLarge()
            return message

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive_bounded, send_with_id)
        except BodyTooLarge:
            status = 413
            await self._too_large(send)
        if is_mutation(scope["method"], scope["path"]):
            principal = scope.get("state", {}).get("principal")
            try:
                await self.audit(principal, scope["method"], scope["path"], status, request_id)
            except NATS_FAILURES:  # NATS away: the change is made; its audit event is lost, and said so
                self.log.error("audit event not published", method=scope["method"], path=scope["path"])
        if scope["path"] not in self.QUIET:
            # reads are many and cheap: logged at debug so they do not cost the latency they measure
            emit = self.log.info if scope["method"] != "GET" or status >= 400 else self.log.debug
            emit("request", method=scope["method"], path=scope["path"], status=status,
                 ms=round((time.perf_counter() - started) * 1000, 1))
