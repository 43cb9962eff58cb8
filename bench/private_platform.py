"""A private platform for benchmarks: NATS and the three services on free ports in a temp dir.

    with private_platform() as p:
        httpx.get(f"{p.api}/clusters")

On exit (normal, exception, Ctrl-C or SIGTERM) the services get SIGTERM (then SIGKILL),
every engine under <state>/clusters is stopped, NATS is stopped and the temp dir removed.

Scripts run as `python bench/<script>.py` put the repo, not bench/, first on sys.path:
this file is named like the stdlib `platform` module and would shadow it otherwise.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from libs.devrun.nats_server import NatsServer
from services.manager.drivers.local import stop_all_engines

REPO = Path(__file__).resolve().parents[1]
SERVICES = ("manager", "shard_controller", "reporting")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


OPERATOR_KEY = secrets.token_urlsafe(24)
AUTH = {"Authorization": f"ApiKey {OPERATOR_KEY}"}  # every API call of the benchmarks


@dataclass
class Running:
    api: str  # base URL of the manager API
    state_dir: Path
    pids: dict[str, int]  # service name -> pid


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # so the `finally` below runs


def _wait_ready(name: str, process: subprocess.Popen, port: int, log: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{name} not ready within {timeout_s} s:\n{log.read_text(errors='replace')[-2000:]}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def stop_all(processes) -> None:
    """All asked to stop at once, then waited for (killed after 15 s each)."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        _stop(process)


def run_alone(run) -> None:
    """`main` of a benchmark script: its `run` in a private platform of its own, figures printed."""
    with private_platform() as running:
        lines = run(running)
    print("\n".join(lines))


@contextmanager
def private_platform():
    state = Path(tempfile.mkdtemp(prefix="ess-bench-")).resolve()
    ports = {name: free_port() for name in SERVICES}
    env = {
        "ESS_NATS_URL": f"nats://127.0.0.1:{free_port()}",
        "ESS_STATE_DIR": str(state),
        "ESS_API_PORT": str(ports["manager"]),
        "ESS_SHARD_CONTROLLER_PORT": str(ports["shard_controller"]),
        "ESS_REPORTING_PORT": str(ports["reporting"]),
        "ESS_LOCAL_PORT_BASE": "39200",
        "ESS_LOG_LEVEL": "WARNING",
        "ESS_OPERATOR_KEY": OPERATOR_KEY,
        "ESS_RATE_LIMIT_BURST": "1000",  # the benchmarks measure speed, not the limiter
    }
    logs = state / "logs"
    logs.mkdir()
    nats = NatsServer(env["ESS_NATS_URL"], state / "nats", logs / "nats.log")
    processes: dict[str, subprocess.Popen] = {}
    previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        nats.start()
        for name in SERVICES:
            with open(logs / f"{name}.log", "ab") as log:
                # own process group: a Ctrl-C reaches only us, and we stop them in order
                processes[name] = subprocess.Popen(
                    [sys.executable, "-m", f"services.{name}"], env={**os.environ, **env}, cwd=REPO,
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, process_group=0,
                )
        for name, process in processes.items():
            _wait_ready(name, process, ports[name], logs / f"{name}.log")
        yield Running(f"http://127.0.0.1:{ports['manager']}", state, {n: p.pid for n, p in processes.items()})
    finally:
        previous_sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip cleanup
        try:
            stop_all(processes.values())
            stop_all_engines(state / "clusters")
            nats.stop()
            shutil.rmtree(state, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, previous_sigint)
            signal.signal(signal.SIGTERM, previous_sigterm)



def seed_body(name: str) -> dict:
    """The seed's POST /clusters body with a unique service name."""
    return {"tenant_org_id": "bench", "user": "bench", "service_name": f"{name}-{uuid.uuid4().hex[:8]}",
            "replicas": 1, "cpu": "500m", "memory": "512Mi", "storage": "5Gi"}


def delete_and_wait(api: httpx.Client, cluster_id: str, timeout_s: float = 90) -> None:
    """DELETE a cluster and wait until GET answers 404."""
    api.delete(f"/clusters/{cluster_id}")
    deadline = time.monotonic() + timeout_s
    while api.get(f"/clusters/{cluster_id}").status_code != 404:
        if time.monotonic() > deadline:
            raise RuntimeError(f"cluster {cluster_id} still there {timeout_s} s after DELETE")
        time.sleep(0.05)
