"""Wiring of the manager: settings, NATS broker, KV store, driver, provisioner and API."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from faststream import AckPolicy, AsyncAPI
from faststream.nats import JStream, NatsBroker, PullSub

from libs.common import subjects
from libs.common.engines import SearchEngine, connect_engine
from libs.common.kv import read_model
from libs.common.leases import Leases
from libs.common.events import (
    AuditEvent,
    ClusterDesiredStateChanged,
    ClusterScaleRequested,
    ClusterStatusChanged,
    Event,
)
from libs.common.streams import ensure_stream
from libs.common.models import ClusterRecord, ClusterStatus, ControllerState
from libs.common.service import add_metrics_route, build_broker, new_registry
from libs.common.settings import Settings
from libs.common.store import ClusterStore, RecordGone
from services.manager.api import is_mutation, public, router
from services.manager.auth import ApiKeys, RateLimiter
from services.manager.tenant_api import tenant_router
from services.manager.quotas import QuotaLedger, QuotaRefused
from services.manager.tenants import Tenants
from services.manager.drivers import build_driver
from services.manager.provisioner import Provisioner
from services.manager.schemas import field_of, fix_for

LIFECYCLE = JStream(
    subjects.LIFECYCLE_STREAM, subjects=subjects.LIFECYCLE_SUBJECTS, max_age=subjects.LIFECYCLE_MAX_AGE_S,
    duplicate_window=120,
)


class Platform:
    """What the API handlers reach through `request.app.state.platform`."""

    def __init__(self, settings: Settings, broker: NatsBroker):
        self.settings = settings
        self.broker = broker
        self.store: ClusterStore | None = None
        self.plans = None  # the shard controller's KV of plans, read for GET /clusters/{id}/plan
        self.tenants: Tenants | None = None
        self.quotas: QuotaLedger | None = None
        self.keys: ApiKeys | None = None
        self.limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
        self.provisioner: Provisioner | None = None
        self.driver = build_driver(settings)
        self._engines: dict[tuple[str, str], SearchEngine] = {}
        self._status_publisher = broker.publisher(
            subjects.STATUS_ALL, stream=LIFECYCLE, schema=ClusterStatusChanged,
            title="cluster status", description="A cluster moved to a new lifecycle status.",
        )

    async def audit(self, principal, method: str, path: str, status: int, request_id: str) -> None:
        event = AuditEvent(actor=principal.actor if principal else "anonymous",
                           actor_tenant=principal.tenant_org_id if principal else None,
                           method=method, path=path, status=status, request_id=request_id)
        tenant = principal.tenant_org_id if principal else None
        await self.broker.publish(event, subjects.tenant_audit(tenant), stream=subjects.AUDIT_STREAM)

    async def publish(self, event: Event, subject: str) -> None:
        # Nats-Msg-Id lets JetStream drop a re-sent duplicate
        await self.broker.publish(event, subject, stream=LIFECYCLE.name, headers={"Nats-Msg-Id": event.event_id})

    async def shard_plan(self, cluster_id: str) -> dict | None:
        state = await read_model(self.plans, cluster_id, ControllerState)
        return state.model_dump(mode="json") if state else None

    def jetstream(self):
        return self.broker.connection.jetstream()

    def nats_connected(self) -> bool:
        connection = self.broker.connection if self.store else None
        return bool(connection and connection.is_connected)

    def engine_for(self, record: ClusterRecord) -> SearchEngine:
        key = (record.id, record.endpoint or "")
        if key not in self._engines:
            creds = record.credentials
            self._engines[key] = connect_engine(
                record.spec.engine, record.endpoint, creds.username if creds else None, creds.password if creds else None
            )
        return self._engines[key]

    def forget_engine(self, cluster_id: str) -> None:
        """Drop a cached engine client (its credentials changed); the next call connects anew."""
        for key in [k for k in self._engines if k[0] == cluster_id]:
            asyncio.create_task(self._engines.pop(key).close())

    def asyncapi_json(self) -> str:
        return AsyncAPI(self.broker, title="es-serverless manager", version="0.1.0").to_specification().to_json()

    async def close_engines(self) -> None:
        for engine in self._engines.values():
            await engine.close()
        self._engines.clear()


class BodyTooLarge(Exception):
    pass


class RequestContext:
    """One request id per API call (taken from X-Request-ID or made), bound to every log line.

    Plain ASGI rather than Starlette's BaseHTTPMiddleware, which costs a third of a cheap GET.
    """

    QUIET = ("/health", "/ready", "/metrics")

    def __init__(self, app, max_body_bytes: int, platform: "Platform"):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.platform = platform
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
                await self.platform.audit(principal, scope["method"], scope["path"], status, request_id)
            except Exception:
                self.log.error("audit event not published", method=scope["method"], path=scope["path"])
        if scope["path"] not in self.QUIET:
            # reads are many and cheap: logged at debug so they do not cost the latency they measure
            emit = self.log.info if scope["method"] != "GET" or status >= 400 else self.log.debug
            emit("request", method=scope["method"], path=scope["path"], status=status,
                 ms=round((time.perf_counter() - started) * 1000, 1))


def register_handlers(broker: NatsBroker, platform: Platform) -> None:
    @broker.subscriber(
        subjects.DESIRED_ALL, stream=LIFECYCLE, durable=subjects.PROVISIONER_DURABLE,
        pull_sub=PullSub(batch_size=16, timeout=1.0), ack_policy=AckPolicy.NACK_ON_ERROR,
        title="cluster desired state", description="The API changed a cluster's desired state.",
    )
    async def on_desired_state(event: ClusterDesiredStateChanged) -> None:
        # reconcile is idempotent: a redelivered event only looks again
        platform.provisioner.kick(event.cluster_id)

    @broker.subscriber(
        subjects.SCALE_ALL, stream=LIFECYCLE, durable=subjects.MANAGER_SCALE_DURABLE,
        pull_sub=PullSub(batch_size=16, timeout=1.0), ack_policy=AckPolicy.NACK_ON_ERROR,
        title="node count requests", description="The shard controller asks for a cluster's node count.",
    )
    async def on_scale_requested(event: ClusterScaleRequested) -> None:
        def wanted(record: ClusterRecord) -> bool:
            # the tenant may have pinned or bounded the cluster since the controller asked
            allowed = record.scaling.autoscaling and record.scaling.min_nodes <= event.nodes <= record.scaling.max_nodes
            return allowed and not record.delete_requested and record.spec.replicas != event.nodes

        def change(record: ClusterRecord) -> ClusterRecord | None:
            if not wanted(record):
                return None
            record.spec = record.spec.model_copy(update={"replicas": event.nodes})
            record.generation += 1
            record.status = ClusterStatus.SCALING
            record.status_reason = f"shard controller: {event.reason}"
            return record

        found = await platform.store.get(event.cluster_id)
        if found is None or not wanted(found[0]):
            return
        tenant = await platform.tenants.ensure(found[0].tenant_org_id)
        try:
            async with platform.quotas.resizing(tenant, found[0], event.nodes):
                await platform.store.mutate(event.cluster_id, change)
        except QuotaRefused as refused:
            structlog.get_logger("manager").warning("node count request ignored", cluster=event.cluster_id,
                                                    nodes=event.nodes, reason=refused.exceeded.message)
            return
        except RecordGone:
            return
        platform.provisioner.kick(event.cluster_id)


def create_app(settings: Settings) -> FastAPI:
    async def on_reconnect() -> None:
        if platform.store:
            platform.store.resync()

    broker = build_broker(settings, on_reconnect)
    platform = Platform(settings, broker)
    register_handlers(broker, platform)
    log = structlog.get_logger("manager")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await broker.connect()
        platform.store = await ClusterStore.open(broker, settings.idempotency_ttl_s)
        platform.plans = await broker.key_value(subjects.KV_SHARD_PLANS)
        platform.tenants = Tenants(await broker.key_value(subjects.KV_TENANTS))
        platform.quotas = QuotaLedger(await broker.key_value(subjects.KV_QUOTA_CLAIMS), platform.store)
        operator_key = settings.operator_key.get_secret_value() if settings.operator_key else None
        platform.keys = ApiKeys(await broker.key_value(subjects.KV_API_KEYS), operator_key)
        await ensure_stream(broker.connection.jetstream(), subjects.AUDIT_STREAM, subjects.AUDIT_SUBJECTS,
                            subjects.AUDIT_MAX_AGE_S)
        # a stable holder: a manager restarted in place takes its clusters back at once
        holder = settings.instance_id or f"{socket.gethostname()}:{settings.api_port}"
        leases = Leases(await broker.key_value(subjects.KV_PROVISIONER_LEASES, ttl=settings.lease_ttl_s), holder)
        platform.provisioner = Provisioner(settings, platform.store, platform.driver, platform.publish, leases)
        await broker.start()
        mirror = asyncio.create_task(platform.store.follow())
        periodic = asyncio.create_task(platform.provisioner.run_periodic())
        log.info("manager started", api=f"http://{settings.api_host}:{settings.api_port}", nats=settings.nats_url)
        yield
        periodic.cancel()
        mirror.cancel()
        await platform.provisioner.stop()
        await platform.close_engines()
        await broker.stop()

    app = FastAPI(
        title="es-serverless",
        version="0.1.0",
        description="Search clusters (OpenSearch, Elasticsearch) as a multi-tenant serverless service.",
        lifespan=lifespan,
    )
    app.state.platform = platform
    app.include_router(public)
    app.include_router(router)
    app.include_router(tenant_router)
    add_metrics_route(app, new_registry())

    app.add_middleware(RequestContext, max_body_bytes=settings.max_body_bytes, platform=platform)

    @app.exception_handler(HTTPException)
    async def problem(request: Request, exc: HTTPException) -> JSONResponse:
        body = exc.detail if isinstance(exc.detail, dict) else {"error": "http_error", "message": str(exc.detail)}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

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

    return app
