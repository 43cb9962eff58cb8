"""Density on the local driver: a hibernated cluster gives its port slot back, so clusters asleep
are bounded by disk, not by `ESS_LOCAL_PORT_SLOTS`; its wake takes whichever slot is free and
finds every document. Driven on the driver itself, with real engines and one slot only."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import httpx
import pytest

from libs.common.models import ClusterRecord, ClusterSpec
from libs.common.settings import LocalDriverSection
from services.manager.drivers import EngineUnavailable
from services.manager.drivers.local import LocalDriver
from services.manager.drivers.local_processes import find_engines

DOCS = 50


def record(cluster_id: str, formed: bool = False) -> ClusterRecord:
    spec = ClusterSpec(replicas=1, cpu="500m", memory="512Mi", storage="1Gi", version="2.19.1")
    return ClusterRecord(id=cluster_id, tenant_org_id="acme", user="a", service_name=cluster_id, spec=spec,
                         formed_at=datetime.now(timezone.utc) if formed else None)


async def healthy(driver: LocalDriver, cluster_id: str) -> str:
    for _ in range(600):
        observed = await driver.observe(cluster_id)
        if observed.health in ("green", "yellow"):
            return observed.endpoint
        await asyncio.sleep(0.2)
    raise AssertionError(f"{cluster_id} not healthy")


async def test_a_hibernated_cluster_gives_back_its_port_slot(tmp_path, engine_installed):
    settings = LocalDriverSection(state_dir=tmp_path, local_port_base=34200, local_port_slots=1, warm_engines=0)
    driver = LocalDriver(settings)
    size = driver.size_for(record("a").spec)
    try:
        await driver.start(record("a"), size)
        first = await healthy(driver, "a")
        body = "".join(f'{{"index":{{"_index":"kept","_id":"d{i}"}}}}\n{{"n":{i}}}\n' for i in range(DOCS))
        httpx.post(f"{first}/_bulk?refresh=true", content=body, timeout=60,
                   headers={"content-type": "application/x-ndjson"}).raise_for_status()
        await driver.hibernate(record("a", formed=True))
        assert [n for n in find_engines(settings.clusters_dir) if n.cluster_id == "a"] == []

        await driver.start(record("b"), size)  # the only slot, which the sleeping cluster gave back
        assert await healthy(driver, "b") == first
        with pytest.raises(EngineUnavailable, match="no free port slot"):
            await driver.start(record("a", formed=True), size)
        await driver.remove("b")

        await driver.start(record("a", formed=True), size)  # the wake: any free slot
        woken = await healthy(driver, "a")
        count = httpx.get(f"{woken}/kept/_count", timeout=30).json()["count"]
        assert count == DOCS
    finally:
        await driver.remove("a")
        await driver.remove("b")
    assert find_engines(settings.clusters_dir) == []
