"""OpenSearch 3 on the local driver (issue 24): a tenant that asks for `version: 3.5.0` gets it,
its endpoint answers as 3.5.0 to a tenant's key, the platform's vector API finds the true nearest
neighbours on it, and it hibernates and wakes on 3.5.0 with every document; a version the platform
does not run is refused with the versions it does, and nothing is left behind."""

from __future__ import annotations


import httpx

from libs.common.settings import ENGINE_VERSION, OPENSEARCH3_VERSION
from tests.conftest import ready_cluster, seed_request, tenant_with_key
from tests.helpers import nearest_items, vector_items, wait_for_status



def test_a_tenant_gets_opensearch_3_with_its_vectors_through_hibernation(api):
    tenant, key = tenant_with_key(api)
    tenant_key = {"Authorization": f"ApiKey {key}"}
    with ready_cluster(api, tenant_org_id=tenant, service_name="three", version=OPENSEARCH3_VERSION,
                       hibernate_after_s=0) as cluster:
        base = cluster["endpoint"]
        assert cluster["version"] == OPENSEARCH3_VERSION
        assert httpx.get(f"{base}/", headers=tenant_key).json()["version"]["number"] == OPENSEARCH3_VERSION

        _, query, nearest = vector_items(api, cluster["id"], 120, seed=3)
        assert nearest_items(api, cluster["id"], query) == nearest

        assert api.post(f"/clusters/{cluster['id']}/hibernate").status_code == 202
        wait_for_status(api, cluster["id"], "hibernated", 120)
        woken = httpx.get(f"{base}/items/_count", headers=tenant_key, timeout=120)  # wakes it
        assert woken.status_code == 200 and woken.json()["count"] == 120
        assert httpx.get(f"{base}/", headers=tenant_key).json()["version"]["number"] == OPENSEARCH3_VERSION
        assert nearest_items(api, cluster["id"], query) == nearest


def test_a_version_the_platform_does_not_run_is_refused_naming_those_it_does(api):
    body = seed_request(version="3.9.0")
    answer = api.post("/clusters", json=body)
    assert answer.status_code == 422, answer.text
    said = answer.text
    assert "version" in said and ENGINE_VERSION in said and OPENSEARCH3_VERSION in said, said
    listed = api.get("/clusters", params={"tenant_org_id": body["tenant_org_id"]})
    assert listed.status_code == 200 and not [c for c in listed.json()["clusters"]
                                              if c["tenant_org_id"] == body["tenant_org_id"]], listed.text
