"""Warm engines: a create and a wake of the warm size are served by a standby JVM of the pool and
keep every document; the pool refills; a manager killed right after a hand-over leaves exactly
one node; a node of another size never lands in a standby's heap."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from services.manager.drivers.local_processes import find_engines, find_standbys
from tests.conftest import OPERATOR, seed_request
from tests.helpers import status_events, wait_for_status, wait_until

WARM = {"cpu": "500m", "memory": "1Gi"}  # the README tour's size: what the pool keeps warm
DOCS = 120
VECTORS = {
    "opensearch": ({"settings": {"index.knn": True, "number_of_replicas": 0},
                    "mappings": {"properties": {"v": {"type": "knn_vector", "dimension": 2, "method": {
                        "name": "hnsw", "engine": "lucene", "space_type": "l2"}}}}},
                   lambda k: {"size": k, "query": {"knn": {"v": {"vector": [3.0, 3.1], "k": k}}}}),
    "elasticsearch": ({"settings": {"number_of_replicas": 0},
                       "mappings": {"properties": {"v": {"type": "dense_vector", "dims": 2, "similarity": "l2_norm",
                                                         "index_options": {"type": "hnsw"}}}}},
                      lambda k: {"knn": {"field": "v", "query_vector": [3.0, 3.1], "k": k, "num_candidates": 50}}),
}


def idle_standbys(settings, engine: str) -> list:
    return [s for s in find_standbys(settings.standby_dir) if s.engine == engine and not s.assigned and s.ready]


def node_pids(settings, cluster_id: str) -> list[int]:
    return [n.pid for n in find_engines(settings.clusters_dir) if n.cluster_id == cluster_id]


def nearest(endpoint: str, engine: str) -> list[str]:
    query = VECTORS[engine][1](3)
    answer = httpx.post(f"{endpoint}/vectors/_search", json=query, headers=OPERATOR, timeout=90)
    assert answer.status_code == 200, answer.text
    return [hit["_id"] for hit in answer.json()["hits"]["hits"]]


@pytest.mark.parametrize("engine", ["opensearch", "elasticsearch"])
def test_a_create_and_a_wake_served_by_standbys_keep_every_document(api, settings, engine):
    [standby, *_] = wait_until(lambda: idle_standbys(settings, engine), 180, what=f"an idle {engine} standby")
    created = api.post("/clusters", json=seed_request(service_name=f"warm-{engine[:2]}", engine=engine,
                                                      hibernate_after_s=0, **WARM))
    assert created.status_code == 202, created.text
    cluster = wait_for_status(api, created.json()["id"], "ready")
    assert node_pids(settings, cluster["id"]) == [standby.pid]  # node 1 runs in the warm JVM

    endpoint, headers = cluster["endpoint"], {**OPERATOR, "content-type": "application/x-ndjson"}
    mappings, _ = VECTORS[engine]
    assert httpx.put(f"{endpoint}/vectors", json=mappings, headers=OPERATOR, timeout=60).status_code == 200
    body = "".join(f'{{"index":{{"_index":"vectors","_id":"d{i}"}}}}\n{{"n":{i},"v":[{i / 10},{i / 10}]}}\n'
                   for i in range(DOCS))
    bulk = httpx.post(f"{endpoint}/_bulk?refresh=true", content=body, headers=headers, timeout=60)
    assert bulk.status_code == 200 and not bulk.json()["errors"], bulk.text[:300]
    before = nearest(endpoint, engine)
    assert before[0] == "d30"

    # the pool refills behind the taken standby, with a new JVM
    [refill, *_] = wait_until(lambda: idle_standbys(settings, engine), 180, what="the pool refilled")
    assert refill.pid != standby.pid
    assert api.post(f"/clusters/{cluster['id']}/hibernate").status_code == 202
    wait_for_status(api, cluster["id"], "hibernated", timeout_s=90)
    assert node_pids(settings, cluster["id"]) == []

    # the next request wakes it into the refilled standby and is answered with every document
    count = httpx.get(f"{endpoint}/vectors/_count", headers=OPERATOR, timeout=120)
    assert count.status_code == 200 and count.json()["count"] == DOCS
    assert node_pids(settings, cluster["id"]) == [refill.pid]
    assert nearest(endpoint, engine) == before
    api.delete(f"/clusters/{cluster['id']}")


async def test_a_manager_killed_right_after_a_hand_over_leaves_exactly_one_node(api, settings, manager):
    wait_until(lambda: idle_standbys(settings, "opensearch"), 180, what="an idle standby")
    created = api.post("/clusters", json=seed_request(service_name="handed-over", **WARM)).json()
    handed = wait_until(lambda: node_pids(settings, created["id"]), 60, interval_s=0.02, what="the hand-over")
    manager.kill()  # SIGKILL: the assignment file is all that says which node the standby runs
    manager.start()

    ready = wait_for_status(api, created["id"], "ready")
    assert node_pids(settings, created["id"]) == handed  # adopted, not started twice
    health = httpx.get(f"{ready['endpoint']}/_cluster/health", headers=OPERATOR, timeout=30).json()
    assert health["number_of_nodes"] == 1
    statuses = [e.status for e in await status_events(settings, ready)]
    assert statuses.count("ready") == 1, statuses
    api.delete(f"/clusters/{created['id']}")


def test_a_node_of_another_size_starts_cold_and_leaves_the_standby_idle(api, settings):
    [standby, *_] = wait_until(lambda: idle_standbys(settings, "opensearch"), 180, what="an idle standby")
    created = api.post("/clusters", json=seed_request(service_name="other-size", cpu="500m", memory="512Mi")).json()
    wait_for_status(api, created["id"], "ready")
    [pid] = node_pids(settings, created["id"])
    assert pid != standby.pid
    assert standby.pid in [s.pid for s in idle_standbys(settings, "opensearch")]  # its 512 MiB heap kept waiting
    api.delete(f"/clusters/{created['id']}")
