"""The gateway: tenants' official clients at `<gateway>/<cluster id>`, with their key, and only
their own clusters; errors as the engine gives them or with a reason of the gateway's."""

from __future__ import annotations

import httpx
import pytest
from opensearchpy import NotFoundError, helpers
from opensearchpy.exceptions import AuthenticationException

from tests.conftest import OPERATOR, OPERATOR_KEY, ready_cluster, tenant_with_key
from tests.helpers import endpoint_client


@pytest.fixture(scope="module")
def tenants(api):
    return tenant_with_key(api), tenant_with_key(api)


@pytest.fixture(scope="module")
def cluster(api, tenants):
    (tenant, _), _ = tenants
    with ready_cluster(api, tenant_org_id=tenant, service_name="gw") as ready:
        yield ready


def test_the_endpoint_is_the_gateway_and_the_engine_is_for_the_operator(api, settings, cluster, tenants):
    assert cluster["endpoint"] == f"{settings.public_gateway_url}/{cluster['id']}"
    assert cluster["engine_endpoint"].startswith("http://127.0.0.1:")  # the operator's view
    (_, key), _ = tenants
    as_tenant = api.get(f"/clusters/{cluster['id']}", headers={"Authorization": f"ApiKey {key}"}).json()
    assert as_tenant["endpoint"] == cluster["endpoint"] and as_tenant["engine_endpoint"] is None


def test_the_official_client_indexes_bulks_searches_scrolls_and_runs_knn(cluster, tenants):
    (_, key), _ = tenants
    client = endpoint_client(cluster["endpoint"], key)
    client.indices.create(index="books", body={
        "settings": {"index": {"knn": True, "number_of_shards": 2}},
        "mappings": {"properties": {"title": {"type": "text"}, "year": {"type": "integer"},
                                    "v": {"type": "knn_vector", "dimension": 3,
                                          "method": {"name": "hnsw", "engine": "lucene", "space_type": "l2"}}}},
    })
    client.index(index="books", id="first", body={"title": "the first book", "year": 1990, "v": [0, 0, 0]}, refresh=True)
    actions = ({"_index": "books", "_id": f"b{i}", "title": f"book number {i}", "year": 2000 + i % 20,
                "v": [i, i % 7, 1]} for i in range(500))
    indexed, errors = helpers.bulk(client, actions, refresh=True)
    assert (indexed, errors) == (500, [])
    assert client.get(index="books", id="first")["_source"]["year"] == 1990
    hits = client.search(index="books", body={"query": {"match": {"title": "first"}}})["hits"]["hits"]
    assert [h["_id"] for h in hits] == ["first"]
    scrolled = {hit["_id"] for hit in helpers.scan(client, index="books", query={"query": {"match_all": {}}}, size=77)}
    assert len(scrolled) == 501
    knn = client.search(index="books", body={"size": 3, "query": {"knn": {"v": {"vector": [10, 3, 1], "k": 3}}}})
    assert knn["hits"]["hits"][0]["_id"] == "b10"
    with pytest.raises(NotFoundError):  # the engine's own error comes through, status and body
        client.get(index="books", id="nope")


def test_another_tenants_key_finds_nothing_at_any_path(cluster, tenants, settings):
    _, (_, other_key) = tenants
    headers = {"Authorization": f"ApiKey {other_key}"}
    missing = f"{settings.public_gateway_url}/c000000000000"
    for method, path in [("GET", "/"), ("GET", "/_cluster/health"), ("GET", "/books/_search"),
                         ("POST", "/books/_doc"), ("DELETE", "/books"), ("GET", "/_cat/indices")]:
        theirs = httpx.request(method, cluster["endpoint"] + path, headers=headers, json={} if method == "POST" else None)
        absent = httpx.request(method, missing + path, headers=headers, json={} if method == "POST" else None)
        assert theirs.status_code == absent.status_code == 404, (method, path, theirs.text)
        assert theirs.json()["error"]["type"] == absent.json()["error"]["type"] == "cluster_not_found"
    assert endpoint_client(cluster["endpoint"], OPERATOR_KEY).count(index="books")["count"] == 501


def test_headers_are_the_clients_own_so_a_plain_client_gets_plain_json(cluster):
    # curl sends no Accept-Encoding: the answer must not come back compressed
    with httpx.Client() as client:
        request = client.build_request("GET", cluster["endpoint"] + "/_cluster/health", headers=OPERATOR)
        del request.headers["Accept-Encoding"]
        answer = client.send(request)
    assert "content-encoding" not in answer.headers and answer.json()["status"] in ("green", "yellow")
    asked = httpx.get(cluster["endpoint"] + "/_cluster/health", headers={**OPERATOR, "Accept-Encoding": "gzip"})
    assert asked.headers.get("content-encoding") in ("gzip", None) and asked.json()["cluster_name"] == cluster["id"]


def test_no_key_is_401_with_a_challenge_and_a_wrong_key_too(cluster):
    answer = httpx.get(cluster["endpoint"] + "/_cluster/health")
    assert answer.status_code == 401 and "ApiKey" in answer.headers["WWW-Authenticate"]
    with pytest.raises(AuthenticationException):
        endpoint_client(cluster["endpoint"], "ess_0123456789abcdef_not-a-secret").info()


def test_counts_of_requests_and_bytes_show_on_the_metrics_port_alone(cluster, tenants, settings):
    (tenant, key), _ = tenants
    endpoint_client(cluster["endpoint"], key).cluster.health()
    monitoring = f"http://127.0.0.1:{settings.gateway_metrics_port}"
    metrics = httpx.get(f"{monitoring}/metrics").text
    line = next(l for l in metrics.splitlines()
                if l.startswith("ess_gateway_requests_total") and cluster["id"] in l)
    assert f'tenant="{tenant}"' in line and float(line.split()[-1]) >= 1
    assert httpx.get(f"{monitoring}/ready").status_code == httpx.get(f"{monitoring}/health").status_code == 200
    assert httpx.get(f"{monitoring}/{cluster['id']}/_cluster/health", headers=OPERATOR).status_code == 404
    # every tenant's name and counts: not on the tenants' port, whatever key comes along
    tenant_port = f"http://127.0.0.1:{settings.gateway_port}"
    for headers in ({}, {"Authorization": f"ApiKey {key}"}, OPERATOR):
        answer = httpx.get(f"{tenant_port}/metrics", headers=headers)
        assert answer.status_code == 404 and "ess_gateway" not in answer.text, headers
        assert answer.json()["error"]["type"] == "not_found"  # the gateway's own: no such path
    assert httpx.get(f"{tenant_port}/ready").status_code == 200  # probes and devrun still wait on it here
