"""`python -m devrun setup|up|down`: the whole platform on this machine, no Docker.

`up` runs NATS and the four services in the foreground and stops everything it started
(tenant engines included) on Ctrl-C or SIGTERM; `down` asks a running `up` to do so.
It reads the sections that say where each service listens, the operator key it makes, and the
local driver's (engines to install, the state dir, leftover engines to stop).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from libs.common.settings import (
    ELASTICSEARCH819_VERSION,
    ENGINE_VERSION,
    OPENSEARCH3_VERSION,
    AccessSection,
    ApiSection,
    BindSection,
    GatewaySection,
    LocalDriverSection,
    NatsSection,
    ReportingSection,
    ShardControllerSection,
)
from devrun.engine_setup import (
    SetupError, install_elasticsearch, install_elasticsearch819, install_engine, install_opensearch3,
)
from devrun.nats_server import NatsServer
from devrun.pump_build import build_pump
from devrun.supervisor import Supervisor
from services.manager.drivers.local_launch import opensearch3_java
from services.manager.drivers.local_processes import stop_all_engines



def _ports(settings: DevrunSettings) -> dict[str, int]:
    return {"manager": settings.api_port, "shard_controller": settings.shard_controller_port,
            "reporting": settings.reporting_port, "gateway": settings.gateway_port}


class DevrunSettings(NatsSection, BindSection, ApiSection, AccessSection, GatewaySection, ReportingSection,
                     ShardControllerSection, LocalDriverSection):
    pass


def _pidfile(settings: DevrunSettings) -> Path:
    return settings.state_dir.resolve() / "platform.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) == 0


def setup(settings: DevrunSettings) -> int:
    for name, install, home in (("OpenSearch", install_engine, settings.engine_home),
                                ("Elasticsearch", install_elasticsearch, settings.elasticsearch_home),
                                (f"Elasticsearch {ELASTICSEARCH819_VERSION}", install_elasticsearch819,
                                 settings.elasticsearch819_home)):
        try:
            installed = install(home, settings.java_bin)
        except SetupError as exc:
            print(f"setup: {exc}", file=sys.stderr)
            return 2
        print(f"{name} engine {'installed' if installed else 'already installed'} in {home}")
    java21 = opensearch3_java(settings)
    if java21 is None:
        print(f"setup: OpenSearch {OPENSEARCH3_VERSION} not installed: it needs Java 21 or later (install one under "
              f"/usr/lib/jvm, or set ESS_JAVA21_BIN); clusters are offered OpenSearch {ENGINE_VERSION} alone",
              file=sys.stderr)
    else:
        try:
            installed = install_opensearch3(settings.engine3_home, java21)
        except SetupError as exc:
            print(f"setup: {exc}", file=sys.stderr)
            return 2
        print(f"OpenSearch {OPENSEARCH3_VERSION} engine {'installed' if installed else 'already installed'} in "
              f"{settings.engine3_home} (on {java21})")
    if settings.gateway_pump and not settings.gateway_pump_bin:
        try:
            print(build_pump(settings))
        except subprocess.CalledProcessError as exc:
            print(f"setup: building the gateway's byte pump failed ({exc}); see Go's output above", file=sys.stderr)
            return 2
    return 0


def _operator_key(settings: DevrunSettings, state: Path) -> str:
    """ESS_OPERATOR_KEY, or one made on the first run and kept (0600) in the state dir."""
    if settings.operator_key:
        return "operator key: the one in ESS_OPERATOR_KEY"
    path = state / "operator.key"
    if path.exists():
        os.environ["ESS_OPERATOR_KEY"] = path.read_text().strip()
        return f"operator key: in {path} (export KEY=$(cat {path}))"
    key = secrets.token_urlsafe(32)
    path.touch(mode=0o600)
    path.write_text(key)
    os.environ["ESS_OPERATOR_KEY"] = key  # the services inherit it
    return f"operator key (shown once, kept in {path}): {key}"


def up(settings: DevrunSettings) -> int:
    if setup(settings):
        return 2
    pidfile = _pidfile(settings)
    if pidfile.exists() and _alive(int(pidfile.read_text())):
        print(f"the platform already runs (pid {pidfile.read_text()}); `make down` stops it", file=sys.stderr)
        return 1
    busy = [f"{name} {port}" for name, port in (
        ("ESS_API_PORT", settings.api_port), ("ESS_SHARD_CONTROLLER_PORT", settings.shard_controller_port),
        ("ESS_REPORTING_PORT", settings.reporting_port), ("ESS_GATEWAY_PORT", settings.gateway_port),
        ("ESS_GATEWAY_METRICS_PORT", settings.gateway_metrics_port),
        ("ESS_NATS_URL", NatsServer.port_of(settings.nats_url)),
    ) if _listening(settings.api_host, port)]
    if busy:
        print(f"ports in use: {', '.join(busy)}; stop what holds them or set those variables", file=sys.stderr)
        return 1
    state = settings.state_dir.resolve()
    state.mkdir(parents=True, exist_ok=True)
    pidfile.write_text(str(os.getpid()))
    key_note = _operator_key(settings, state)
    stopping = False

    def request_stop(signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    # the services inherit this process's environment (ESS_* and the operator key) and write
    # to this terminal; NATS logs to <state>/logs/nats.log
    supervisor = Supervisor(state, {"ESS_NATS_URL": settings.nats_url, "ESS_GATEWAY_URL": settings.public_gateway_url,
                                    "ESS_GATEWAY_METRICS_PORT": str(settings.gateway_metrics_port)},
                            ports=_ports(settings), service_logs=False)
    try:
        supervisor.start_nats()
        for service in supervisor.services.values():
            service.spawn()
        api = f"http://{settings.api_host}:{settings.api_port}"
        for name in ("manager", "gateway"):
            try:
                supervisor.services[name].wait_ready(30)
            except RuntimeError as exc:
                print(f"{exc}; see the log above", file=sys.stderr)
                return 1
        print(f"\nes-serverless is up: API {api}  (OpenAPI {api}/docs)  NATS {settings.nats_url}\n"
              f"tenant endpoint (gateway): {settings.public_gateway_url}/<cluster id>, with Authorization: ApiKey <key>\n"
              f"{key_note}\n"
              f"Ctrl-C or `make down` stops it and every engine it started.\n", flush=True)
        while not stopping:
            for exited in supervisor.restart_exited():
                print(f"{exited} exited; restarted it", file=sys.stderr)
            time.sleep(0.5)
        return 0
    finally:
        stopped = supervisor.stop_all(settings.engine_stop_timeout_s)
        pidfile.unlink(missing_ok=True)
        print(f"es-serverless stopped ({stopped} engine(s) stopped)", file=sys.stderr)


def down(settings: DevrunSettings) -> int:
    pidfile = _pidfile(settings)
    if pidfile.exists() and _alive(pid := int(pidfile.read_text())):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        print("es-serverless stopped")
    else:
        stopped = stop_all_engines(settings.clusters_dir, settings.engine_stop_timeout_s)
        print(f"es-serverless was not running ({stopped} leftover engine(s) stopped)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m devrun")
    parser.add_argument("command", choices=["setup", "up", "down"])
    args = parser.parse_args()
    settings = DevrunSettings()
    return {"setup": setup, "up": up, "down": down}[args.command](settings)


if __name__ == "__main__":
    sys.exit(main())
