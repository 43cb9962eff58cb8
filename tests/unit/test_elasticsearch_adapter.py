"""The Elasticsearch 8 adapter against recorded Elasticsearch 8.15 responses.

A real HTTP server on 127.0.0.1 answers the elasticsearch-py 8.x client with the
bodies in tests/fixtures/elasticsearch-8.15/ and records every request, so the
tests check both what the adapter sends and how it reads what comes back.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from libs.common.engines.base import (
    ClusterHealth,
    IndexAlreadyExists,
    IndexNotFound,
    IndexResult,
    SearchHit,
    VectorDocument,
    VectorIndexSpec,
    VectorQuery,
)
from libs.common.engines.elasticsearch import ElasticsearchEngine

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "elasticsearch-8.15"

# (method, path) -> (status, fixture file)
ROUTES: dict[tuple[str, str], tuple[int, str]] = {
    ("GET", "/_cluster/health"): (200, "cluster_health.json"),
    ("PUT", "/movies-000001"): (200, "indices_create.json"),
    ("PUT", "/movies-existing-000001"): (400, "indices_create_exists.json"),
    ("GET", "/movies/_mapping"): (200, "indices_get_mapping.json"),
    ("GET", "/missing/_mapping"): (404, "index_not_found.json"),
    # Elasticsearch takes POST and PUT on /_bulk; elasticsearch-py 8.x sends PUT
    ("POST", "/_bulk"): (200, "bulk_mixed.json"),
    ("PUT", "/_bulk"): (200, "bulk_mixed.json"),
    ("POST", "/movies/_search"): (200, "search_knn.json"),
}

COMPAT_JSON = "application/vnd.elasticsearch+json; compatible-with=8"


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, a list for NDJSON, None when empty


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Elasticsearch speaks

    def _handle(self) -> None:
        url = urlsplit(self.path)
        headers = {name.lower(): value for name, value in self.headers.items()}
        raw = self.rfile.read(int(headers.get("content-length", "0") or 0))
        body: Any = None
        if raw:
            text = raw.decode("utf-8")
            if "ndjson" in headers.get("content-type", ""):
                body = [json.loads(line) for line in text.splitlines() if line.strip()]
            else:
                body = json.loads(text)
        self.server.requests.append(  # type: ignore[attr-defined]
            RecordedRequest(self.command, url.path, parse_qs(url.query), headers, body)
        )

        route = ROUTES.get((self.command, url.path))
        if route is None:
            status, payload = 400, {
                "error": f"no handler found for uri [{url.path}] and method [{self.command}]"
            }
            data = json.dumps(payload).encode()
        else:
            status, name = route
            data = (FIXTURES / name).read_bytes()
        wants_compat = "compatible-with=8" in headers.get("accept", "")
        self.send_response(status)
        self.send_header("content-type", COMPAT_JSON if wants_compat else "application/json")
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


@pytest.fixture
def es_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def endpoint(es_server) -> str:
    host, port = es_server.server_address[:2]
    return f"http://{host}:{port}"


@pytest.fixture
def requests(es_server) -> list[RecordedRequest]:
    return es_server.requests


@pytest.fixture
async def engine(endpoint):
    engine = ElasticsearchEngine(endpoint)
    try:
        yield engine
    finally:
        await engine.close()


def _only(requests: list[RecordedRequest], method: str, path: str) -> RecordedRequest:
    matching = [r for r in requests if (r.method, r.path) == (method, path)]
    assert len(matching) == 1, [(r.method, r.path) for r in requests]
    return matching[0]


async def test_health_reads_status_and_node_count(engine, requests):
    health = await engine.health()

    assert health == ClusterHealth(status="yellow", nodes=1, cluster_name="docker-cluster")
    assert [(r.method, r.path) for r in requests] == [("GET", "/_cluster/health")]


@pytest.mark.parametrize(
    ("similarity", "expected"),
    [("cosine", "cosine"), ("l2", "l2_norm"), ("dot_product", "dot_product")],
)
async def test_create_vector_index_sends_dense_vector_mapping(engine, requests, similarity, expected):
    await engine.create_vector_index(VectorIndexSpec("movies", 3, similarity, ["title"]))

    # the first generation of the index, behind an alias of the index's name
    request = _only(requests, "PUT", "/movies-000001")
    assert request.body == {
        "aliases": {"movies": {"is_write_index": True}},
        "mappings": {
            "properties": {
                "vector": {"type": "dense_vector", "dims": 3, "index": True, "similarity": expected},
                "title": {
                    "type": "text",
                    "fields": {"keyword": {"type": "keyword", "ignore_above": 256}},
                },
            }
        },
    }


async def test_create_existing_index_raises_index_already_exists(engine, requests):
    with pytest.raises(IndexAlreadyExists) as info:
        await engine.create_vector_index(VectorIndexSpec("movies-existing", 3, "cosine"))

    assert info.value.status == 409
    request = _only(requests, "PUT", "/movies-existing-000001")
    assert request.body["mappings"]["properties"]["vector"]["dims"] == 3


async def test_vector_dimensions_from_recorded_mapping(engine, requests):
    assert await engine.vector_dimensions("movies") == 3
    _only(requests, "GET", "/movies/_mapping")


async def test_vector_dimensions_of_missing_index_raises_index_not_found(engine, requests):
    with pytest.raises(IndexNotFound) as info:
        await engine.vector_dimensions("missing")

    assert info.value.status == 404
    _only(requests, "GET", "/missing/_mapping")


async def test_index_documents_sends_ndjson_and_reads_mixed_result(engine, requests):
    documents = [
        VectorDocument("1", [0.1, 0.2, 0.3], {"title": "The Godfather", "genre": "drama"}),
        VectorDocument("2", [0.4, 0.5], {"title": "Broken", "genre": "comedy"}),
    ]

    result = await engine.index_documents("movies", documents)

    [request] = [r for r in requests if r.path == "/_bulk"]
    assert request.method in ("POST", "PUT")
    assert "x-ndjson" in request.headers["content-type"]
    assert request.query.get("refresh") == ["wait_for"]
    assert request.body == [
        {"index": {"_index": "movies", "_id": "1"}},
        {"title": "The Godfather", "genre": "drama", "vector": [0.1, 0.2, 0.3]},
        {"index": {"_index": "movies", "_id": "2"}},
        {"title": "Broken", "genre": "comedy", "vector": [0.4, 0.5]},
    ]
    recorded = json.loads((FIXTURES / "bulk_mixed.json").read_text())
    assert result == IndexResult(
        indexed=1,
        errors=[{"id": "2", "reason": recorded["items"][1]["index"]["error"]["reason"]}],
    )
    assert "different number of dimensions [2]" in result.errors[0]["reason"]


async def test_vector_search_sends_top_level_knn(engine, requests):
    hits = await engine.vector_search("movies", VectorQuery([0.1, 0.2, 0.3], k=2))

    request = _only(requests, "POST", "/movies/_search")
    knn = request.body["knn"]
    assert knn["field"] == "vector"
    assert knn["query_vector"] == [0.1, 0.2, 0.3]
    assert knn["k"] == 2
    assert knn["num_candidates"] >= knn["k"]
    assert "filter" not in knn
    assert "query" not in request.body  # knn is top-level, not a query clause
    assert request.body["size"] == 2
    # elasticsearch-py sends source_excludes as the `_source_excludes` query parameter
    assert request.query.get("_source_excludes") == ["vector"]
    assert hits == [
        SearchHit(id="1", score=0.99817055, fields={"title": "The Godfather", "genre": "drama"}),
        SearchHit(id="3", score=0.9415504, fields={"title": "Moonlight", "genre": "drama"}),
    ]


async def test_vector_search_filter_is_term_on_keyword_subfield(engine, requests):
    await engine.vector_search("movies", VectorQuery([1.0, 0.0, 0.0], k=5, filter={"genre": "drama"}))

    request = _only(requests, "POST", "/movies/_search")
    knn = request.body["knn"]
    assert knn["filter"] == [{"term": {"genre.keyword": "drama"}}]
    assert knn["k"] == 5
    assert knn["num_candidates"] >= 5
    assert request.body["size"] == 5


async def test_requests_carry_es8_compatibility_headers(engine, requests):
    await engine.health()
    await engine.create_vector_index(VectorIndexSpec("movies", 3, "cosine", ["title"]))
    await engine.index_documents("movies", [VectorDocument("1", [0.1, 0.2, 0.3])])
    await engine.vector_search("movies", VectorQuery([0.1, 0.2, 0.3], k=1))

    assert len(requests) == 4
    for request in requests:
        assert request.headers["accept"] == COMPAT_JSON, request.path
        assert "compatible-with=9" not in request.headers["accept"]
        assert request.headers["user-agent"].startswith("elasticsearch-py/8.")
    with_body = {r.path: r.headers["content-type"] for r in requests if r.body is not None}
    assert with_body == {
        "/movies-000001": COMPAT_JSON,
        "/_bulk": "application/vnd.elasticsearch+x-ndjson; compatible-with=8",
        "/movies/_search": COMPAT_JSON,
    }


async def test_basic_auth_is_sent_when_credentials_given(endpoint, requests):
    engine = ElasticsearchEngine(endpoint, username="elastic", password="s3cret")
    try:
        assert await engine.health() == ClusterHealth(status="yellow", nodes=1, cluster_name="docker-cluster")
    finally:
        await engine.close()

    expected = "Basic " + base64.b64encode(b"elastic:s3cret").decode()
    assert requests[0].headers["authorization"] == expected


async def test_no_authorization_header_without_credentials(engine, requests):
    await engine.health()
    assert "authorization" not in requests[0].headers
