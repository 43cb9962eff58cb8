"""A private platform for benchmarks: NATS and the four services on free ports in a temp dir.

    with private_platform() as p:
        httpx.get(f"{p.api}/clusters")

On exit (normal, exception, Ctrl-C or SIGTERM) the services get SIGTERM (then SIGKILL),
every engine under <state>/clusters is stopped, NATS is stopped and the temp dir removed,
unless the caller set `keep_state` (a failed chaos run keeps its logs to be read).
`private_platform(managers=2, env={...}, replicas=2)` runs two manager replicas (two shard
controllers and two reporting) and extra settings; the
`supervisor` of a running platform kills and restarts its parts (devrun/supervisor.py).

Scripts run as `python bench/<script>.py` put the repo, not bench/, first on sys.path:
this file is named like the stdlib `platform` module and would shadow it otherwise.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from devrun.supervisor import Supervisor, free_port
from services.manager.drivers.local_processes import find_standbys

OPERATOR_KEY = secrets.token_urlsafe(24)
AUTH = {"Authorization": f"ApiKey {OPERATOR_KEY}"}  # every API call of the benchmarks


@dataclass
class Running:
    api: str  # base URL of the (first) manager API
    state_dir: Path
    pids: dict[str, int]  # service name -> pid, at start
    supervisor: Supervisor
    keep_state: bool = False  # set it to leave the state dir (logs, engine logs) behind


def exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # so the `finally` below runs


def run_alone(run) -> None:
    """`main` of a benchmark script: its `run` in a private platform of its own, figures printed."""
    with private_platform() as running:
        lines = run(running)
    print("\n".join(lines))


@contextmanager
def private_platform(managers: int = 1, env: dict[str, str] | None = None, replicas: int = 1):
    state = Path(tempfile.mkdtemp(prefix="ess-bench-")).resolve()
    settings = {
        "ESS_NATS_URL": f"nats://127.0.0.1:{free_port()}",
        "ESS_STATE_DIR": str(state),
        # below the ephemeral ports (32768 on), where a busy machine's client sockets took a slot's
        # ports and a test's cluster found "no free port slot"; below `make up`'s 19200 too
        "ESS_LOCAL_PORT_BASE": "17200",
        "ESS_LOG_LEVEL": "WARNING",
        "ESS_OPERATOR_KEY": OPERATOR_KEY,
        "ESS_RATE_LIMIT_BURST": "1000",  # the benchmarks measure speed, not the limiter
        **(env or {}),
    }
    supervisor = Supervisor(state, settings, managers, replicas=replicas)
    running = Running(supervisor.api_urls[0], state, {}, supervisor)
    previous_sigterm = signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        supervisor.start_all()
        running.pids = supervisor.pids()
        yield running
    finally:
        previous_sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip cleanup
        try:
            supervisor.stop_all()
            if running.keep_state:
                print(f"state dir kept: {state}", flush=True)
            else:
                shutil.rmtree(state, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, previous_sigint)
            signal.signal(signal.SIGTERM, previous_sigterm)


def seed_body(name: str, memory: str = "512Mi") -> dict:
    """The seed's POST /clusters body with a unique service name (`WARM_MEMORY`: the README tour's
    size, which the pool of warm engines serves)."""
    return {"tenant_org_id": "bench", "user": "bench", "service_name": f"{name}-{uuid.uuid4().hex[:8]}",
            "replicas": 1, "cpu": "500m", "memory": memory, "storage": "5Gi"}


WARM_MEMORY = "1Gi"


def wait_for_idle_standby(running: Running, engine: str = "opensearch", timeout_s: float = 180) -> None:
    """Until the pool holds a warmed-up standby of `engine` (not timed: a refill between rounds)."""
    deadline = time.monotonic() + timeout_s
    while not any(s.engine == engine and s.ready and not s.assigned
                  for s in find_standbys(running.state_dir / "standby")):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no idle {engine} standby within {timeout_s} s")
        time.sleep(0.1)


def delete_and_wait(api: httpx.Client, cluster_id: str, timeout_s: float = 90) -> None:
    """DELETE a cluster and wait until GET answers 404."""
    api.delete(f"/clusters/{cluster_id}")
    deadline = time.monotonic() + timeout_s
    while api.get(f"/clusters/{cluster_id}").status_code != 404:
        if time.monotonic() > deadline:
            raise RuntimeError(f"cluster {cluster_id} still there {timeout_s} s after DELETE")
        time.sleep(0.05)
