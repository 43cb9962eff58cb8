"""`python -m libs.devrun setup|up|down`: the whole platform on this machine, no Docker.

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
import urllib.request
from pathlib import Path

from libs.common.settings import (
    AccessSection,
    ApiSection,
    BindSection,
    GatewaySection,
    LocalDriverSection,
    NatsSection,
    ReportingSection,
    ShardControllerSection,
)
from libs.devrun.engine_setup import SetupError, install_elasticsearch, install_engine
from libs.devrun.nats_server import NatsServer
from services.manager.drivers.local_processes import stop_all_engines

SERVICES = ("manager", "shard_controller", "reporting", "gateway")


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
                                ("Elasticsearch", install_elasticsearch, settings.elasticsearch_home)):
        try:
            installed = install(home, settings.java_bin)
        except SetupError as exc:
            print(f"setup: {exc}", file=sys.stderr)
            return 2
        print(f"{name} engine {'installed' if installed else 'already installed'} in {home}")
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


def _wait_ready(url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


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
    nats = NatsServer(settings.nats_url, state / "nats", state / "logs" / "nats.log")
    children: dict[str, subprocess.Popen] = {}
    try:
        nats.start()
        for name in SERVICES:
            # own process group: Ctrl-C reaches the supervisor, which stops them in order
            children[name] = subprocess.Popen([sys.executable, "-m", f"services.{name}"], process_group=0)
        api = f"http://{settings.api_host}:{settings.api_port}"
        if not _wait_ready(f"{api}/ready", 30):
            print("the manager did not become ready within 30 s; see the log above", file=sys.stderr)
            return 1
        if not _wait_ready(f"http://{settings.gateway_host}:{settings.gateway_port}/ready", 30):
            print("the gateway did not become ready within 30 s; see the log above", file=sys.stderr)
            return 1
        print(f"\nes-serverless is up: API {api}  (OpenAPI {api}/docs)  NATS {settings.nats_url}\n"
              f"tenant endpoint (gateway): {settings.public_gateway_url}/<cluster id>, with Authorization: ApiKey <key>\n"
              f"{key_note}\n"
              f"Ctrl-C or `make down` stops it and every engine it started.\n", flush=True)
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None and not stopping:
                    print(f"{name} exited with {child.returncode}; restarting it", file=sys.stderr)
                    children[name] = subprocess.Popen([sys.executable, "-m", f"services.{name}"], process_group=0)
            time.sleep(0.5)
        return 0
    finally:
        for child in children.values():
            if child.poll() is None:
                child.terminate()
        for child in children.values():
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
        stopped = stop_all_engines(settings.clusters_dir, settings.engine_stop_timeout_s)
        nats.stop()
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
    parser = argparse.ArgumentParser(prog="python -m libs.devrun")
    parser.add_argument("command", choices=["setup", "up", "down"])
    args = parser.parse_args()
    settings = DevrunSettings()
    return {"setup": setup, "up": up, "down": down}[args.command](settings)


if __name__ == "__main__":
    sys.exit(main())
