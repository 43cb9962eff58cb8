"""What the Elasticsearch 8 adapter sends that a real node cannot show: the client's
compatibility headers and its credentials (the local core server has no security module).

A real HTTP server on 127.0.0.1 answers the elasticsearch-py 8.x client with the bodies in
tests/fixtures/elasticsearch-8.15/ and records every request. Everything a server answers
(mappings, bulk errors, kNN, stats, snapshots) is tested against a real Elasticsearch node in
tests/integration/test_elasticsearch_engine.py.
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
