"""Both local engines through the platform: a cluster of each becomes ready, and the same
vectors give the same known nearest neighbours on both; the Elasticsearch cluster's endpoint (the
gateway) serves the official elasticsearch 8.x client and says which modules it lacks."""

from __future__ import annotations

import pytest
from elasticsearch import Elasticsearch

from libs.common.settings import ELASTICSEARCH_VERSION
from tests.conftest import OPERATOR_KEY, seed_request
from tests.helpers import wait_for_status

# four unit-length directions and a query between the first two: the order is known by hand
RECIPES = [
    {"id": "pie", "vector": [1.0, 0.0, 0.0], "fields": {"title": "apple pie", "course": "dessert"}},
    {"id": "tart", "vector": [0.8, 0.6, 0.0], "fields": {"title": "cherry tart", "course": "dessert"}},
    {"id": "soup", "vector": [0.6, 0.8, 0.0], "fields": {"title": "leek soup", "course": "starter"}},
    {"id": "stew", "vector": [0.0, 0.0, 1.0], "fields": {"title": "beef stew", "course": "main"}},
]
QUERY = [0.95, 0.2, 0.0]  # cosine: pie 0.979, tart 0.906, soup 0.752, stew 0
BY_COSINE = ["pie", "tart", "soup", "stew"]
DESSERTS_NEAR_SOUP = ["tart", "pie"]  # the query [0.6, 0.8, 0] filtered to desserts: 0.96, 0.6


@pytest.fixture(scope="module")
def clusters(api):
    made = {engine: api.post("/clusters", json=seed_request(service_name=f"side-{engine[:6]}", engine=engine)).json()
            for engine in ("opensearch", "elasticsearch")}
    yield {engine: wait_for_status(api, body["id"], "ready", timeout_s=150) for engine, body in made.items()}
    for body in made.values():
        api.delete(f"/clusters/{body['id']}")


def _load(api, cluster) -> None:
    created = api.post(f"/clusters/{cluster['id']}/vector-indices",
                       json={"name": "recipes", "dimensions": 3, "similarity": "cosine", "text_fields": ["title"]})
    assert created.status_code == 201, created.text
    indexed = api.post(f"/clusters/{cluster['id']}/vector-indices/recipes/documents", json={"documents": RECIPES})
    assert indexed.json() == {"indexed": 4, "errors": []}


def _ids(api, cluster, body) -> list[str]:
    answer = api.post(f"/clusters/{cluster['id']}/vector-indices/recipes/search", json=body)
    assert answer.status_code == 200, answer.text
    return [hit["id"] for hit in answer.json()["hits"]]


def test_an_elasticsearch_cluster_becomes_ready_and_says_what_it_lacks(clusters):
    es, opensearch = clusters["elasticsearch"], clusters["opensearch"]
    assert (es["engine"], es["version"], es["health"], es["nodes"]) == ("elasticsearch", ELASTICSEARCH_VERSION,
                                                                       "green", 1)
    assert es["engine_lacks"] == ["analysis-common", "mapper-extras", "painless", "reindex", "rest-root"]
    assert opensearch["engine_lacks"] == []


@pytest.mark.parametrize("engine", ["opensearch", "elasticsearch"])
def test_known_nearest_neighbours_on_each_engine(api, clusters, engine):
    cluster = clusters[engine]
    _load(api, cluster)

    assert _ids(api, cluster, {"vector": QUERY, "k": 4}) == BY_COSINE
    assert _ids(api, cluster, {"vector": [0.6, 0.8, 0.0], "k": 2, "filter": {"course": "dessert"}}) \
        == DESSERTS_NEAR_SOUP


def test_the_elasticsearch_endpoint_serves_the_official_client(clusters):
    # through the gateway, with the key as the client sends an API key; its product check passes
    with Elasticsearch(clusters["elasticsearch"]["endpoint"], api_key=OPERATOR_KEY) as client:
        assert client.info()["version"]["number"] == ELASTICSEARCH_VERSION  # after its product check
        client.index(index="notes", id="1", document={"text": "hello"}, refresh=True)
        assert client.search(index="notes", query={"match": {"text": "hello"}})["hits"]["total"]["value"] == 1
