"""`make up` / `make down` as a developer uses them, and NATS restarting under the platform."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import httpx
import nats as nats_client

from libs.common import subjects
from libs.common.models import ClusterRecord
from devrun.nats_server import wait_for_port
from services.manager.drivers.local_processes import find_engines, find_standbys
from tests.conftest import OPERATOR, seed_request
from devrun.supervisor import free_port
from tests.helpers import REPO, wait_for_status, wait_until


def test_up_runs_everything_and_down_stops_everything(tmp_path, engine_installed):
    env = {
        **os.environ,
        "ESS_STATE_DIR": str(tmp_path),
        "ESS_NATS_URL": f"nats://127.0.0.1:{free_port()}",
        "ESS_API_PORT": str(free_port()),
        "ESS_SHARD_CONTROLLER_PORT": str(free_port()),
        "ESS_REPORTING_PORT": str(free_port()),
        "ESS_GATEWAY_PORT": str(free_port()),
        "ESS_GATEWAY_METRICS_PORT": str(free_port()),
        "ESS_LOCAL_PORT_BASE": "13200",  # below the ephemeral ports and every other platform's slots
    }
    output = tmp_path / "up.log"  # a file, not a pipe: nobody has to keep reading it
    with open(output, "wb") as sink:
        up = subprocess.Popen([sys.executable, "-m", "devrun", "up"], cwd=REPO, env=env,
                              stdout=sink, stderr=subprocess.STDOUT)
    try:
        banner = wait_until(lambda: "es-serverless is up" in (text := output.read_text()) and text, 60,
                            what=f"the banner of `up` (pid {up.pid})")
        api_url = f"http://127.0.0.1:{env['ESS_API_PORT']}"
        gateway_url = f"http://127.0.0.1:{env['ESS_GATEWAY_PORT']}"
        assert api_url in banner and f"tenant endpoint (gateway): {gateway_url}/<cluster id>" in banner
        with httpx.Client(base_url=api_url, timeout=30, headers=OPERATOR) as api:
            cluster = api.post("/clusters", json=seed_request()).json()
            ready = wait_for_status(api, cluster["id"], "ready")
        assert ready["endpoint"] == f"{gateway_url}/{cluster['id']}"
        assert httpx.get(f"{ready['endpoint']}/_cluster/health", headers=OPERATOR).json()["number_of_nodes"] == 1
        assert len(find_engines(tmp_path.resolve() / "clusters")) == 1
        # the warm engines: one standby JVM per engine, started by `up`'s manager
        warm = wait_until(lambda: len(s := find_standbys(tmp_path.resolve() / "standby")) == 2 and s, 60,
                          what="a standby of each engine")
        assert sorted(s.engine for s in warm) == ["elasticsearch", "opensearch"]

        down = subprocess.run([sys.executable, "-m", "devrun", "down"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=90)
        assert down.returncode == 0, down.stderr
        assert up.wait(30) == 0
    finally:
        if up.poll() is None:  # a failed test still stops all that `up` started
            up.terminate()
            try:
                up.wait(60)
            except subprocess.TimeoutExpired:
                up.kill()
    assert find_engines(tmp_path.resolve() / "clusters") == []
    assert find_standbys(tmp_path.resolve() / "standby") == []  # `down` stops the pool too
    for port in (env["ESS_API_PORT"], env["ESS_GATEWAY_PORT"], env["ESS_GATEWAY_METRICS_PORT"],
                 env["ESS_NATS_URL"].rsplit(":", 1)[1]):
        with __import__("socket").socket() as sock:
            assert sock.connect_ex(("127.0.0.1", int(port))) != 0, f"port {port} still open"


def test_platform_survives_a_nats_restart(api, nats):
    before = api.post("/clusters", json=seed_request(service_name="before")).json()
    nats.kill()
    wait_until(lambda: api.get("/ready").status_code == 503, 15, what="NATS loss noticed")
    nats.start()
    wait_for_port(nats.host, nats.port, 10)
    wait_until(lambda: api.get("/ready").status_code == 200, 30, what="NATS back")

    assert wait_for_status(api, before["id"], "ready")["id"] == before["id"]  # accepted before: not lost
    after = api.post("/clusters", json=seed_request(service_name="after"))
    assert after.status_code == 202
    wait_for_status(api, after.json()["id"], "ready")
    for cluster in (before, after.json()):
        api.delete(f"/clusters/{cluster['id']}")


def test_after_a_quick_nats_restart_another_replicas_write_is_seen(api, nats):
    cluster = api.post("/clusters", json=seed_request(service_name="seen")).json()
    nats.kill()
    nats.start()  # back at once: the old watch notices no outage until its heartbeats are missed
    wait_for_port(nats.host, nats.port, 10)
    wait_until(lambda: api.get("/ready").status_code == 200, 30, what="NATS back")
    asyncio.run(_written_elsewhere(nats, cluster["id"], user="bob"))
    # seen at once, not after the ~17 s a stale watch took before the store resynced on reconnect
    wait_until(lambda: api.get(f"/clusters/{cluster['id']}").json()["user"] == "bob", 8, interval_s=0.1,
               what="a write of another replica seen")
    api.delete(f"/clusters/{cluster['id']}")


async def _written_elsewhere(nats, cluster_id: str, user: str) -> None:
    """Change a cluster record in KV the way another manager replica would."""
    connection = await nats_client.connect(f"nats://{nats.host}:{nats.port}")
    try:
        kv = await connection.jetstream().key_value(subjects.KV_CLUSTERS)
        while True:  # a revision conflict (the provisioner wrote meanwhile): read again and redo
            entry = await kv.get(cluster_id)
            record = ClusterRecord.model_validate_json(entry.value)
            try:
                await kv.update(cluster_id, record.model_copy(update={"user": user}).model_dump_json().encode(),
                                last=entry.revision)
                return
            except nats_client.js.errors.KeyWrongLastSequenceError:
                continue
    finally:
        await connection.close()
