"""The gateway's one route: authenticate, find the cluster, then forward the request, or hold it
while a hibernated cluster wakes, or refuse it with a reason."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable

import aiohttp
import structlog
from aiohttp import web

from libs.common.api_keys import Principal, api_key_of
from libs.common.failures import NATS_FAILURES
from libs.common.models import ClusterRecord
from libs.common.store import ClusterStore
from services.gateway import api_policy, retries
from services.gateway.activity import Activity
from services.gateway.forwarding import (NotSent, error_answer, forward, read_checked_body, read_small_body,
                                         upstream_headers)
from services.gateway.key_guard import Throttled
from services.gateway.keys import KeyCache
from services.gateway.pump_link import CLIENT_HEADER, ChangeFeed, grant_headers
from services.gateway.routing import (Forward, Hold, Refuse, basic_credentials, decide, engine_user, hold_deadline,
                                     split_path)
from services.gateway.settings import GatewaySettings

RequestWake = Callable[[ClusterRecord, str], Awaitable[None]]
CHALLENGE = {"WWW-Authenticate": 'ApiKey realm="es-serverless", Basic realm="es-serverless"'}
WAKE_REPEAT_S = 2.0  # a held request asks again this often (the first ask may have been lost)
LOOK_AGAIN_S = 1.0  # an unreachable engine with no record change: try it again this often


def engine_authorization(record: ClusterRecord) -> str | None:
    credentials = record.credentials
    if credentials is None:
        return None
    return "Basic " + base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()


class Gateway:
    def __init__(self, settings: GatewaySettings, store: ClusterStore, keys: KeyCache, session: aiohttp.ClientSession,
                 activity: Activity, request_wake: RequestWake, feed: ChangeFeed | None = None):
        self._settings = settings
        self._store = store
        self._keys = keys
        self._session = session
        self._activity = activity
        self._request_wake = request_wake
        self._feed = feed  # None: no pump in front; else what it is told of record changes
        self._changed: dict[str, asyncio.Event] = {}
        self._asked: dict[str, float] = {}  # cluster -> when this gateway last asked to wake it
        self._log = structlog.get_logger("gateway")

    def record_changed(self, cluster_id: str, record: ClusterRecord | None) -> None:
        """From the store's watch: held requests of this cluster look again; the pump's grants end."""
        if self._feed:
            self._feed.changed(cluster_id, record)
        event = self._changed.pop(cluster_id, None)
        if event:
            event.set()

    async def _principal(self, request: web.Request, record: ClusterRecord | None) -> Principal | Throttled | None:
        authorization = request.headers.get("Authorization")
        key = api_key_of(authorization)
        if key:
            # behind the pump the gateway listens on loopback only, and the pump names the client
            named = self._feed and self._feed.from_pump(request) and request.headers.get(CLIENT_HEADER)
            address = named or request.remote or "unknown"
            return await self._keys.principal(key, address)
        basic = basic_credentials(authorization)
        return engine_user(record, basic) if basic and record else None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        target = split_path(request.raw_path)
        if target is None:
            return error_answer(404, "not_found", "address a cluster as /<cluster id>/<path>; its `endpoint` in the "
                                "API says which")
        cluster_id, path = target
        seq = self._feed.seq if self._feed else 0  # before the read: a change after it voids a grant
        try:
            record = await self._store.read(cluster_id)
            principal = await self._principal(request, record)
        except NATS_FAILURES as exc:
            self._log.warning("key not checked: the store did not answer", cluster=cluster_id, error=type(exc).__name__)
            return error_answer(503, "store_unavailable", "the platform could not check the key just now (its store "
                                "did not answer); retry shortly", 1)
        if isinstance(principal, Throttled):
            return error_answer(429, "too_many_requests", principal.reason, principal.retry_after_s)
        if principal is None:
            return error_answer(401, "security_exception", "missing or unknown key: send Authorization: ApiKey "
                                "<key> (or the cluster's engine credentials as HTTP basic)", extra_headers=CHALLENGE)
        decision = decide(record, principal, cluster_id)
        if isinstance(decision, Refuse):
            return error_answer(decision.status, decision.kind, decision.reason, decision.retry_after_s)
        body: bytes | None = None
        engine_path = path
        if principal.is_operator:
            # the operator's key passes every call; each one is on record
            self._log.info("operator call", cluster=cluster_id, method=request.method, path=path.partition("?")[0])
            read = api_policy.is_read(request.method, path, record.spec.engine)
        else:
            allowed = await self._allowed(request, record, path)
            if isinstance(allowed, web.Response):
                return allowed
            path, body, read = allowed
        self._activity.started(cluster_id, record.tenant_org_id)
        sizes = (0, 0)
        try:
            answer, sizes, at_once = await self._serve(request, record, decision, path, body, read)
            if (self._feed and at_once and not principal.is_operator and not answer.prepared
                    and self._feed.from_pump(request)):  # a grant holds engine credentials: the pump's only
                answer.headers.update(self._grant(request, record, engine_path, seq))
            return answer
        finally:
            self._activity.finished(cluster_id, record.tenant_org_id, *sizes)

    def _grant(self, request: web.Request, record: ClusterRecord, engine_path: str, seq: int) -> dict[str, str]:
        """What lets the pump carry this caller's next such calls itself. The operator's are never
        granted: each of them stays audited here."""
        ttl = self._keys.trusted_for(api_key_of(request.headers.get("Authorization")))
        shape = api_policy.shape_of(request.method, engine_path, record.spec.engine)
        return grant_headers(record, engine_authorization(record), ttl, shape, self._feed, seq)

    async def _allowed(self, request: web.Request, record: ClusterRecord,
                       path: str) -> tuple[str, bytes | None, bool] | web.Response:
        """The tenant API policy: (the path to forward, the body if it was read to check it, whether
        the call only reads), or a refusal."""
        verdict = api_policy.decide(request.method, path, record.spec.engine)
        if isinstance(verdict, api_policy.Deny):
            return error_answer(verdict.status, verdict.kind, verdict.reason)
        if verdict.check is None:
            return verdict.path, None, verdict.read
        body = await read_checked_body(request, api_policy.MAX_CHECKED_BODY)
        if body is None:
            return error_answer(400, "illegal_argument_exception", f"this call's body is checked by the gateway "
                                f"and must be at most {api_policy.MAX_CHECKED_BODY >> 20} MiB")
        parsed = api_policy.read_json(body, request.headers.get("Content-Type"))
        refusal = parsed if isinstance(parsed, api_policy.Deny) else api_policy.check_body(
            verdict.check, request.method, verdict.path.partition("?")[0], parsed)
        if refusal is not None:
            return error_answer(refusal.status, refusal.kind, refusal.reason)
        return verdict.path, body, verdict.read

    async def _serve(self, request: web.Request, record: ClusterRecord, decision, path: str, body: bytes | None,
                     read: bool):
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        deadline = arrived + self._settings.wake_timeout_s
        if body is None:
            body = await read_small_body(request)
        started = time.perf_counter()
        at_once = True  # forwarded on the first look, neither held nor sent again
        pauses = iter(retries.PAUSES_S if retries.may_send_again(read, path.partition("?")[2]) else ())
        while True:
            if isinstance(decision, Refuse):
                refusal = error_answer(decision.status, decision.kind, decision.reason, decision.retry_after_s)
                return refusal, (0, 0), False
            if isinstance(decision, Forward):
                headers = upstream_headers(request, engine_authorization(record))
                try:
                    answer, bytes_in, bytes_out = await forward(
                        self._session, request, decision.endpoint + path, headers, body,
                        self._settings.upstream_timeout_s)
                    pause = self._send_again(record, answer, body, pauses)
                    if pause is None:
                        return answer, (bytes_in, bytes_out), at_once
                    at_once = False
                    await asyncio.sleep(pause)
                    continue
                except NotSent as exc:
                    if body is None:  # a streamed body cannot be sent twice
                        return error_answer(503, "engine_unavailable", f"the cluster's engine is not reachable "
                                            f"({exc}); retry shortly", 5), (0, 0), False
                    decision = None  # down for a moment (stopping to hibernate, restarting): look again
                    at_once = False
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    return error_answer(502, "engine_error", f"the cluster's engine failed to answer: "
                                        f"{type(exc).__name__} {exc}"), (0, 0), False
            deadline = hold_deadline(deadline, loop.time(), arrived, record, self._settings.wake_timeout_s,
                                     self._settings.wake_queued_max_s)
            if loop.time() >= deadline:
                return error_answer(503, "cluster_waking", f"cluster {record.id} did not answer within "
                                    f"{loop.time() - arrived:.0f} s; retry shortly", 10), (0, 0), False
            at_once = False
            if isinstance(decision, Hold) and decision.ask_to_wake:
                await self._ask_to_wake(record, decision.reason)
            await self._wait_for_change(record.id, min(LOOK_AGAIN_S, deadline - loop.time()))
            current = await self._store.read(record.id)
            decision = decide(current, Principal("held", record.tenant_org_id), record.id)
            record = current or record
            if isinstance(decision, Forward) and started:
                self._log.info("held request goes on", cluster=record.id,
                               held_ms=round((time.perf_counter() - started) * 1000))
                started = 0.0

    def _send_again(self, record: ClusterRecord, answer: web.StreamResponse, body: bytes | None,
                    pauses) -> float | None:
        """The pause before sending a read again that the engine failed for a moment; None: answer."""
        if body is None or answer.prepared or not isinstance(answer, web.Response) or answer.body is None:
            return None  # streamed either way: it cannot be sent twice
        failure = retries.transient_failure(answer.status, answer.headers.get("Content-Encoding"), answer.body)
        pause = next(pauses, None) if failure else None
        if pause is not None:
            self._activity.reads_sent_again += 1
            self._log.warning("read sent again", cluster=record.id, status=answer.status, error=failure,
                              pause_s=pause)
        return pause

    async def _ask_to_wake(self, record: ClusterRecord, reason: str) -> None:
        now = time.monotonic()
        if now - self._asked.get(record.id, -WAKE_REPEAT_S) < WAKE_REPEAT_S:
            return
        self._asked[record.id] = now
        try:
            await self._request_wake(record, reason)
            self._activity.wakes += 1
        except NATS_FAILURES as exc:  # NATS away: the held request asks again shortly
            self._log.warning("wake request not sent", cluster=record.id, error=type(exc).__name__)

    async def _wait_for_change(self, cluster_id: str, timeout_s: float) -> None:
        event = self._changed.setdefault(cluster_id, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), max(0.0, timeout_s))
        except asyncio.TimeoutError:
            pass
