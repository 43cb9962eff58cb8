"""Wiring of the gateway: settings, NATS (the cluster mirror, keys, activity and wake events),
one pooled HTTP client to the engines, and its two aiohttp servers: the tenants' endpoint (with
/health and /ready) on `gateway_port`, and /metrics, /health, /ready on `gateway_metrics_port`.
With the byte pump (`pump_link.py`) the pump takes `gateway_port` and the tenants' endpoint here
answers it alone, on loopback; the pump is started with the gateway and stopped before it."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
from pathlib import Path

import aiohttp
import structlog
from aiohttp import web
from aiohttp.web_runner import GracefulExit
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from faststream.nats import NatsRouter

from libs.common import streams, subjects
from libs.common.events import ClusterActivity, ClusterWakeRequested
from libs.common.failures import NATS_FAILURES
from libs.common.kv import open_bucket
from libs.common.models import ClusterRecord
from libs.common.service import build_broker, new_registry
from libs.common.settings import AccessSection
from libs.common.store import ClusterStore
from services.gateway.activity import Activity, ActivityCollector
from services.gateway.cors import add_cors
from services.gateway.handler import Gateway
from services.gateway.key_guard import KeyGuard
from services.gateway.keys import KeyCache
from services.gateway.pump_link import ChangeFeed, pump_routes, start_pump, stop_pump
from services.gateway.settings import GatewaySettings

# what the gateway sends, declared once: each event goes to its own cluster's subject
publishers = NatsRouter()
activity_reports = publishers.publisher(
    subjects.ACTIVITY_ALL, stream=streams.ACTIVITY, schema=ClusterActivity, title="cluster activity",
    description="What one gateway forwarded to one cluster since its last report.")
wake_requests = publishers.publisher(subjects.WAKE_ALL, stream=streams.LIFECYCLE, schema=ClusterWakeRequested,
                                     title="wake requests", description="A request reached a hibernated cluster.")


async def send_activity(activity: ClusterActivity) -> None:
    await activity_reports.publish(activity, subjects.cluster_activity(activity.tenant_org_id, activity.cluster_id))


def create_app(settings: GatewaySettings, pump: Path | None = None, internal_port: int = 0) -> web.Application:
    """`pump`: the pump's binary, started on `gateway_port` and deciding with this app at
    `internal_port` on loopback (where the caller serves it); None: this app is the endpoint."""
    log = structlog.get_logger("gateway")
    instance = settings.gateway_instance_id or f"{socket.gethostname()}:{settings.gateway_port}"
    activity = Activity(gateway=instance)
    registry = new_registry()
    registry.register(ActivityCollector(activity))
    broker = build_broker(settings, on_reconnect=lambda: _resync(app))
    broker.include_router(publishers)

    async def request_wake(record: ClusterRecord, reason: str) -> None:
        event = ClusterWakeRequested(cluster_id=record.id, tenant_org_id=record.tenant_org_id, reason=reason)
        await wake_requests.publish(event, subjects.cluster_wake(record.tenant_org_id, record.id))
        log.info("wake requested", cluster=record.id, reason=reason)

    async def report_activity() -> None:
        while True:
            await asyncio.sleep(settings.activity_flush_s)
            reports = activity.take()
            for number, activity_report in enumerate(reports):
                try:
                    await send_activity(activity_report)
                except NATS_FAILURES as exc:  # NATS away: counted again in the next report
                    activity.put_back(reports[number:])
                    log.warning("activity not reported", error=type(exc).__name__, clusters=len(reports) - number)
                    break

    async def lifecycle(app: web.Application):
        # a cleanup context: it ends after the server has let in-flight requests finish, so a
        # request held while its cluster wakes still sees the wake through a graceful stop
        await broker.start()
        # the activity stream is the gateway's: declared here, bound by the manager and reporting
        await streams.declare_stream(broker.connection.jetstream(), streams.ACTIVITY, settings.nats_replicas)
        store = await ClusterStore.open(broker, settings.nats_replicas)
        guard = KeyGuard(settings.auth_failures_per_minute, settings.key_lookups_per_s, settings.key_cache_s)
        keys = KeyCache(await open_bucket(broker, subjects.KV_API_KEYS, settings.nats_replicas), _secret(settings),
                        settings.key_cache_s, guard)
        # headers are the client's own: none added (an added Accept-Encoding once sent gzip to curl)
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                                        skip_auto_headers=("User-Agent", "Content-Type", "Accept", "Accept-Encoding"))
        gateway = Gateway(settings, store, keys, session, activity, request_wake, feed)
        app["gateway"], app["store"] = gateway, store
        tasks = [asyncio.create_task(store.follow(gateway.record_changed)), asyncio.create_task(report_activity())]
        log.info("gateway started", listen=f"http://{settings.gateway_host}:{settings.gateway_port}",
                 metrics=f"http://{settings.gateway_host}:{settings.gateway_metrics_port}/metrics",
                 endpoint=settings.public_gateway_url, nats=settings.nats_url)
        yield
        for activity_report in activity.take():  # the last counts before leaving
            with contextlib.suppress(*NATS_FAILURES):  # NATS away as it stops: those counts are lost
                await send_activity(activity_report)
        for task in tasks:
            task.cancel()
        await session.close()
        await broker.stop()

    async def handle(request: web.Request) -> web.StreamResponse:
        return await app["gateway"].handle(request)

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def ready(request: web.Request) -> web.Response:
        connected = bool(broker.connection and broker.connection.is_connected)
        return web.json_response({"status": "ready" if connected else "not ready"}, status=200 if connected else 503)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def monitoring_server(app: web.Application):
        # /metrics names every tenant: off the tenants' port, as a NetworkPolicy tells ports apart, not paths
        monitoring = web.Application()
        monitoring.router.add_get("/health", health)
        monitoring.router.add_get("/ready", ready)
        monitoring.router.add_get("/metrics", metrics)
        runner = web.AppRunner(monitoring, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, settings.gateway_host, settings.gateway_metrics_port).start()
        yield
        await runner.cleanup()

    async def pump_process(app: web.Application):
        # workers: pumps on the same port, the kernel spreading connections over them
        processes = [start_pump(settings, pump, internal_port, feed.secret) for _ in range(settings.pump_workers)]
        for process in processes:
            log.info("pump started", pid=process.pid, listen=f"{settings.gateway_host}:{settings.gateway_port}",
                     decides=f"127.0.0.1:{internal_port}")
        stopping = False
        drain_s = settings.hold_max_s + 10

        async def stop_pumps() -> None:
            await asyncio.gather(*(stop_pump(process, drain_s) for process in processes))

        async def pumps_first_then_us():
            # the pumps drain first (their held requests are served here meanwhile), then this app
            nonlocal stopping
            stopping = True
            await stop_pumps()
            feed.release()
            raise GracefulExit()

        keep: list[asyncio.Task] = []  # the stopping task, referenced until the loop ends

        def stop_soon() -> None:
            if not stopping:
                keep.append(asyncio.create_task(pumps_first_then_us()))

        async def watch(process: subprocess.Popen):
            await asyncio.get_running_loop().run_in_executor(None, process.wait)
            if not stopping:  # a pump gone: exit, to be started again whole, as one unit
                log.error("pump exited", pid=process.pid, code=process.returncode)
                stop_soon()

        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, stop_soon)
        watchers = [asyncio.create_task(watch(process)) for process in processes]
        yield
        for task in keep:  # its GracefulExit stopped the loop on purpose: read, so it is not logged as lost
            if task.done() and not task.cancelled():
                task.exception()
        for watcher in watchers:
            watcher.cancel()
        await stop_pumps()
        feed.release()

    feed = ChangeFeed() if pump else None
    app = web.Application(client_max_size=1 << 20, handler_args={"max_field_size": 65536})
    app.cleanup_ctx.append(monitoring_server)  # first: up before NATS, down after the last held request
    app.cleanup_ctx.append(lifecycle)
    if pump:
        app.cleanup_ctx.append(pump_process)  # after NATS: its first requests find the keys readable
        pump_routes(app, feed, activity.pumped)
    add_cors(app)  # the web console calls the gateway from the API's origin
    # probes and devrun's supervisor wait on /ready here, at the port they already dial
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_route("*", "/{path:.*}", handle)
    return app


async def _resync(app: web.Application) -> None:
    if "store" in app:
        app["store"].resync()


def _secret(settings: AccessSection) -> str | None:
    return settings.operator_key.get_secret_value() if settings.operator_key else None
