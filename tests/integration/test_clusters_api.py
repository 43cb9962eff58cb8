"""The cluster API as a tenant sees it: create, read, list, bad input, conflicts, delete."""

from __future__ import annotations

import pytest

from services.manager.drivers.local_processes import find_engines
from tests.conftest import seed_request
from tests.helpers import wait_for_status, wait_until


@pytest.fixture(scope="module")
def cluster(api):
    """One ready 1-node cluster, created with an Idempotency-Key; deleted at the end."""
    body = seed_request()
    created = api.post("/clusters", json=body, headers={"Idempotency-Key": "first-try"})
    assert created.status_code == 202, created.text
    ready = wait_for_status(api, created.json()["id"], "ready")
    yield {"request": body, "created": created.json(), "ready": ready}
    api.delete(f"/clusters/{ready['id']}")


def test_health_and_ready(api):
    assert api.get("/health").text == "ok"
    assert api.get("/ready").json() == {"status": "ready", "nats": "connected"}


def test_create_answers_at_once_then_becomes_ready(cluster):
    created, ready = cluster["created"], cluster["ready"]
    assert created["status"] == "requested"
    assert created["endpoint"] is None
    assert ready["health"] in ("green", "yellow")
    assert ready["nodes"] == 1
    assert ready["endpoint"].startswith("http://127.0.0.1:")
    for field in ("tenant_org_id", "user", "service_name", "replicas", "cpu", "memory", "storage"):
        assert ready[field] == cluster["request"][field]
    assert (ready["engine"], ready["version"]) == ("opensearch", "2.19.1")


def test_listing_is_per_tenant(api, cluster):
    mine = api.get("/clusters", params={"tenant_org_id": cluster["request"]["tenant_org_id"]}).json()
    assert [c["id"] for c in mine["clusters"]] == [cluster["ready"]["id"]]
    assert api.get("/clusters", params={"tenant_org_id": "nobody-here"}).json() == {"clusters": []}


def test_same_idempotency_key_returns_the_first_answer(api, cluster):
    again = api.post("/clusters", json=cluster["request"], headers={"Idempotency-Key": "first-try"})
    assert again.status_code == 202
    assert again.json()["id"] == cluster["created"]["id"]


def test_same_tenant_and_service_name_conflicts(api, cluster):
    again = api.post("/clusters", json=cluster["request"])
    assert again.status_code == 409
    assert again.json()["fields"][0]["field"] == "service_name"
    tenant = cluster["request"]["tenant_org_id"]
    assert len(api.get("/clusters", params={"tenant_org_id": tenant}).json()["clusters"]) == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"memory": "1Gb"}, "memory"),
        ({"memory": "64Mi"}, "memory"),
        ({"cpu": "lots"}, "cpu"),
        ({"storage": "-5Gi"}, "storage"),
        ({"tenant_org_id": "Acme_Corp"}, "tenant_org_id"),
        ({"service_name": "-search"}, "service_name"),
        ({"service_name": "x" * 64}, "service_name"),
        ({"replicas": 0}, "replicas"),
        ({"replicas": 10}, "replicas"),
        ({"replicas": "3"}, "replicas"),
        ({"engine": "solr"}, "engine"),
        ({"engine": "elasticsearch", "version": "2.19.1"}, "version"),  # OpenSearch's version for Elasticsearch
        ({"version": "1.0.0"}, "version"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_input_names_the_field_and_creates_nothing(api, change, field):
    before = {c["id"] for c in api.get("/clusters").json()["clusters"]}
    answer = api.post("/clusters", json=seed_request(**change))
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert [f["field"] for f in problem["fields"]] == [field]
    assert problem["fields"][0]["fix"]
    # no new cluster (others may change or go meanwhile: their views are not this test's)
    assert {c["id"] for c in api.get("/clusters").json()["clusters"]} <= before


def test_missing_field_is_named(api):
    body = seed_request()
    del body["memory"]
    answer = api.post("/clusters", json=body)
    assert answer.status_code == 422
    assert answer.json()["fields"][0]["field"] == "memory"
    assert answer.json()["fields"][0]["fix"].startswith("add memory")


def test_body_that_is_not_json_is_400(api):
    answer = api.post("/clusters", content=b"{tenant_org_id: acme", headers={"content-type": "application/json"})
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_json"


def test_malformed_cluster_id_is_422(api):
    assert api.get("/clusters/not-an-id").status_code == 422


def test_unknown_cluster_is_404(api):
    assert api.get("/clusters/c000000000000").status_code == 404
    assert api.patch("/clusters/c000000000000", json={"replicas": 2}).status_code == 404
    assert api.delete("/clusters/c000000000000").status_code == 404


def test_local_engines_have_no_credentials_to_rotate(api, cluster):
    answer = api.post(f"/clusters/{cluster['ready']['id']}/credentials")
    assert answer.status_code == 409
    assert "loopback" in answer.json()["message"]
    assert api.get(f"/clusters/{cluster['ready']['id']}").json()["credentials"] is None


def test_patch_needs_something_to_change(api, cluster):
    answer = api.patch(f"/clusters/{cluster['ready']['id']}", json={})
    assert answer.status_code == 422


def test_delete_stops_the_engine_and_removes_its_data(api, settings):
    created = api.post("/clusters", json=seed_request()).json()
    wait_for_status(api, created["id"], "ready")
    assert [e.cluster_id for e in find_engines(settings.clusters_dir)].count(created["id"]) == 1

    answer = api.delete(f"/clusters/{created['id']}")
    assert answer.status_code == 202
    assert answer.json()["status"] == "deleting"
    wait_until(lambda: api.get(f"/clusters/{created['id']}").status_code == 404, 60, what="cluster gone")
    assert created["id"] not in [e.cluster_id for e in find_engines(settings.clusters_dir)]
    assert not (settings.clusters_dir / created["id"]).exists()
    # the name is free again
    again = api.post("/clusters", json={**seed_request(), "tenant_org_id": created["tenant_org_id"]})
    assert again.status_code == 202
    api.delete(f"/clusters/{again.json()['id']}")
