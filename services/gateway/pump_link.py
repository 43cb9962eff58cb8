"""The Python gateway's side of the byte pump (`services/gateway/pump`, Go): where its binary is,
starting it on the tenants' port, and what the pump learns from the gateway.

The gateway keeps every decision. On an answer it forwarded for a tenant it adds two headers the
pump reads and strips: a grant (this key may reach this cluster, forwarded so, for as long as the
gateway itself would trust the key) and a shape (every path of it gets the same verdict of the
tenant API policy). The pump carries what a grant and a shape cover and brings everything else
here. A record change ends a cluster's grants at once through `/_pump/changes`, a long poll; the
pump's counts come back through `/_pump/activity` and are metered with the gateway's own.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import secrets
import subprocess
import uuid
from pathlib import Path

import structlog
from aiohttp import web

from libs.common.models import ClusterRecord
from libs.common.settings import GatewaySection
from services.gateway import retries

SOURCE = Path(__file__).resolve().parent / "pump"
GRANT_HEADER = "X-Ess-Grant"
SHAPE_HEADER = "X-Ess-Shape"
CLIENT_HEADER = "X-Ess-Client"  # the client's address: set by the pump, trusted only from the pump
# a secret this gateway makes at start and gives its pump through the environment (a command line
# is anyone's to read in `ps`): only calls carrying it are the pump's, so another process on the
# loopback gets no grant (engine credentials), names no client address and reports no activity
PUMP_HEADER = "X-Ess-Pump"
PUMP_SECRET_ENV = "PUMP_SECRET"
POLL_S = 20.0  # a change poll answers at least this often


def pump_binary(settings: GatewaySection) -> Path:
    """The pump to run: ESS_GATEWAY_PUMP_BIN, else the one built from these sources (named by their hash)."""
    if settings.gateway_pump_bin:
        return settings.gateway_pump_bin
    cache = Path.home() / ".cache" / "es-serverless" / "pump"
    if not (SOURCE / "go.mod").is_file():  # installed without its sources (an image names its binary)
        return cache / "no-sources" / "ess-pump"
    digest = hashlib.sha256()
    for path in sorted(SOURCE.glob("*.go")) + [SOURCE / "go.mod"]:
        digest.update(path.name.encode() + path.read_bytes())
    return cache / digest.hexdigest()[:16] / "ess-pump"


def start_pump(settings: GatewaySection, binary: Path, internal_port: int, secret: str) -> subprocess.Popen:
    """A pump on the tenants' host and port (shared by every pump of this gateway), deciding with
    the gateway at `internal_port`."""
    return subprocess.Popen(
        [str(binary), f"-listen={settings.gateway_host}:{settings.gateway_port}",
         f"-python=http://127.0.0.1:{internal_port}", f"-report={settings.pump_report_s}s",
         f"-upstream-timeout={settings.upstream_timeout_s}s", f"-drain={settings.hold_max_s + 5}s",
         *retries.pump_args()],
        # one core each (GOMAXPROCS=1): a pump with two spent a fifth more CPU per call, its idle
        # threads woken and put back to sleep for every call (bench/gateway_overhead.py, issue 23)
        stdin=subprocess.DEVNULL, env={**os.environ, PUMP_SECRET_ENV: secret, "GOMAXPROCS": "1"},
        process_group=0)  # own group: a Ctrl-C reaches the gateway, which stops it


class ChangeFeed:
    """Which clusters' records changed, numbered, for the pump's long poll."""

    def __init__(self) -> None:
        self.epoch = uuid.uuid4().hex  # this gateway's start: grants of another are void
        self.secret = secrets.token_urlsafe(32)  # PUMP_HEADER's value
        self.seq = 0
        self._changed_at: dict[str, int] = {}
        self._terms: dict[str, tuple | None] = {}
        self._event = asyncio.Event()

    def from_pump(self, request: web.Request) -> bool:
        """The call came from this gateway's pump (it carries the secret)."""
        return hmac.compare_digest(request.headers.get(PUMP_HEADER, "").encode(), self.secret.encode())

    def changed(self, cluster_id: str, record: ClusterRecord | None) -> None:
        terms = grant_terms(record)
        if cluster_id in self._terms and self._terms[cluster_id] == terms:
            return  # its activity noted, say: every grant of it still holds
        self._terms[cluster_id] = terms
        self.seq += 1
        self._changed_at[cluster_id] = self.seq
        self._event.set()
        self._event = asyncio.Event()

    def release(self) -> None:
        """Answer every waiting poll now (stopping: a poll must not hold the shutdown for its 20 s)."""
        self._event.set()

    def since(self, after: int, epoch: str) -> dict:
        if epoch != self.epoch or after < 0 or after > self.seq:
            return {"epoch": self.epoch, "seq": self.seq, "clusters": [], "all": True}
        return {"epoch": self.epoch, "seq": self.seq, "all": False,
                "clusters": [c for c, seq in self._changed_at.items() if seq > after]}

    async def wait(self, after: int, epoch: str, timeout_s: float = POLL_S) -> dict:
        if epoch == self.epoch and after == self.seq:
            try:
                await asyncio.wait_for(self._event.wait(), timeout_s)
            except asyncio.TimeoutError:
                pass
        return self.since(after, epoch)


def grant_terms(record: ClusterRecord | None) -> tuple | None:
    """What of a record a grant rests on: whether and where it serves, whose it is, how the engine is reached."""
    if record is None:
        return None
    credentials = record.credentials
    return (record.status, record.endpoint, record.tenant_org_id, record.spec.engine, record.delete_requested,
            record.hibernate_requested, credentials and (credentials.username, credentials.password))


def grant_headers(record: ClusterRecord, authorization: str | None, ttl_s: float, shape: str | None,
                  feed: ChangeFeed, seq: int) -> dict[str, str]:
    """The headers that let the pump carry this key's next calls to this cluster itself; `seq`: the
    feed's number when the record was read (a change after it voids the grant)."""
    grant = {"cluster": record.id, "tenant": record.tenant_org_id, "engine": record.spec.engine,
             "endpoint": record.endpoint, "authorization": authorization or "", "ttl_s": ttl_s,
             "epoch": feed.epoch, "seq": seq}
    headers = {GRANT_HEADER: json.dumps(grant, separators=(",", ":"))}
    if shape:
        headers[SHAPE_HEADER] = shape
    return headers


def pump_routes(app: web.Application, feed: ChangeFeed, take_activity) -> None:
    """The pump's two calls, on the internal site only."""

    async def changes(request: web.Request) -> web.Response:
        if not feed.from_pump(request):
            return web.Response(status=403, text="the pump's own call")
        try:
            after = int(request.query.get("after", "-1"))
        except ValueError:
            after = -1
        return web.json_response(await feed.wait(after, request.query.get("epoch", "")))

    async def activity(request: web.Request) -> web.Response:
        if not feed.from_pump(request):
            return web.Response(status=403, text="the pump's own call")
        take_activity(await request.json())
        return web.Response(status=204)

    app.router.add_get("/_pump/changes", changes)
    app.router.add_post("/_pump/activity", activity)


async def stop_pump(process: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM: it stops taking connections and lets those in flight finish (held ones come here)."""
    if process.poll() is None:
        process.terminate()
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.run_in_executor(None, process.wait), timeout_s)
    except asyncio.TimeoutError:
        structlog.get_logger("gateway").warning("pump did not stop in time; killed", pid=process.pid)
        process.kill()


def usable(binary: Path) -> bool:
    return binary.is_file() and os.access(binary, os.X_OK)
