"""Two shard controllers and two reporting replicas, as on Kubernetes: a cluster is polled by one
reporting replica at a time (its lease), a tenant's requests through the gateway are metered
exactly once, and when the replica polling the cluster, then the controller planning it, is
SIGKILLed, the other takes the cluster over within the lease's time.

It runs its own platform (two of each), not the session's.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import httpx
import nats as nats_client
import pytest

from bench.private_platform import AUTH, private_platform, seed_body
from libs.common import subjects
from tests.helpers import wait_until

PERIOD_S, POLL_S, LEASE_TTL_S = 5, 1, 3


def holder(nats_url: str, bucket: str, key: str) -> str | None:
    """Who holds the cluster's lease in `bucket` (host:port of the instance), or None."""
    async def read() -> str | None:
        connection = await nats_client.connect(nats_url)
        try:
            entry = await (await connection.jetstream().key_value(bucket)).get(key)
            return entry.value.decode() or None
        except nats_client.js.errors.KeyNotFoundError:
            return None
        finally:
            await connection.close()
    return asyncio.run(read())


def wait_for(what: str, check, timeout_s: float = 90):
    return wait_until(check, timeout_s, 0.3, what)


@pytest.mark.engine
def test_two_of_each_meter_once_and_one_takes_over_when_the_other_dies():
    env = {"ESS_METERING_PERIOD_S": str(PERIOD_S), "ESS_POLL_INTERVAL_S": str(POLL_S),
           "ESS_LEASE_TTL_S": str(LEASE_TTL_S), "ESS_WARM_ENGINES": "0"}
    with private_platform(env=env, replicas=2) as running:
        sup = running.supervisor
        running.keep_state = True  # its logs, until the checks passed
        nats_url = sup.env["ESS_NATS_URL"]
        api = httpx.Client(base_url=sup.api_urls[0], headers=AUTH, timeout=30)
        body = seed_body("replicas")
        tenant = body["tenant_org_id"]
        assert api.post("/tenants", json={"tenant_org_id": tenant}).status_code == 201
        key = api.post(f"/tenants/{tenant}/keys", json={}).json()["key"]
        cluster = api.post("/clusters", json=body).json()["id"]
        wait_for("ready", lambda: api.get(f"/clusters/{cluster}").json()["status"] == "ready", 180)
        gateway = httpx.Client(base_url=f"{sup.gateway_url}/{cluster}", timeout=30,
                               headers={"Authorization": f"ApiKey {key}"})
        sent = 0

        def call(method: str, path: str, **kwargs) -> None:
            nonlocal sent
            answer = gateway.request(method, path, **kwargs)
            sent += 1
            assert answer.status_code < 300, answer.text

        def by_port(lease: str) -> str:
            port = int(lease.rsplit(":", 1)[1])
            return next(s.name for s in sup.services.values() if s.port == port)

        call("PUT", "/kept", json={"settings": {"number_of_shards": 1, "number_of_replicas": 0}})
        for _ in range(100):  # two whole periods with both replicas up
            call("GET", "/kept/_count")
            time.sleep(0.1)
        polling = wait_for("a reporting lease", lambda: holder(nats_url, subjects.KV_REPORTING_LEASES, cluster))
        sup.kill(by_port(polling))
        for _ in range(100):  # across the lease's lapse
            call("GET", "/kept/_count")
            time.sleep(0.05)
        taken = wait_for("the other reporting replica polling", lambda: (
            lease := holder(nats_url, subjects.KV_REPORTING_LEASES, cluster)) not in (None, polling) and lease)
        assert by_port(taken).startswith("reporting-")
        sup.start(by_port(polling))  # back, as a pod would be: two replicas again, one polling

        planning = wait_for("a controller lease", lambda: holder(nats_url, subjects.KV_CONTROLLER_LEASES, cluster))
        sup.kill(by_port(planning))
        call("GET", "/kept/_count")
        killed_at = datetime.now(timezone.utc)
        wait_for("a plan by the other controller", lambda: (
            (plan := api.get(f"/clusters/{cluster}/plan").json()).get("planned_at")
            and datetime.fromisoformat(plan["planned_at"]) > killed_at + timedelta(seconds=LEASE_TTL_S)))
        assert holder(nats_url, subjects.KV_CONTROLLER_LEASES, cluster) not in (None, planning)
        traffic_end = datetime.now(timezone.utc)

        def closed_after_traffic() -> list[dict] | None:
            now = datetime.now(timezone.utc)
            records = api.get(f"/tenants/{tenant}/usage", params={
                "from": (now - timedelta(hours=1)).isoformat(), "to": (now + timedelta(hours=1)).isoformat(),
            }).json()["records"]
            # every period that could hold a request is closed once one starts a period after the traffic
            late = [r for r in records if datetime.fromisoformat(r["period_start"]) > traffic_end + timedelta(
                seconds=PERIOD_S)]
            return records if late else None
        records = wait_for("the periods of the traffic closed", closed_after_traffic, 120)
        assert sum(r["requests"] for r in records) == sent  # metered once: none lost at the kill, none twice
        # one replica polls a cluster: a period holds about PERIOD_S / POLL_S samples, not twice that
        assert max(r["samples"] for r in records) <= PERIOD_S / POLL_S + 2, [r["samples"] for r in records]
        assert len(records) >= 6  # periods before, across and after the kills
        api.delete(f"/clusters/{cluster}")
        running.keep_state = False
