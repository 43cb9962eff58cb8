"""A platform run by a script: NATS and the services as child processes on free ports, each of
which can be SIGKILLed and started again in place (same port, state dir and NATS store).

    supervisor = Supervisor(state_dir, env, managers=2)
    supervisor.start_all()
    supervisor.kill("manager-b"); supervisor.start("manager-b")
    supervisor.stop_all()

With more than one manager, the replicas are `manager-a`, `manager-b`, ... on ports of their
own, sharing NATS and the state dir; each start gets a new ESS_INSTANCE_ID (`manager-a.2` on
its second start), as a replacement pod would, so a killed replica's leases pass to another
only when they lapse. Every start is noted in the service's log (`<state>/logs/<name>.log`),
so a log read after a chaos run shows where each process began.
"""

from __future__ import annotations

import datetime
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from libs.devrun.nats_server import NatsServer
from services.manager.drivers.local_processes import stop_all_engines

REPO = Path(__file__).resolve().parents[2]
NATS = "nats"
PORT_SETTING = {"manager": "ESS_API_PORT", "shard_controller": "ESS_SHARD_CONTROLLER_PORT",
                "reporting": "ESS_REPORTING_PORT", "gateway": "ESS_GATEWAY_PORT"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(name: str, process: subprocess.Popen, port: int, log: Path, timeout_s: float = 30) -> None:
    """Until the service answers 200 on /ready; raises with the log's tail if it exits or is late."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{log.read_text(errors='replace')[-2000:]}")
        if is_ready(port):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{name} not ready within {timeout_s} s:\n{log.read_text(errors='replace')[-2000:]}")


def is_ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def stop_process(process: subprocess.Popen, timeout_s: float = 15) -> None:
    """SIGTERM, then SIGKILL after `timeout_s`."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def stop_all(processes) -> None:
    """All asked to stop at once, then waited for (killed after 15 s each)."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        stop_process(process)


@dataclass
class Service:
    name: str  # manager-a, shard_controller, ...
    module: str  # services.manager
    port: int
    process: subprocess.Popen | None = None
    starts: int = 0


class Supervisor:
    def __init__(self, state: Path, env: dict[str, str], managers: int = 1):
        """`env`: the ESS_* settings every service shares (ESS_NATS_URL and ESS_STATE_DIR at least);
        the ports of the services are chosen here."""
        self.state = state
        self.logs = state / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = env
        self.nats = NatsServer(env["ESS_NATS_URL"], state / "nats", self.logs / "nats.log")
        names = ["manager"] if managers == 1 else [f"manager-{chr(ord('a') + i)}" for i in range(managers)]
        self.services = {name: Service(name, "services.manager", free_port()) for name in names}
        for kind in ("shard_controller", "reporting", "gateway"):
            self.services[kind] = Service(kind, f"services.{kind}", free_port())
        self.env.setdefault("ESS_GATEWAY_URL", self.gateway_url)  # the endpoint the API shows

    @property
    def api_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{s.port}" for s in self.services.values() if s.module == "services.manager"]

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.services['gateway'].port}"

    @property
    def names(self) -> list[str]:
        """Everything that can be killed and started again: NATS and each service."""
        return [NATS, *self.services]

    def pids(self) -> dict[str, int]:
        return {s.name: s.process.pid for s in self.services.values() if s.process and s.process.poll() is None}

    def running(self, name: str) -> bool:
        process = self.nats.process if name == NATS else self.services[name].process
        return process is not None and process.poll() is None

    def ready(self, name: str) -> bool:
        return self.running(name) and (name == NATS or is_ready(self.services[name].port))

    def _note(self, name: str, what: str) -> None:
        with open(self.logs / f"{name}.log", "a") as log:
            log.write(f"--- supervisor: {what} at {datetime.datetime.now().isoformat(timespec='milliseconds')}\n")

    def _spawn(self, service: Service) -> None:
        service.starts += 1
        kind = service.module.rsplit(".", 1)[1]
        env = {**os.environ, **self.env, PORT_SETTING[kind]: str(service.port)}
        if len(self.api_urls) > 1 and kind == "manager":
            env["ESS_INSTANCE_ID"] = f"{service.name}.{service.starts}"
        self._note(service.name, f"start {service.starts}")
        with open(self.logs / f"{service.name}.log", "ab") as log:
            # own process group: a Ctrl-C reaches only the script, which stops them in order
            service.process = subprocess.Popen(
                [sys.executable, "-m", service.module], env=env, cwd=REPO,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, process_group=0,
            )

    def start_all(self, timeout_s: float = 30) -> None:
        self.nats.start()
        for service in self.services.values():
            self._spawn(service)
        for service in self.services.values():
            wait_ready(service.name, service.process, service.port, self.logs / f"{service.name}.log", timeout_s)

    def start(self, name: str, timeout_s: float = 60) -> None:
        """Start one again (after a kill) and wait until it is ready."""
        if name == NATS:
            self._note(NATS, "start")
            self.nats.start()
            return
        service = self.services[name]
        self._spawn(service)
        wait_ready(name, service.process, service.port, self.logs / f"{name}.log", timeout_s)

    def kill(self, name: str) -> int:
        """SIGKILL one (no chance to clean up) and reap it; its pid."""
        process = self.nats.process if name == NATS else self.services[name].process
        process.send_signal(signal.SIGKILL)
        process.wait()
        self._note(name, f"SIGKILL of pid {process.pid}")
        return process.pid

    def stop_all(self) -> None:
        """The services (SIGTERM, SIGKILL after 15 s), then every engine under the state dir, then NATS."""
        stop_all([s.process for s in self.services.values() if s.process])
        stop_all_engines(self.state / "clusters")
        self.nats.stop()
