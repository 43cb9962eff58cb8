"""Tenants, keys and isolation: nobody reaches what is not theirs."""

from __future__ import annotations

import asyncio
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import nats
import pytest

from libs.common import subjects
from libs.common.events import ClusterScaleRequested
from tests.conftest import ISSUED_KEYS, key_header, seed_request
from tests.helpers import wait_until


def new_tenant(api, **quotas) -> str:
    tenant = f"t{uuid.uuid4().hex[:8]}"
    body = {"tenant_org_id": tenant, "quotas": quotas} if quotas else {"tenant_org_id": tenant}
    assert api.post("/tenants", json=body).status_code == 201
    return tenant


def new_key(api, tenant, headers=None) -> dict:
    answer = api.post(f"/tenants/{tenant}/keys", json={}, headers=headers or {})
    assert answer.status_code == 201, answer.text
    ISSUED_KEYS.append(answer.json()["key"])
    return answer.json()


@pytest.fixture(scope="module")
def two_tenants(api):
    a, b = new_tenant(api), new_tenant(api)
    key_a, key_b = new_key(api, a), new_key(api, b)
    cluster_b = api.post("/clusters", json=seed_request(tenant_org_id=b), headers=key_header(key_b["key"]))
    assert cluster_b.status_code == 202, cluster_b.text
    yield {"a": a, "b": b, "key_a": key_a, "key_b": key_b, "cluster_b": cluster_b.json()}
    api.delete(f"/clusters/{cluster_b.json()['id']}")


def test_no_key_or_a_wrong_key_is_401(api, settings):
    base = f"http://127.0.0.1:{settings.api_port}"
    for headers in ({}, {"Authorization": "ApiKey nope"}, {"Authorization": "Bearer x"},
                    {"Authorization": "ApiKey ess_0123456789abcdef_forged"}):
        answer = httpx.get(f"{base}/clusters", headers=headers)
        assert answer.status_code == 401, headers
        assert answer.headers["www-authenticate"] == "ApiKey"
    assert httpx.get(f"{base}/health").status_code == 200
    assert httpx.get(f"{base}/ready").status_code == 200


def test_a_tenant_cannot_reach_another_tenants_clusters(api, two_tenants):
    as_a = key_header(two_tenants["key_a"]["key"])
    b, cluster = two_tenants["b"], two_tenants["cluster_b"]["id"]
    assert api.get("/clusters", headers=as_a).json() == {"clusters": []}
    assert api.get("/clusters", params={"tenant_org_id": b}, headers=as_a).status_code == 404
    for method, path, body in (
        ("GET", f"/clusters/{cluster}", None),
        ("PATCH", f"/clusters/{cluster}", {"replicas": 2}),
        ("DELETE", f"/clusters/{cluster}", None),
        ("GET", f"/clusters/{cluster}/plan", None),
        ("GET", f"/clusters/{cluster}/events", None),
        ("POST", f"/clusters/{cluster}/vector-indices", {"name": "x", "dimensions": 2}),
        ("GET", f"/tenants/{b}", None),
        ("GET", f"/tenants/{b}/keys", None),
        ("POST", f"/tenants/{b}/keys", {}),
        ("DELETE", f"/tenants/{b}/keys/{two_tenants['key_b']['key_id']}", None),
        ("GET", f"/tenants/{b}/usage?from=2026-01-01T00:00:00Z&to=2027-01-01T00:00:00Z", None),
    ):
        answer = api.request(method, path, json=body, headers=as_a)
        assert answer.status_code == 404, (method, path, answer.status_code)
    creating = api.post("/clusters", json=seed_request(tenant_org_id=b), headers=as_a)
    assert creating.status_code == 403
    assert creating.json()["fields"][0]["field"] == "tenant_org_id"
    # and B's cluster is untouched
    assert api.get(f"/clusters/{cluster}").json()["replicas"] == 1
    assert api.get(f"/clusters/{cluster}", headers=key_header(two_tenants["key_b"]["key"])).status_code == 200


def test_operator_only_calls_are_refused_to_tenants(api, two_tenants):
    as_a = key_header(two_tenants["key_a"]["key"])
    assert api.post("/tenants", json={"tenant_org_id": "sneaky"}, headers=as_a).status_code == 403
    assert api.get("/audit", headers=as_a).status_code == 403
    assert [t["tenant_org_id"] for t in api.get("/tenants", headers=as_a).json()] == [two_tenants["a"]]


def test_a_revoked_key_is_refused_on_its_next_request(api, two_tenants):
    a = two_tenants["a"]
    spare = new_key(api, a, headers=key_header(two_tenants["key_a"]["key"]))
    as_spare = key_header(spare["key"])
    assert api.get("/clusters", headers=as_spare).status_code == 200
    listed = api.get(f"/tenants/{a}/keys", headers=as_spare).json()
    assert spare["key_id"] in [k["key_id"] for k in listed]
    assert all("key" not in k and "secret_hash" not in k for k in listed)

    assert api.delete(f"/tenants/{a}/keys/{spare['key_id']}").status_code == 204
    assert api.get("/clusters", headers=as_spare).status_code == 401
    assert api.get("/clusters", headers=key_header(two_tenants["key_a"]["key"])).status_code == 200


def test_quotas_hold_at_the_limit_and_refuse_one_past(api):
    tenant = new_tenant(api, max_clusters=1, max_nodes=2, max_storage_gb=10)
    as_t = key_header(new_key(api, tenant)["key"])
    at_limit = api.post("/clusters", json=seed_request(tenant_org_id=tenant, replicas=2, storage="10Gi"),
                        headers=as_t)
    assert at_limit.status_code == 202, at_limit.text
    cluster = at_limit.json()["id"]
    one_more = api.post("/clusters", json=seed_request(tenant_org_id=tenant, service_name="second"), headers=as_t)
    assert one_more.status_code == 403
    assert (one_more.json()["quota"], one_more.json()["limit"]) == ("max_clusters", 1)
    more_nodes = api.patch(f"/clusters/{cluster}", json={"replicas": 3}, headers=as_t)
    assert more_nodes.status_code == 403
    assert (more_nodes.json()["quota"], more_nodes.json()["limit"]) == ("max_nodes", 2)
    assert api.get(f"/clusters/{cluster}").json()["replicas"] == 2
    assert api.delete(f"/clusters/{cluster}", headers=as_t).status_code == 202

    roomy = new_tenant(api, max_clusters=3, max_nodes=9, max_storage_gb=5)
    too_big = api.post("/clusters", json=seed_request(tenant_org_id=roomy, storage="6Gi"))
    assert (too_big.status_code, too_big.json()["quota"]) == (403, "max_storage_gb")


def at_once(api, headers, *requests: tuple[str, str, dict]) -> list[httpx.Response]:
    """Send the requests together, each on its own connection, as separate users would."""
    ready = threading.Barrier(len(requests))

    def send(request):
        method, path, body = request
        with httpx.Client(base_url=api.base_url, headers=headers, timeout=30) as client:
            ready.wait()
            return client.request(method, path, json=body)

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(send, requests))


def test_concurrent_creates_get_the_last_cluster_once(api):
    tenant = new_tenant(api, max_clusters=1, max_nodes=9, max_storage_gb=100)
    as_t = key_header(new_key(api, tenant)["key"])
    answers = at_once(api, as_t, *[("POST", "/clusters", seed_request(tenant_org_id=tenant, service_name=f"race{i}"))
                                   for i in range(4)])
    assert sorted(a.status_code for a in answers) == [202, 403, 403, 403], [a.text for a in answers]
    assert {(a.json()["quota"], a.json()["limit"]) for a in answers if a.status_code == 403} == {("max_clusters", 1)}
    winner = next(a.json()["id"] for a in answers if a.status_code == 202)
    assert [c["id"] for c in api.get("/clusters", headers=as_t).json()["clusters"]] == [winner]

    assert api.delete(f"/clusters/{winner}", headers=as_t).status_code == 202
    after = api.post("/clusters", json=seed_request(tenant_org_id=tenant, service_name="after"), headers=as_t)
    assert after.status_code == 202, after.text
    assert api.delete(f"/clusters/{after.json()['id']}", headers=as_t).status_code == 202


def ask_for_nodes(settings, cluster: dict, nodes: int) -> None:
    """What the shard controller sends when it wants another node count for a cluster."""
    async def publish():
        connection = await nats.connect(settings.nats_url)
        try:
            event = ClusterScaleRequested(cluster_id=cluster["id"], tenant_org_id=cluster["tenant_org_id"],
                                          nodes=nodes, reason="test: asked by hand")
            subject = subjects.cluster_scale(cluster["tenant_org_id"], cluster["id"])
            await connection.jetstream().publish(subject, event.model_dump_json().encode())
        finally:
            await connection.close()

    asyncio.run(publish())


def test_node_quota_holds_against_concurrent_scale_ups_and_the_shard_controller(api, manager, settings):
    tenant = new_tenant(api, max_clusters=2, max_nodes=3, max_storage_gb=100)
    as_t = key_header(new_key(api, tenant)["key"])
    clusters = []
    for name in ("left", "right"):
        created = api.post("/clusters", json=seed_request(tenant_org_id=tenant, service_name=name), headers=as_t)
        assert created.status_code == 202, created.text
        clusters.append(created.json()["id"])
    answers = at_once(api, as_t, *[("PATCH", f"/clusters/{c}", {"replicas": 2}) for c in clusters])
    assert sorted(a.status_code for a in answers) == [202, 403], [a.text for a in answers]
    refused = next(a.json() for a in answers if a.status_code == 403)
    assert (refused["quota"], refused["limit"]) == ("max_nodes", 3)
    small, large = sorted((api.get(f"/clusters/{c}", headers=as_t).json() for c in clusters),
                          key=lambda c: c["replicas"])
    assert (small["replicas"], large["replicas"]) == (1, 2)

    # at the limit, the shard controller's request for one more node is ignored, and says why
    ask_for_nodes(settings, small, 2)
    wait_until(lambda: any(small["id"] in line and "max_nodes" in line for line in manager.log().splitlines()
                           if "node count request ignored" in line), 30, what="the request ignored")
    assert api.get(f"/clusters/{small['id']}", headers=as_t).json()["replicas"] == 1
    ask_for_nodes(settings, large, 1)  # a request within the quota still applies
    wait_until(lambda: api.get(f"/clusters/{large['id']}", headers=as_t).json()["replicas"] == 1, 30,
               what="the scale-down applied")
    for cluster in clusters:
        assert api.delete(f"/clusters/{cluster}", headers=as_t).status_code == 202


def test_too_many_changes_are_429_with_retry_after(api):
    tenant = new_tenant(api)
    as_t = key_header(new_key(api, tenant)["key"])
    statuses = []
    for _ in range(200):
        answer = api.post("/clusters", json={"tenant_org_id": tenant}, headers=as_t)  # invalid: cheap
        statuses.append(answer.status_code)
        if answer.status_code == 429:
            assert int(answer.headers["retry-after"]) >= 1
            break
    assert statuses[-1] == 429 and statuses[0] == 422
    assert api.get("/clusters", headers=as_t).status_code == 200  # reads are not limited


def test_every_change_is_in_the_audit_trail(api, two_tenants):
    events = api.get("/audit", params={"tenant_org_id": two_tenants["b"]}).json()["events"]
    created = [e for e in events if e["method"] == "POST" and e["path"] == "/clusters"]
    assert created and created[0]["status"] == 202
    assert created[0]["actor"] == two_tenants["key_b"]["key_id"]
    assert two_tenants["key_b"]["key"] not in str(events)


def test_a_too_large_body_is_413(api):
    answer = api.post("/clusters", content=b"{" + b" " * 2_000_000 + b"}",
                      headers={"content-type": "application/json"})
    assert answer.status_code == 413
