"""Session fixtures: a real nats-server, the three services as processes, real engine JVMs.

Everything started here is stopped at the end, and the suite checks that no engine is left.
"""

from __future__ import annotations

import random
import uuid
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from devrun.engine_setup import install_elasticsearch, install_elasticsearch819, install_engine, install_opensearch3
from devrun.nats_server import NatsServer
from services.manager.drivers.local_launch import opensearch3_java
from services.manager.drivers.local_processes import find_engines, find_standbys, stop_all_engines
from devrun.pump_build import build_pump
from devrun.supervisor import free_port
from devrun.supervisor import ServiceProcess
from tests.helpers import PlatformSettings, wait_for_status


OPERATOR_KEY = f"op-{uuid.uuid4().hex}"
OPERATOR = {"Authorization": f"ApiKey {OPERATOR_KEY}"}
ISSUED_KEYS: list[str] = []  # every key the tests make: none may reach a log line


def key_header(key: str) -> dict[str, str]:
    return {"Authorization": f"ApiKey {key}"}


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_logs(state_dir):
    """After the whole suite: no log of any service holds the operator key or an issued key."""
    yield
    for log in (state_dir / "logs").glob("*.log"):
        text = log.read_text(errors="replace")
        for secret in [OPERATOR_KEY, *ISSUED_KEYS]:
            assert secret not in text, f"a key leaked into {log.name}"


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="session")
def platform_env(state_dir: Path) -> dict[str, str]:
    return {
        "ESS_NATS_URL": f"nats://127.0.0.1:{free_port()}",
        "ESS_STATE_DIR": str(state_dir),
        "ESS_API_PORT": str(free_port()),
        "ESS_SHARD_CONTROLLER_PORT": str(free_port()),
        "ESS_REPORTING_PORT": str(free_port()),
        "ESS_GATEWAY_PORT": str(free_port()),
        "ESS_GATEWAY_METRICS_PORT": str(free_port()),
        "ESS_ACTIVITY_FLUSH_S": "2",
        # two byte pumps share the tenants' port in every gateway test (issue 23: the guarantees hold with workers)
        "ESS_GATEWAY_WORKERS": "2",
        # away from a developer's `make up` (19200...) and, at random, from another test run's
        # engines (below the ephemeral ports, 32768 on)
        "ESS_LOCAL_PORT_BASE": str(21000 + 2000 * random.randrange(6)),
        "ESS_RECONCILE_INTERVAL_S": "1",
        "ESS_POLL_INTERVAL_S": "1",
        "ESS_METERING_PERIOD_S": "8",
        "ESS_LOG_LEVEL": "INFO",
        "ESS_OPERATOR_KEY": OPERATOR_KEY,
        "ESS_RATE_LIMIT_PER_MINUTE": "600",
        "ESS_RATE_LIMIT_BURST": "100",
        "ESS_LEASE_TTL_S": "6",  # a killed manager replica's clusters pass to the other quickly
        "ESS_LOCAL_RESTART_STALL_S": "60",  # a stalled upgrade is given up within a test (300 s by default)
    }


@pytest.fixture(scope="session")
def settings(platform_env, monkeypatch_session) -> PlatformSettings:
    for key, value in platform_env.items():
        monkeypatch_session.setenv(key, value)
    return PlatformSettings()


@pytest.fixture(scope="session")
def monkeypatch_session():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="session")
def nats(settings: PlatformSettings, state_dir: Path):
    server = NatsServer(settings.nats_url, state_dir / "nats", state_dir / "logs" / "nats.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def engine_installed(settings: PlatformSettings) -> None:
    install_engine(settings.engine_home, settings.java_bin)
    install_elasticsearch(settings.elasticsearch_home, settings.java_bin)
    install_elasticsearch819(settings.elasticsearch819_home, settings.java_bin)
    java21 = opensearch3_java(settings)
    assert java21, "OpenSearch 3 needs Java 21 or later: install one under /usr/lib/jvm, or set ESS_JAVA21_BIN"
    install_opensearch3(settings.engine3_home, java21)


@pytest.fixture(scope="session")
def manager(nats, settings, platform_env, state_dir, engine_installed):
    process = _service("services.manager", settings.api_port, platform_env, state_dir)
    yield process
    process.stop()
    stop_all_engines(settings.clusters_dir, 20)
    assert find_engines(settings.clusters_dir) == [], "engines left running"
    assert find_standbys(settings.standby_dir) == [], "standby engines left running"


@contextmanager
def shard_controller_with(policy: dict[str, str], settings, platform_env, state_dir):
    """A shard controller for one test module, with thresholds of its own (the session has none)."""
    process = _service("services.shard_controller", settings.shard_controller_port, {**platform_env, **policy},
                       state_dir)
    try:
        yield process
    finally:
        process.stop()


def _service(module: str, port: int, platform_env, state_dir):
    (state_dir / "logs").mkdir(exist_ok=True)
    process = ServiceProcess(module, platform_env, port, state_dir / "logs")
    process.start()
    return process


@pytest.fixture(scope="session")
def reporting(nats, settings, platform_env, state_dir):
    process = _service("services.reporting", settings.reporting_port, platform_env, state_dir)
    yield process
    process.stop()


@pytest.fixture(scope="session")
def gateway(nats, settings, platform_env, state_dir):
    print(build_pump(settings))  # as `make setup` does: a pytest run alone finds it built too
    process = _service("services.gateway", settings.gateway_port, platform_env, state_dir)
    yield process
    process.stop()


@pytest.fixture(scope="session")
def api(manager, gateway, settings) -> httpx.Client:
    with httpx.Client(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=30,
                      headers=OPERATOR) as client:
        yield client


def tenant_with_key(api: httpx.Client) -> tuple[str, str]:
    """A new tenant and a key of its own (remembered: no log may hold it)."""
    tenant = f"t{uuid.uuid4().hex[:8]}"
    assert api.post("/tenants", json={"tenant_org_id": tenant}).status_code == 201
    key = api.post(f"/tenants/{tenant}/keys", json={}).json()["key"]
    ISSUED_KEYS.append(key)
    return tenant, key


@contextmanager
def ready_cluster(api: httpx.Client, **overrides):
    """A cluster of the seed's request (with `overrides`), once `ready`; deleted afterwards."""
    created = api.post("/clusters", json=seed_request(**overrides)).json()
    try:
        yield wait_for_status(api, created["id"], "ready")
    finally:
        api.delete(f"/clusters/{created['id']}")


def seed_request(**overrides) -> dict:
    """The seed's POST /clusters body, with a fresh tenant so tests never collide."""
    body = {
        "tenant_org_id": f"t{uuid.uuid4().hex[:8]}", "user": "alice", "service_name": "search",
        "replicas": 1, "cpu": "500m", "memory": "512Mi", "storage": "5Gi",
    }
    body.update(overrides)
    return body
