"""Vector indices through the platform: the true nearest neighbours come back, best first."""

from __future__ import annotations

import math
import random

import pytest

from tests.conftest import OPERATOR_KEY, ready_cluster
from tests.helpers import endpoint_client

DIMENSIONS = 16
COUNT = 300


def _vectors(seed: int) -> dict[str, list[float]]:
    rng = random.Random(seed)
    return {f"doc-{i}": [rng.uniform(-1, 1) for _ in range(DIMENSIONS)] for i in range(COUNT)}


def _cosine(a, b) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def _l2(a, b) -> float:
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))


@pytest.fixture(scope="module")
def cluster(api):
    with ready_cluster(api, service_name="vectors") as ready:
        yield ready


@pytest.fixture(scope="module")
def indexed(api, cluster):
    """Two indices (cosine, l2) holding the same 300 vectors, with a colour on each."""
    vectors = _vectors(seed=7)
    colours = {doc_id: ("red" if i % 3 == 0 else "blue") for i, doc_id in enumerate(vectors)}
    for name, similarity in (("by-cosine", "cosine"), ("by-l2", "l2")):
        answer = api.post(f"/clusters/{cluster['id']}/vector-indices",
                          json={"name": name, "dimensions": DIMENSIONS, "similarity": similarity,
                                "text_fields": ["title"]})
        assert answer.status_code == 201, answer.text
        documents = [{"id": doc_id, "vector": vector, "fields": {"colour": colours[doc_id], "title": f"item {doc_id}"}}
                     for doc_id, vector in vectors.items()]
        for start in range(0, COUNT, 100):
            result = api.post(f"/clusters/{cluster['id']}/vector-indices/{name}/documents",
                              json={"documents": documents[start:start + 100]})
            assert result.status_code == 200, result.text
            assert result.json() == {"indexed": 100, "errors": []}
    return vectors, colours


def _search(api, cluster, index, body):
    answer = api.post(f"/clusters/{cluster['id']}/vector-indices/{index}/search", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()["hits"]


@pytest.mark.parametrize("query_seed", [1, 2, 3])
def test_cosine_search_returns_the_true_nearest_neighbours(api, cluster, indexed, query_seed):
    vectors, _ = indexed
    query = _vectors(seed=100 + query_seed)["doc-0"]
    truth = sorted(vectors, key=lambda d: -_cosine(vectors[d], query))[:10]
    hits = _search(api, cluster, "by-cosine", {"vector": query, "k": 10})
    assert [h["id"] for h in hits] == truth
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert hits[0]["fields"]["title"] == f"item {truth[0]}"
    assert "vector" not in hits[0]["fields"]


def test_l2_search_returns_the_true_nearest_neighbours(api, cluster, indexed):
    vectors, _ = indexed
    query = _vectors(seed=555)["doc-3"]
    truth = sorted(vectors, key=lambda d: _l2(vectors[d], query))[:5]
    hits = _search(api, cluster, "by-l2", {"vector": query, "k": 5})
    assert [h["id"] for h in hits] == truth


def test_filtered_search_only_returns_matching_documents(api, cluster, indexed):
    vectors, colours = indexed
    query = _vectors(seed=999)["doc-1"]
    red = [d for d in vectors if colours[d] == "red"]
    truth = sorted(red, key=lambda d: -_cosine(vectors[d], query))[:5]
    hits = _search(api, cluster, "by-cosine", {"vector": query, "k": 5, "filter": {"colour": "red"}})
    assert [h["id"] for h in hits] == truth


def test_the_endpoint_works_with_the_official_client(cluster, indexed):
    client = endpoint_client(cluster["endpoint"], OPERATOR_KEY)
    try:
        assert client.count(index="by-cosine")["count"] == COUNT
        assert client.get(index="by-l2", id="doc-5")["_source"]["colour"] in ("red", "blue")
    finally:
        client.close()


def test_vector_of_the_wrong_length_is_refused(api, cluster, indexed):
    answer = api.post(f"/clusters/{cluster['id']}/vector-indices/by-cosine/documents",
                      json={"documents": [{"id": "x", "vector": [0.1, 0.2]}]})
    assert answer.status_code == 422
    assert answer.json()["fields"][0]["field"] == "documents[0].vector"
    answer = api.post(f"/clusters/{cluster['id']}/vector-indices/by-cosine/search", json={"vector": [1.0], "k": 3})
    assert answer.status_code == 422


def test_index_name_taken_is_409_and_missing_index_is_404(api, cluster, indexed):
    again = api.post(f"/clusters/{cluster['id']}/vector-indices",
                     json={"name": "by-cosine", "dimensions": DIMENSIONS})
    assert again.status_code == 409
    missing = api.post(f"/clusters/{cluster['id']}/vector-indices/nope/search",
                       json={"vector": [0.0] * DIMENSIONS, "k": 1})
    assert missing.status_code == 404


def test_bad_vector_index_request_names_the_field(api, cluster):
    answer = api.post(f"/clusters/{cluster['id']}/vector-indices",
                      json={"name": "ok", "dimensions": 8, "similarity": "manhattan"})
    assert answer.status_code == 422
    assert answer.json()["fields"][0]["field"] == "similarity"
