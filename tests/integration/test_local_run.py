"""`make up` / `make down` as a developer uses them, and NATS restarting under the platform."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx

from libs.devrun.nats_server import wait_for_port
from services.manager.drivers.local import find_engines
from tests.conftest import OPERATOR, seed_request
from tests.helpers import REPO, free_port, wait_for_status, wait_until


def test_up_runs_everything_and_down_stops_everything(tmp_path, engine_installed):
    env = {
        **os.environ,
        "ESS_STATE_DIR": str(tmp_path),
        "ESS_NATS_URL": f"nats://127.0.0.1:{free_port()}",
        "ESS_API_PORT": str(free_port()),
        "ESS_SHARD_CONTROLLER_PORT": str(free_port()),
        "ESS_REPORTING_PORT": str(free_port()),
        "ESS_LOCAL_PORT_BASE": "33200",
    }
    output = tmp_path / "up.log"  # a file, not a pipe: nobody has to keep reading it
    with open(output, "wb") as sink:
        up = subprocess.Popen([sys.executable, "-m", "libs.devrun", "up"], cwd=REPO, env=env,
                              stdout=sink, stderr=subprocess.STDOUT)
    try:
        banner = wait_until(lambda: "es-serverless is up" in (text := output.read_text()) and text, 60,
                            what=f"the banner of `up` (pid {up.pid})")
        api_url = f"http://127.0.0.1:{env['ESS_API_PORT']}"
        assert api_url in banner
        with httpx.Client(base_url=api_url, timeout=30, headers=OPERATOR) as api:
            cluster = api.post("/clusters", json=seed_request()).json()
            wait_for_status(api, cluster["id"], "ready")
        assert len(find_engines(tmp_path.resolve() / "clusters")) == 1

        down = subprocess.run([sys.executable, "-m", "libs.devrun", "down"], cwd=REPO, env=env,
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
    for port in (env["ESS_API_PORT"], env["ESS_NATS_URL"].rsplit(":", 1)[1]):
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
