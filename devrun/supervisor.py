"""The one supervisor of a platform on this machine: NATS and the services as child processes,
used by `make up` (`devrun/__main__.py`), the tests' fixtures and the benchmarks.

    supervisor = Supervisor(state_dir, env, managers=2)
    supervisor.start_all()
    supervisor.kill("manager-b"); supervisor.start("manager-b")
    supervisor.stop_all()

`ServiceProcess` is one service (`python -m services.<kind>`): started and waited for until its
/ready answers, SIGTERMed, SIGKILLed, started again in place (same port, state dir and NATS
store). With more than one manager, the replicas are `manager-a`, `manager-b`, ... on ports of
their own, sharing NATS and the state dir; each start gets a new ESS_INSTANCE_ID (`manager-a.2`
on its second start), as a replacement pod would, so a killed replica's leases pass to another
only when they lapse. Every start is noted in the service's log (`<state>/logs/<name>.log`), so
a log read after a chaos run shows where each process began.
"""

from __future__ import annotations

import datetime
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from devrun.nats_server import ChildProcess, NatsServer, jetstream_ready, nats_cluster
from services.manager.drivers.local_processes import stop_all_engines

REPO = Path(__file__).resolve().parents[1]
NATS = "nats"
KINDS = ("manager", "shard_controller", "reporting", "gateway")
PORT_SETTING = {"manager": "ESS_API_PORT", "shard_controller": "ESS_SHARD_CONTROLLER_PORT",
                "reporting": "ESS_REPORTING_PORT", "gateway": "ESS_GATEWAY_PORT"}


# listening ports are drawn from below Linux's ephemeral range (32768-60999 by default) and the
# engines' port slots: a port the kernel handed out (bind to 0) could be taken as the local port
# of an outgoing connection before its server bound it (an etcd start failed so in CI)
LISTEN_PORTS = range(10000, 19000)
_given: set[int] = set()  # never the same twice in one process, bound or not yet


def free_port() -> int:
    """A loopback port nothing listens on now, for a server about to start."""
    for _ in range(2000):
        port = random.choice(LISTEN_PORTS)
        if port in _given:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError(f"no free port in {LISTEN_PORTS.start}-{LISTEN_PORTS.stop - 1}")


def wait_ready(name: str, process: subprocess.Popen, port: int, log: Path | None, timeout_s: float = 30) -> None:
    """Until the service answers 200 on /ready; raises with the log's tail if it exits or is late."""
    deadline = time.monotonic() + timeout_s
    tail = (lambda: log.read_text(errors="replace")[-2000:] if log and log.exists() else "(see above)")
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail()}")
        if is_ready(port):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{name} not ready within {timeout_s} s:\n{tail()}")


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


class ServiceProcess(ChildProcess):
    """One service as a real process that its owner may SIGKILL and start again in place.

    `env`: the ESS_* settings (this service's port setting is added from `port`); `log_dir`
    None lets it write to this terminal (`make up`), else to `<log_dir>/<name>.log`.
    """

    def __init__(self, module: str, env: dict[str, str], port: int, log_dir: Path | None,
                 name: str | None = None, replica_ids: bool = False):
        self.module, self.port, self.log_dir = module, port, log_dir
        self.kind = module.rsplit(".", 1)[-1]
        self.name = name or self.kind
        self.env = {**env, PORT_SETTING[self.kind]: str(port)}
        self.replica_ids = replica_ids  # each start a new ESS_INSTANCE_ID, as a new pod would have
        self.starts = 0
        self.stop_timeout_s = 15

    @property
    def log_path(self) -> Path | None:
        return self.log_dir / f"{self.name}.log" if self.log_dir else None

    def note(self, what: str) -> None:
        if self.log_path:
            with open(self.log_path, "a") as log:
                log.write(f"--- supervisor: {what} at {datetime.datetime.now().isoformat(timespec='milliseconds')}\n")

    def spawn(self) -> None:
        """Start it without waiting (`start` waits until it is ready)."""
        self.starts += 1
        env = {**os.environ, **self.env}
        if self.replica_ids:
            env["ESS_INSTANCE_ID"] = f"{self.name}.{self.starts}"
        self.note(f"start {self.starts}")
        log = open(self.log_path, "ab") if self.log_path else None
        try:
            # own process group: a Ctrl-C reaches only the supervisor, which stops them in order
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module], env=env, cwd=REPO, stdout=log,
                stderr=subprocess.STDOUT if log else None, stdin=subprocess.DEVNULL, process_group=0,
            )
        finally:
            if log:
                log.close()

    def wait_ready(self, timeout_s: float = 30) -> None:
        wait_ready(self.name, self.process, self.port, self.log_path, timeout_s)

    def start(self, timeout_s: float = 60) -> None:
        self.spawn()
        self.wait_ready(timeout_s)

    def kill(self) -> int:
        """SIGKILL (no chance to clean up) and reap it; its pid."""
        pid = self.process.pid
        super().kill()
        self.note(f"SIGKILL of pid {pid}")
        return pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""


class Supervisor:
    def __init__(self, state: Path, env: dict[str, str], managers: int = 1,
                 ports: dict[str, int] | None = None, service_logs: bool = True, replicas: int = 1):
        """`env`: the ESS_* settings every service shares (ESS_NATS_URL and ESS_STATE_DIR at least).
        `ports`: by kind (`make up`'s fixed ones); else free ports are chosen here (the gateway's
        metrics port too, unless `env` names one).
        `service_logs` False: the services write to this terminal instead of `<state>/logs`.
        `replicas`: of the shard controller and reporting each (`reporting-a`, `reporting-b`, ...)."""
        self.state = state
        self.logs = state / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = env
        # one server, or a JetStream cluster of several (ESS_NATS_URL a comma list): `nats-1`, ...
        servers = nats_cluster(env["ESS_NATS_URL"].split(","), free_port, state / "nats", self.logs)
        self.nats: dict[str, NatsServer] = ({NATS: servers[0]} if len(servers) == 1 else
                                            {s.route.name: s for s in servers if s.route})
        ports = ports or {}
        gateway_port = ports.get("gateway") or free_port()
        self.env.setdefault("ESS_GATEWAY_URL", f"http://127.0.0.1:{gateway_port}")  # the endpoint the API shows
        # two platforms on one machine cannot both take the default 9201
        self.env.setdefault("ESS_GATEWAY_METRICS_PORT", str(free_port()))
        log_dir = self.logs if service_logs else None
        names = ["manager"] if managers == 1 else [f"manager-{chr(ord('a') + i)}" for i in range(managers)]
        self.services: dict[str, ServiceProcess] = {
            name: ServiceProcess("services.manager", self.env, ports.get("manager") or free_port(), log_dir,
                                 name, replica_ids=managers > 1)
            for name in names
        }
        for kind in KINDS[1:]:
            count = 1 if kind == "gateway" else replicas
            for name in [kind] if count == 1 else [f"{kind}-{chr(ord('a') + i)}" for i in range(count)]:
                port = gateway_port if kind == "gateway" else (ports.get(kind) if count == 1 else None) or free_port()
                self.services[name] = ServiceProcess(f"services.{kind}", self.env, port, log_dir, name)

    @property
    def api_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{s.port}" for s in self.services.values() if s.kind == "manager"]

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.services['gateway'].port}"

    @property
    def names(self) -> list[str]:
        """Everything that can be killed and started again: NATS (each server) and each service."""
        return [*self.nats, *self.services]

    def pids(self) -> dict[str, int]:
        return {s.name: s.process.pid for s in self.services.values() if s.running()}

    def running(self, name: str) -> bool:
        if name in self.nats:
            process = self.nats[name].process
            return process is not None and process.poll() is None
        return self.services[name].running()

    def ready(self, name: str) -> bool:
        return self.running(name) and (name in self.nats or is_ready(self.services[name].port))

    def start_nats(self) -> None:
        for server in self.nats.values():
            server.start()
        jetstream_ready(list(self.nats.values()))

    def start_all(self, timeout_s: float = 30) -> None:
        self.start_nats()
        for service in self.services.values():
            service.spawn()
        for service in self.services.values():
            service.wait_ready(timeout_s)

    def start(self, name: str, timeout_s: float = 60) -> None:
        """Start one again (after a kill) and wait until it is ready."""
        if name in self.nats:
            with open(self.nats[name].log_file, "a") as log:
                log.write(f"--- supervisor: start at {datetime.datetime.now().isoformat(timespec='milliseconds')}\n")
            self.nats[name].start()
            return
        self.services[name].start(timeout_s)

    def kill(self, name: str) -> int:
        """SIGKILL one (no chance to clean up) and reap it; its pid."""
        if name in self.nats:
            pid = self.nats[name].process.pid
            self.nats[name].kill()
            with open(self.nats[name].log_file, "a") as log:
                log.write(f"--- supervisor: SIGKILL of pid {pid}\n")
            return pid
        return self.services[name].kill()

    def restart_exited(self) -> list[str]:
        """Start again every service that exited on its own (`make up` keeps them running)."""
        exited = [s for s in self.services.values() if s.process is not None and s.process.poll() is not None]
        for service in exited:
            service.spawn()
        return [f"{s.name} (exit {s.process.returncode})" for s in exited]

    def stop_all(self, engine_stop_timeout_s: float = 20) -> int:
        """The services (SIGTERM, SIGKILL after 15 s), then every engine under the state dir, then
        NATS; how many engines were stopped."""
        stop_all([s.process for s in self.services.values() if s.process])
        stopped = stop_all_engines(self.state / "clusters", engine_stop_timeout_s)
        for server in self.nats.values():
            server.stop()
        return stopped
