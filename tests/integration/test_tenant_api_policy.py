"""Attacks through a tenant's own endpoint, as a tenant would try them: tenant B, with its own key
and its own clusters (one of each engine), goes for tenant A's snapshots and for the platform's
controls of its own clusters. Every attempt, in every spelling, is refused with 410 or 400, and A's
documents and snapshots are as they were. The allowed side is an application on the official
clients' helpers, on both engines, unchanged."""

from __future__ import annotations

import asyncio
import gzip
import json
import uuid

import httpx
import pytest

from tests.conftest import ISSUED_KEYS, OPERATOR, seed_request, tenant_with_key
from tests.helpers import endpoint_client, wait_for_status, wait_until

ENGINES = ("opensearch", "elasticsearch")


@pytest.fixture(scope="module")
def tenants(api):
    return {"a": tenant_with_key(api), "b": tenant_with_key(api)}


@pytest.fixture(scope="module")
def victim(api, tenants):
    """Tenant A's cluster with documents and a snapshot of them, taken through the platform."""
    tenant, key = tenants["a"]
    made = api.post("/clusters", json=seed_request(tenant_org_id=tenant, service_name="victim")).json()
    cluster = wait_for_status(api, made["id"], "ready", timeout_s=150)
    client = endpoint_client(cluster["endpoint"], key)
    client.index(index="secrets", id="1", body={"text": "A's secret"}, refresh=True)
    taken = api.post(f"/clusters/{cluster['id']}/snapshots").json()["name"]

    def done():
        listed = [s for s in api.get(f"/clusters/{cluster['id']}/snapshots").json()["snapshots"] if s["name"] == taken]
        return listed[0] if listed and listed[0]["status"] == "success" else None

    wait_until(done, 120, interval_s=0.5, what="A's snapshot")
    yield cluster | {"snapshot": taken}
    api.delete(f"/clusters/{cluster['id']}")


@pytest.fixture(scope="module")
def attackers(api, tenants):
    """Tenant B's clusters, one per engine."""
    tenant, _ = tenants["b"]
    made = {engine: api.post("/clusters", json=seed_request(tenant_org_id=tenant, engine=engine,
                                                            service_name=f"b-{engine[:6]}")).json()
            for engine in ENGINES}
    yield {engine: wait_for_status(api, body["id"], "ready", timeout_s=150) for engine, body in made.items()}
    for body in made.values():
        api.delete(f"/clusters/{body['id']}")


def attacks(settings, victim) -> list[tuple[str, str, dict | None]]:
    """(method, path, body) of everything issue 20 lists, against A's repository and B's own cluster."""
    location = str(settings.snapshots_dir / victim["id"])
    fs = {"type": "fs", "settings": {"location": location, "readonly": True}}
    s3 = {"type": "s3", "settings": {"bucket": "snapshots", "base_path": f"clusters/{victim['id']}"}}
    snapshot = victim["snapshot"]
    allocation = {"cluster.routing.allocation.enable": "none"}
    return [
        ("PUT", "/_snapshot/theirs", fs), ("POST", "/_snapshot/theirs", fs), ("PUT", "/_snapshot/s3", s3),
        ("GET", "/_snapshot/ess-backups/_all", None), ("GET", f"/_snapshot/theirs/{snapshot}", None),
        ("POST", f"/_snapshot/theirs/{snapshot}/_restore", {"rename_pattern": "(.+)", "rename_replacement": "x-$1"}),
        ("DELETE", f"/_snapshot/theirs/{snapshot}", None), ("GET", "/_cat/snapshots/theirs", None),
        ("GET", "/_nodes", None), ("GET", "/_nodes/settings", None), ("POST", "/_nodes/reload_secure_settings", {}),
        ("PUT", "/_cluster/settings", {"persistent": allocation}), ("PUT", "/_cluster/settings", {"transient": allocation}),
        ("POST", "/_cluster/voting_config_exclusions?node_names=Node%201", None),
        ("POST", "/_cluster/reroute", {"commands": []}),
        ("PUT", "/stolen", {"settings": {"index.routing.allocation.require._name": "Node 9"}}),
        ("PUT", "/stolen", {"settings": {"index": {"routing": {"allocation": {"exclude": {"_name": "Node 1"}}}}}}),
        ("PUT", "/mine/_settings", {"index.routing.allocation.enable": "none"}),
        ("PUT", "/mine/_settings", {"settings": {"routing.allocation.total_shards_per_node": 1}}),
        ("PUT", "/_index_template/all", {"index_patterns": ["*"],
                                        "template": {"settings": {"index.routing.allocation.require._name": "x"}}}),
        ("POST", "/_reindex", {"source": {"remote": {"host": "http://127.0.0.1:1"}, "index": "secrets"},
                               "dest": {"index": "copied"}}),
    ]


def respell(path: str) -> list[str]:
    """The path as an attacker would also write it: percent-encoded, doubled slashes, dot segments,
    a trailing slash, a query string."""
    route, _, query = path.partition("?")
    first, _, rest = route.lstrip("/").partition("/")
    tail = f"/{rest}" if rest else ""
    spellings = [path, f"/%{ord(first[0]):02X}{first[1:]}{tail}", f"//{first}/{tail}", f"/{first}{tail}/",
                 f"/mine/../{first}{tail}", f"/./{first}{tail}", f"/%2e%2e/{first}{tail}",
                 f"{route}?pretty&error_trace=false" + (f"&{query}" if query else "")]
    return spellings + ([f"{route}?source=%7B%7D"] if not query else [])


def send(endpoint: str, key: str, method: str, path: str, body: dict | None, **extra) -> httpx.Response:
    headers = {"Authorization": f"ApiKey {key}", **extra.pop("headers", {})}
    content = extra.pop("content", None)
    if body is not None:
        content, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    return httpx.request(method, endpoint + path, headers=headers, content=content, timeout=30, **extra)


@pytest.mark.parametrize("engine", ENGINES)
def test_every_attack_in_every_spelling_is_refused_and_a_is_untouched(api, settings, tenants, victim, attackers,
                                                                    engine):
    _, key = tenants["b"]
    own = attackers[engine]
    endpoint_client(own["endpoint"], key).index(index="mine", id="1", body={"n": 1}, refresh=True)
    tried = 0
    for method, path, body in attacks(settings, victim):
        for spelled in respell(path):
            methods = [method, "HEAD" if method == "GET" else ("PUT" if method == "POST" else method)]
            for verb in methods:
                answer = send(own["endpoint"], key, verb, spelled, body)
                assert answer.status_code in (400, 410), (verb, spelled, answer.status_code, answer.text)
                if verb != "HEAD":
                    error = answer.json()["error"]
                    assert error["type"] in ("api_not_available_exception", "illegal_argument_exception"), error
                tried += 1
    # a gzipped body is read too, and YAML is refused rather than forwarded unread
    packed = gzip.compress(json.dumps({"settings": {"index.routing.allocation.enable": "none"}}).encode())
    assert send(own["endpoint"], key, "PUT", "/gz", None, content=packed,
                headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}).status_code == 410
    assert send(own["endpoint"], key, "PUT", "/yml", None, content=b"settings:\n  index.routing.allocation.enable: "
                b"none\n", headers={"Content-Type": "application/yaml"}).status_code == 400
    assert tried > 300
    # B's cluster still places shards as the platform says, and has no index made by an attack
    settings_now = httpx.get(f"{own['engine_endpoint']}/_cluster/settings", timeout=10).json()
    assert "allocation" not in json.dumps(settings_now)
    indices = httpx.get(f"{own['engine_endpoint']}/_cat/indices?format=json&h=index", timeout=10).json()
    assert {i["index"] for i in indices if not i["index"].startswith(".")} == {"mine"}
    # A's documents and snapshots are as they were
    a_key = tenants["a"][1]
    assert endpoint_client(victim["endpoint"], a_key).count(index="secrets")["count"] == 1
    listed = api.get(f"/clusters/{victim['id']}/snapshots").json()["snapshots"]
    assert [s["status"] for s in listed if s["name"] == victim["snapshot"]] == ["success"]


@pytest.mark.parametrize("engine", ENGINES)
def test_below_the_gateway_an_engine_sees_only_its_own_repository(settings, victim, attackers, engine):
    # even the operator's direct engine call cannot point B's engine at A's directory: path.repo
    # holds B's own repository only
    own = attackers[engine]
    location = str(settings.snapshots_dir / victim["id"])
    answer = httpx.put(f"{own['engine_endpoint']}/_snapshot/theirs", timeout=30,
                       json={"type": "fs", "settings": {"location": location, "readonly": True}})
    assert answer.status_code >= 400 and "path.repo" in answer.text, answer.text


def test_an_application_on_opensearch_py_helpers_runs_unchanged(tenants, attackers):
    from opensearchpy import helpers

    _, key = tenants["b"]
    client = endpoint_client(attackers["opensearch"]["endpoint"], key)
    client.indices.put_index_template(name="books-template", body={
        "index_patterns": ["books-*"], "template": {"settings": {"number_of_shards": 1, "number_of_replicas": 0}}})
    client.indices.create(index="books-1", body={
        "settings": {"index": {"knn": True}},
        "mappings": {"properties": {"title": {"type": "text"}, "year": {"type": "integer"},
                                    "v": {"type": "knn_vector", "dimension": 2,
                                          "method": {"name": "hnsw", "engine": "lucene", "space_type": "l2"}}}}})
    assert client.indices.get_settings(index="books-1")["books-1"]["settings"]["index"]["number_of_replicas"] == "0"
    docs = ({"_index": "books-1", "_id": str(i), "title": f"book {i}", "year": 1990 + i % 10, "n": i, "v": [i, 1]}
            for i in range(300))
    assert helpers.bulk(client, docs, refresh=True) == (300, [])
    client.indices.put_alias(index="books-1", name="books")
    assert len(list(helpers.scan(client, index="books", query={"query": {"match_all": {}}}, size=50))) == 300
    pit = client.create_pit(index="books", keep_alive="1m")["pit_id"]
    seen, after = 0, None
    while True:
        page = client.search(body={"size": 100, "pit": {"id": pit, "keep_alive": "1m"}, "sort": [{"year": "asc"}, {"n": "asc"}],
                                   **({"search_after": after} if after else {})})["hits"]["hits"]
        if not page:
            break
        seen, after = seen + len(page), page[-1]["sort"]
    client.delete_pit(body={"pit_id": [pit]})
    assert seen == 300
    aggs = client.search(index="books", body={"size": 0, "aggs": {"years": {"terms": {"field": "year"}}}})
    assert len(aggs["aggregations"]["years"]["buckets"]) == 10
    knn = client.search(index="books", body={"size": 1, "query": {"knn": {"v": {"vector": [42, 1], "k": 1}}}})
    assert knn["hits"]["hits"][0]["_id"] == "42"
    client.update(index="books-1", id="7", body={"doc": {"title": "renamed"}}, refresh=True)
    client.delete(index="books-1", id="8", refresh=True)
    assert client.count(index="books", body={"query": {"match": {"title": "renamed"}}})["count"] == 1
    assert client.count(index="books")["count"] == 299
    assert client.cat.indices(index="books-1", format="json")[0]["index"] == "books-1"
    assert client.cluster.health()["status"] in ("green", "yellow")


def test_an_application_on_the_elasticsearch_client_helpers_runs_unchanged(tenants, attackers):
    from elasticsearch import Elasticsearch, helpers

    _, key = tenants["b"]
    with Elasticsearch(attackers["elasticsearch"]["endpoint"], api_key=key) as client:
        client.indices.put_index_template(name="notes", index_patterns=["notes-*"],
                                          template={"settings": {"number_of_replicas": 0}})
        client.indices.create(index="notes-1", mappings={"properties": {
            "text": {"type": "text"}, "n": {"type": "integer"},
            "v": {"type": "dense_vector", "dims": 2, "index": True, "similarity": "l2_norm",
                  "index_options": {"type": "hnsw"}}}})  # exact vectors: int8 would blur the nearest
        assert helpers.bulk(client, ({"_index": "notes-1", "_id": str(i), "text": f"note {i}", "n": i % 5,
                                      "v": [i, 1]} for i in range(200)), refresh=True) == (200, [])
        client.indices.put_alias(index="notes-1", name="notes")
        assert len(list(helpers.scan(client, index="notes", query={"query": {"match_all": {}}}, size=40))) == 200
        pit = client.open_point_in_time(index="notes", keep_alive="1m")["id"]
        page = client.search(pit={"id": pit, "keep_alive": "1m"}, size=150, sort=[{"n": "asc"}])["hits"]["hits"]
        rest = client.search(pit={"id": pit, "keep_alive": "1m"}, size=150, sort=[{"n": "asc"}],
                             search_after=page[-1]["sort"])["hits"]["hits"]
        client.close_point_in_time(id=pit)
        assert len(page) + len(rest) == 200
        aggs = client.search(index="notes", size=0, aggs={"n": {"terms": {"field": "n"}}})
        assert len(aggs["aggregations"]["n"]["buckets"]) == 5
        knn = client.search(index="notes", knn={"field": "v", "query_vector": [42, 1], "k": 1, "num_candidates": 10})
        assert knn["hits"]["hits"][0]["_id"] == "42"
        client.update(index="notes-1", id="3", doc={"text": "changed"}, refresh=True)
        client.delete(index="notes-1", id="4", refresh=True)
        assert client.count(index="notes", query={"match": {"text": "changed"}})["count"] == 1
        assert client.count(index="notes")["count"] == 199


def test_a_flood_of_bad_keys_is_bounded_and_tenants_keep_answering(api, settings, tenants, attackers):
    """Thousands of random keys from one address: after the per-minute allowance each costs no
    KV read (429); a well-behaved tenant from another address is served throughout, and a key
    made during the flood works at once."""
    tenant, key = tenants["b"]
    endpoint = attackers["opensearch"]["endpoint"]
    flood = httpx.AsyncHTTPTransport(local_address="127.0.0.77")

    async def run() -> tuple[dict[int, int], list[int], int]:
        statuses: dict[int, int] = {}
        served: list[int] = []
        stop = asyncio.Event()
        async with httpx.AsyncClient(transport=flood, timeout=30) as attacker, \
                httpx.AsyncClient(timeout=30) as tenant_client:
            async def attack(worker: int) -> None:
                for _ in range(100):
                    bad = f"ess_{uuid.uuid4().hex[:12]}_{uuid.uuid4().hex}"
                    answer = await attacker.get(f"{endpoint}/_search", headers={"Authorization": f"ApiKey {bad}"})
                    statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1

            async def behave() -> None:
                while not stop.is_set():
                    answer = await tenant_client.get(f"{endpoint}/_cluster/health",
                                                     headers={"Authorization": f"ApiKey {key}"})
                    served.append(answer.status_code)

            behaving = asyncio.create_task(behave())
            workers = [asyncio.create_task(attack(n)) for n in range(30)]
            await asyncio.sleep(1.0)  # mid-flood, a new key is made and used at once
            fresh = (await asyncio.to_thread(api.post, f"/tenants/{tenant}/keys", json={})).json()["key"]
            ISSUED_KEYS.append(fresh)
            first_use = (await tenant_client.get(f"{endpoint}/_cluster/health",
                                                 headers={"Authorization": f"ApiKey {fresh}"})).status_code
            await asyncio.gather(*workers)
            stop.set()
            await behaving
        return statuses, served, first_use

    statuses, served, first_use = asyncio.run(run())
    assert sum(statuses.values()) == 3000 and set(statuses) <= {401, 429}, statuses
    assert statuses.get(401, 0) <= settings.auth_failures_per_minute  # only these cost a KV read
    assert served and set(served) == {200}, served
    assert first_use == 200
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.77"), timeout=10) as same_address:
        throttled = same_address.get(f"{endpoint}/_search", headers={"Authorization": "ApiKey ess_000000000000_x"})
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) >= 1
    assert "refused keys" in throttled.json()["error"]["reason"]


def test_the_operators_calls_pass_every_route_and_are_audited(gateway, attackers):
    endpoint = attackers["opensearch"]["endpoint"]
    assert httpx.get(f"{endpoint}/_cat/nodes?format=json", headers=OPERATOR, timeout=10).status_code == 200
    log = gateway.log_path.read_text(errors="replace")
    assert any("operator call" in line and "/_cat/nodes" in line for line in log.splitlines())
