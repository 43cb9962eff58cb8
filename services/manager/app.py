"""Wiring of the manager: settings, NATS broker, KV store, driver, provisioner and API."""

from __future__ import annotations

import asyncio
import socket
from datetime import datetime
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from faststream import AckPolicy, AsyncAPI
from faststream.nats import JStream, NatsBroker, PullSub

from libs.common import subjects
from libs.common.engines import SearchEngine, connect_engine
from libs.common.kv import read_model
from libs.common.leases import Leases
from libs.common.events import (
    AuditEvent,
    ClusterDesiredStateChanged,
    ClusterActivity,
    ClusterScaleRequested,
    ClusterStatusChanged,
    ClusterWakeRequested,
    Event,
)
from libs.common.streams import MANAGER_ACTIVITY as ACTIVITY, ensure_stream
from libs.common.models import ClusterRecord, ClusterStatus, ControllerState, utcnow
from libs.common.service import add_metrics_route, build_broker, new_registry
from libs.common.settings import Settings
from libs.common.store import ClusterStore, RecordGone
from services.manager.http import add_routes
from services.manager.http.errors import add_error_handlers
from services.manager.http.middleware import RequestContext
from services.manager.auth import ApiKeys, RateLimiter
from services.manager.quotas import QuotaLedger, QuotaRefused
from services.manager.tenants import Tenants
from services.manager.drivers import build_driver
from services.manager.provisioner import Provisioner
from services.manager.snapshotter import Snapshotter
from services.manager.transitions import NotNow, note_activity, request_wake

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
        self.backups: Snapshotter | None = None
        self.driver = build_driver(settings)
        self._engines: dict[tuple[str, str], SearchEngine] = {}
        self._used: dict[str, datetime] = {}  # vector-route calls since the last flush: activity too
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

    async def wake(self, cluster_id: str, reason: str) -> ClusterRecord | None:
        """Clear the cluster's hibernation; the provisioner starts its engine. None: nothing to wake."""
        woken: list[ClusterRecord] = []

        def change(record: ClusterRecord) -> ClusterRecord | None:
            woken[:] = [changed] if (changed := request_wake(record, utcnow(), reason)) else []
            return changed

        try:
            await self.store.mutate(cluster_id, change)
        except (RecordGone, NotNow):
            return None
        if not woken:
            return None  # awake already, or another wake was first: one status event per wake
        if woken[0].status == ClusterStatus.WAKING:
            await self.provisioner.announce(woken[0])
        self.provisioner.kick(cluster_id)
        return woken[0]

    def used(self, cluster_id: str) -> None:
        self._used[cluster_id] = utcnow()

    async def report_use(self) -> None:
        """The API's own engine calls keep a cluster awake, in batches as the gateway's do."""
        while True:
            await asyncio.sleep(self.settings.activity_flush_s)
            used, self._used = self._used, {}
            for cluster_id, at in used.items():
                try:
                    await self.store.mutate(cluster_id, lambda r, at=at: note_activity(r, at))
                except RecordGone:
                    pass
                except Exception as exc:  # NATS away: the next call counts again
                    structlog.get_logger("manager").warning("activity not recorded", error=type(exc).__name__)

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
            asleep = record.hibernate_requested or record.status in (ClusterStatus.HIBERNATED, ClusterStatus.WAKING)
            return allowed and not asleep and not record.delete_requested and record.spec.replicas != event.nodes

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


    @broker.subscriber(
        subjects.WAKE_ALL, stream=LIFECYCLE, durable=subjects.MANAGER_WAKE_DURABLE,
        pull_sub=PullSub(batch_size=16, timeout=0.2), ack_policy=AckPolicy.NACK_ON_ERROR,
        title="wake requests", description="A request reached a hibernated cluster at a gateway.",
    )
    async def on_wake_requested(event: ClusterWakeRequested) -> None:
        await platform.wake(event.cluster_id, event.reason)

    @broker.subscriber(
        subjects.ACTIVITY_ALL, stream=ACTIVITY, durable=subjects.MANAGER_ACTIVITY_DURABLE,
        pull_sub=PullSub(batch_size=64, timeout=1.0), ack_policy=AckPolicy.NACK_ON_ERROR,
        title="cluster activity", description="A gateway's request counts for a cluster; they keep it awake.",
    )
    async def on_activity(event: ClusterActivity) -> None:
        try:
            await platform.store.mutate(event.cluster_id, lambda r: note_activity(r, event.last_request_at))
        except RecordGone:
            pass


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
        platform.backups = Snapshotter(settings, platform.store, leases, platform.engine_for)
        platform.provisioner = Provisioner(settings, platform.store, platform.driver, platform.publish, leases,
                                           final_snapshot=platform.backups.final_snapshot if platform.backups.enabled else None)
        await broker.start()
        mirror = asyncio.create_task(platform.store.follow())
        periodic = asyncio.create_task(platform.provisioner.run_periodic())
        backup_pass = asyncio.create_task(platform.backups.run_periodic())
        use = asyncio.create_task(platform.report_use())
        log.info("manager started", api=f"http://{settings.api_host}:{settings.api_port}", nats=settings.nats_url)
        yield
        periodic.cancel()
        backup_pass.cancel()
        mirror.cancel()
        use.cancel()
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
    add_routes(app)
    add_metrics_route(app, new_registry())

    app.add_middleware(RequestContext, max_body_bytes=settings.max_body_bytes, audit=platform.audit)

    add_error_handlers(app)
    return app
