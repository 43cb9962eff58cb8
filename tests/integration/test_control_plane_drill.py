"""The drill: with a tenant, its key, a cluster with documents, usage and an audit trail in place,
NATS loses all its data; a restore of the last control-plane backup brings the cluster back
`ready` with its documents, the tenant's key works again through the gateway, usage and audit are
whole, and what changed after the backup (a cluster made later) is reported and kept, never
removed. A damaged backup is refused with nothing written, and so is a restore into a NATS that
already holds state.

It runs its own platform (its NATS is wiped), not the session's.
"""

from __future__ import annotations

import shutil
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from opensearchpy import OpenSearch

from bench.private_platform import AUTH, private_platform, seed_body
from devrun.nats_server import jetstream_ready
from tests.helpers import wait_until

DOCUMENTS = 30


def wait_for(what: str, check, timeout_s: float = 120):
    return wait_until(check, timeout_s, 0.3, what)


def usage_of(api: httpx.Client, tenant: str) -> set[tuple[str, str]]:
    now = datetime.now(timezone.utc)
    answer = api.get(f"/tenants/{tenant}/usage", params={"from": (now - timedelta(hours=1)).isoformat(),
                                                         "to": (now + timedelta(hours=1)).isoformat()})
    assert answer.status_code == 200, answer.text
    return {(r["cluster_id"], r["period_start"]) for r in answer.json()["records"]}


def audit_of(api: httpx.Client, tenant: str) -> set[tuple[str, str, str]]:
    events = api.get("/audit", params={"tenant_org_id": tenant, "limit": 1000}).json()["events"]
    return {(e["request_id"], e["method"], e["path"]) for e in events}


@pytest.mark.engine
def test_a_wiped_nats_comes_back_from_the_control_plane_backup():
    env = {"ESS_METERING_PERIOD_S": "5", "ESS_POLL_INTERVAL_S": "1", "ESS_CONTROL_BACKUP_EVERY_S": "3600"}
    with private_platform(env=env) as running:
        sup = running.supervisor
        running.keep_state = True  # its logs, until the checks passed
        api = httpx.Client(base_url=sup.api_urls[0], headers=AUTH, timeout=30)
        body = seed_body("drill", memory="1Gi")
        tenant = body["tenant_org_id"] = "drill"
        assert api.post("/tenants", json={"tenant_org_id": tenant}).status_code == 201
        key = api.post(f"/tenants/{tenant}/keys", json={}).json()["key"]
        kept = api.post("/clusters", json=body).json()["id"]
        wait_for("cluster ready", lambda: api.get(f"/clusters/{kept}").json()["status"] == "ready", 180)
        engine = OpenSearch(hosts=[f"{sup.gateway_url}/{kept}"], headers={"Authorization": f"ApiKey {key}"},
                            timeout=30)
        for i in range(DOCUMENTS):
            engine.index(index="kept", id=f"d{i}", body={"n": i})
        engine.indices.refresh(index="kept")
        usage = wait_for("a usage record", lambda: usage_of(api, tenant), 60)
        # the schedule took one at start (an empty platform's), and the operator takes one now
        scheduled = wait_for("a scheduled backup", lambda: api.get("/platform/backups").json(), 30)
        assert scheduled[-1]["reason"].startswith("scheduled")
        audit = audit_of(api, tenant)
        taken = api.post("/platform/backups")
        assert taken.status_code == 201, taken.text
        backup = taken.json()
        assert backup["buckets"]["ess_clusters"] == 1 and backup["buckets"]["ess_api_keys"] == 1
        assert backup["streams"]["ESS_USAGE"] >= len(usage) and backup["streams"]["ESS_AUDIT"] >= len(audit)
        assert api.get("/platform/backups").json()[0]["id"] == backup["id"]  # newest first

        # changed after the backup: a second cluster, which the backup cannot know
        later = api.post("/clusters", json=seed_body("later") | {"tenant_org_id": tenant}).json()["id"]
        wait_for("the later cluster ready", lambda: api.get(f"/clusters/{later}").json()["status"] == "ready", 180)

        # the disaster: every service and NATS die, and NATS's data is gone; engines keep running
        services = list(sup.services)
        for name in services:
            sup.kill(name)
        nats = sup.nats["nats"]
        sup.kill("nats")
        shutil.rmtree(nats.store_dir)
        sup.start("nats")
        jetstream_ready([nats])
        for name in services:
            sup.start(name)
        assert api.get("/clusters").json()["clusters"] == [] and api.get("/tenants").json() == []
        time.sleep(6)  # three reconcile passes: neither cluster's data is taken for an orphan's
        for cluster_id in (kept, later):
            assert (running.state_dir / "clusters" / cluster_id / "nodes" / "node_1" / "data").is_dir(), cluster_id

        # a damaged backup is refused whole
        damaged = running.state_dir / "control-plane-backups" / "control-plane" / backup["id"] / "kv" / "ess_clusters.jsonl"
        original = damaged.read_bytes()
        damaged.write_bytes(original.replace(b"=", b"A", 1) if b"=" in original else original + b"\n")
        refused = api.post(f"/platform/backups/{backup['id']}/restore")
        assert refused.status_code == 422 and "kv/ess_clusters.jsonl" in refused.json()["message"], refused.text
        assert api.get("/clusters").json()["clusters"] == [] and api.get("/tenants").json() == []
        damaged.write_bytes(original)

        restored = api.post(f"/platform/backups/{backup['id']}/restore")
        assert restored.status_code == 200, restored.text
        report = restored.json()
        assert report["clusters"] == 1 and report["clusters_without_engine"] == []
        assert report["engines_unknown_to_backup"] == [later]
        assert any("made after the backup" in line for line in report["since_backup"])
        again = api.post(f"/platform/backups/{backup['id']}/restore")
        assert again.status_code == 409 and again.json()["error"] == "control_plane_not_empty"

        wait_for("the kept cluster ready again", lambda: api.get(f"/clusters/{kept}").json()["status"] == "ready")
        engine = OpenSearch(hosts=[f"{sup.gateway_url}/{kept}"], headers={"Authorization": f"ApiKey {key}"},
                            timeout=30)
        assert engine.count(index="kept")["count"] == DOCUMENTS  # the tenant's key, through the gateway
        assert usage <= usage_of(api, tenant)
        assert audit <= audit_of(api, tenant)
        assert [t["tenant_org_id"] for t in api.get("/tenants").json()] == [tenant]
        time.sleep(4)  # the later cluster is still not removed after more passes
        assert (running.state_dir / "clusters" / later / "nodes" / "node_1" / "data").is_dir()
        engine.close()
        api.delete(f"/clusters/{kept}")
        running.keep_state = False
