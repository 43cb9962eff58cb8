"""Two manager replicas: each cluster is provisioned by the one holding its lease, and killing
that one mid-provisioning or mid-scale leaves the other to finish, with one JVM per node and one
`ready`."""

from __future__ import annotations

import asyncio

import httpx
import nats
import pytest

from libs.common import subjects
from services.manager.drivers.local_processes import find_engines
from tests.conftest import OPERATOR, seed_request
from devrun.supervisor import free_port
from devrun.supervisor import ServiceProcess
from tests.helpers import status_events, wait_for_status, wait_until


@pytest.fixture(scope="module")
def second_manager(manager, platform_env, state_dir):
    port = free_port()
    process = ServiceProcess("services.manager", {**platform_env, "ESS_API_PORT": str(port)}, port,
                             state_dir / "logs", name="manager-2")
    process.start()
    yield process
    process.stop()


async def _lease_holder(settings, cluster_id: str) -> str | None:
    connection = await nats.connect(settings.nats_url)
    try:
        kv = await connection.jetstream().key_value(subjects.KV_PROVISIONER_LEASES)
        try:
            return (await kv.get(cluster_id)).value.decode()
        except nats.js.errors.KeyNotFoundError:
            return None
    finally:
        await connection.close()


def _nodes_of(settings, cluster_id: str) -> list[int]:
    return sorted(n.node for n in find_engines(settings.clusters_dir) if n.cluster_id == cluster_id)


def _holder_process(holder: str, replicas: list[ServiceProcess]) -> ServiceProcess:
    [process] = [p for p in replicas if holder.endswith(f":{p.port}")]
    return process


async def _kill_the_holder(settings, cluster_id: str, replicas: list[ServiceProcess]) -> ServiceProcess:
    for _ in range(300):
        if holder := await _lease_holder(settings, cluster_id):
            break
        await asyncio.sleep(0.1)
    killed = _holder_process(holder, replicas)
    killed.kill()
    return killed


async def test_killing_the_provisioning_replica_leaves_the_other_to_finish(settings, manager, second_manager):
    replicas = [manager, second_manager]
    with httpx.Client(base_url=f"http://127.0.0.1:{second_manager.port}", timeout=30, headers=OPERATOR) as api:
        cluster = api.post("/clusters", json=seed_request(service_name="handover", replicas=2)).json()
        wait_until(lambda: _nodes_of(settings, cluster["id"]), 30, interval_s=0.05, what="nodes spawned")
        killed = await _kill_the_holder(settings, cluster["id"], replicas)
        survivor = next(p for p in replicas if p is not killed)
        with httpx.Client(base_url=f"http://127.0.0.1:{survivor.port}", timeout=30, headers=OPERATOR) as other:
            ready = wait_for_status(other, cluster["id"], "ready", timeout_s=120)
            assert ready["nodes"] == 2
            assert _nodes_of(settings, cluster["id"]) == [1, 2]  # no twin started by the survivor
            holder = await _lease_holder(settings, cluster["id"])
            assert holder.endswith(f":{survivor.port}")

            # mid-scale: the survivor now holds the cluster; kill it and bring the first back
            killed.start()
            assert other.patch(f"/clusters/{cluster['id']}", json={"replicas": 3}).status_code == 202
            wait_until(lambda: len(_nodes_of(settings, cluster["id"])) == 3, 60, interval_s=0.1,
                       what="third node spawned")
        survivor.kill()
        with httpx.Client(base_url=f"http://127.0.0.1:{killed.port}", timeout=30, headers=OPERATOR) as back:
            scaled = wait_for_status(back, cluster["id"], "ready", timeout_s=120)
            assert scaled["nodes"] == 3
            assert _nodes_of(settings, cluster["id"]) == [1, 2, 3]
            statuses = [e.status for e in await status_events(settings, scaled)]
            assert statuses.count("ready") == 2, statuses  # once provisioned, once scaled: no flapping
            assert "requested" not in statuses[1:], statuses
            survivor.start()
            back.delete(f"/clusters/{cluster['id']}")
        wait_until(lambda: _nodes_of(settings, cluster["id"]) == [], 60, what="nodes stopped")
