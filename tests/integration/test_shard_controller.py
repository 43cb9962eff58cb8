"""The shard controller on real engines: replicas follow search load, a scale-in (asked of the
manager, whose driver drains the node first) loses no write even when the controller dies mid-way,
a reshard under writes loses nothing."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.conftest import OPERATOR, OPERATOR_KEY, seed_request, shard_controller_with
from tests.helpers import endpoint_client, wait_for_status, wait_until

POLICY = {
    # scaled down so a test's small load and data trigger decisions; unrelated signals switched off
    "ESS_SEARCH_PER_SHARD_HIGH": "2",
    "ESS_SEARCH_PER_SHARD_LOW": "0",
    "ESS_SUSTAIN_SAMPLES": "2",
    "ESS_COOLDOWN_S": "0",
    "ESS_SHARD_TARGET_MAX_GB": "0.00005",  # 50 kB
    "ESS_SHARD_TARGET_GB": "0.00003",
    "ESS_MAX_PRIMARIES": "2",
    "ESS_HEAP_HIGH": "1.1",
    "ESS_HEAP_LOW": "0",
    "ESS_CPU_HIGH": "1000",  # a JVM given one processor may use more than one core
    "ESS_CPU_LOW": "0",
    "ESS_DISK_USED_HIGH": "1.1",
    "ESS_POOL_QUEUE_HIGH": "100000",
    "ESS_SEARCH_LATENCY_HIGH_MS": "100000",
    "ESS_REJECTIONS_HIGH": "100000",
    "ESS_SHARDS_PER_GB_HEAP": "10000",
}


@pytest.fixture(scope="module")
def controller(nats, reporting, manager, settings, platform_env, state_dir):
    with shard_controller_with(POLICY, settings, platform_env, state_dir) as process:
        yield process


def test_controller_answers_health(controller):
    base = f"http://127.0.0.1:{controller.port}"
    assert httpx.get(f"{base}/health").text == "ok"
    assert httpx.get(f"{base}/ready").json() == {"status": "ready"}
    assert "process_resident_memory_bytes" in httpx.get(f"{base}/metrics").text


class Writer(threading.Thread):
    """Indexes documents through the platform until stopped; remembers what was acknowledged."""

    def __init__(self, api_url: str, cluster_id: str, index: str, prefix: str, text: str = ""):
        super().__init__(daemon=True)
        self.url = f"{api_url}/clusters/{cluster_id}/vector-indices/{index}/documents"
        self.prefix, self.text = prefix, text
        self.acked: set[str] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=30, headers=OPERATOR) as client:
            i = 0
            while not self.stop.is_set():
                ids = [f"{self.prefix}{i + j}" for j in range(5)]
                docs = [{"id": d, "vector": [1, n], "fields": {"note": self.text}} for n, d in enumerate(ids)]
                try:
                    answer = client.post(self.url, json={"documents": docs})
                    if answer.status_code == 200 and not answer.json()["errors"]:
                        self.acked.update(ids)
                        i += 5
                except httpx.HTTPError:
                    pass  # not acknowledged: sent again with the same ids
                time.sleep(0.05)


def engine(cluster):
    return endpoint_client(cluster["endpoint"], OPERATOR_KEY)


def ids_behind(cluster, alias: str) -> set[str]:
    client = engine(cluster)
    try:
        client.indices.refresh(index=alias)
        hits = client.search(index=alias, body={"size": 10000, "_source": False, "query": {"match_all": {}}})
        return {h["_id"] for h in hits["hits"]["hits"]}
    finally:
        client.close()


def replicas_of(cluster, alias: str) -> list[int]:
    client = engine(cluster)
    try:
        settings = client.indices.get_settings(index=alias)
        return [int(s["settings"]["index"]["number_of_replicas"]) for s in settings.values()]
    finally:
        client.close()


def actions(api, cluster_id):
    events = api.get(f"/clusters/{cluster_id}/events").json()["events"]
    return [(e["action"], e["outcome"]) for e in events if e["kind"] == "action"]


@pytest.fixture(scope="module")
def three_nodes(api, controller):
    created = api.post("/clusters", json=seed_request(service_name="trio", replicas=3)).json()
    cluster = wait_for_status(api, created["id"], "ready", timeout_s=120)
    base = f"/clusters/{cluster['id']}/vector-indices"
    assert api.post(base, json={"name": "books", "dimensions": 2}).status_code == 201
    docs = [{"id": f"before-{i}", "vector": [1, i]} for i in range(40)]
    assert api.post(f"{base}/books/documents", json={"documents": docs}).json()["indexed"] == 40
    yield cluster
    api.delete(f"/clusters/{cluster['id']}")


def test_search_load_raises_replicas(api, three_nodes):
    assert replicas_of(three_nodes, "books") == [1]
    stop = threading.Event()

    def search_load():
        client = engine(three_nodes)
        while not stop.is_set():
            client.search(index="books", body={"size": 1, "query": {"match_all": {}}})
            time.sleep(0.02)
        client.close()

    load = threading.Thread(target=search_load, daemon=True)
    load.start()
    try:
        wait_until(lambda: replicas_of(three_nodes, "books") == [2], 60, interval_s=0.5, what="replicas raised")
    finally:
        stop.set()
        load.join()
    plan = api.get(f"/clusters/{three_nodes['id']}/plan").json()
    assert "search above" in plan["plan"]["reason"] or ("set_replicas", "done") in actions(api, three_nodes["id"])
    assert ("set_replicas", "done") in actions(api, three_nodes["id"])


def test_scale_in_drains_first_and_survives_a_controller_crash(api, settings, three_nodes, controller):
    cluster_id = three_nodes["id"]
    writer = Writer(str(api.base_url), cluster_id, "books", "during-")
    writer.start()
    try:
        answer = api.patch(f"/clusters/{cluster_id}", json={"max_nodes": 2})
        assert answer.status_code == 202
        assert answer.json()["max_nodes"] == 2
        wait_until(lambda: (api.get(f"/clusters/{cluster_id}/plan").json().get("operation") or {}).get("kind")
                   == "scale_in", 60, interval_s=0.2, what="scale-in under way")
        controller.kill()  # mid-operation
        controller.start()
        wait_until(lambda: api.get(f"/clusters/{cluster_id}").json()["nodes"] == 2
                   and api.get(f"/clusters/{cluster_id}/plan").json().get("operation") is None, 180,
                   interval_s=1, what="two nodes and no operation left")
        time.sleep(1)
    finally:
        writer.stop.set()
        writer.join()
    cluster = wait_for_status(api, cluster_id, "ready")
    assert (cluster["replicas"], cluster["nodes"]) == (2, 2)
    assert writer.acked, "the writer never got through"
    expected = {f"before-{i}" for i in range(40)} | writer.acked
    assert ids_behind(cluster, "books") >= expected
    done = actions(api, cluster_id)
    assert ("scale_in", "done") in done
    # the controller asked for a count; the driver drained Node 3 before removing it
    steps = [(e["kind"], e.get("action") or e.get("reason")) for e in
             api.get(f"/clusters/{cluster_id}/events").json()["events"] if e["kind"] in ("action", "status")]
    asked = steps.index(("action", "scale_requested"))
    assert ("status", "Node 3 drained and removed") in steps[asked:], steps


def test_pinned_cluster_is_left_alone(api, three_nodes):
    cluster_id = three_nodes["id"]
    assert api.patch(f"/clusters/{cluster_id}", json={"autoscaling": False}).json()["autoscaling"] is False
    wait_until(lambda: "pinned" in ((api.get(f"/clusters/{cluster_id}/plan").json().get("plan") or {})
                                    .get("reason", "")), 30, what="pinned plan")


def test_reshard_under_writes_loses_nothing_and_readers_keep_answering(api, controller):
    created = api.post("/clusters", json=seed_request(service_name="resharded")).json()
    cluster = wait_for_status(api, created["id"], "ready")
    base = f"/clusters/{cluster['id']}/vector-indices"
    assert api.post(base, json={"name": "logs", "dimensions": 2}).status_code == 201
    writer = Writer(str(api.base_url), cluster["id"], "logs", "w-", text="x" * 400)
    reads = {"answered": 0, "failed": 0}
    stop = threading.Event()

    def reader():
        with httpx.Client(timeout=30, headers=OPERATOR) as client:
            while not stop.is_set():
                answer = client.post(f"{api.base_url}{base}/logs/search", json={"vector": [1, 0], "k": 3})
                reads["answered" if answer.status_code == 200 else "failed"] += 1
                time.sleep(0.05)

    read_thread = threading.Thread(target=reader, daemon=True)
    writer.start()
    read_thread.start()
    try:
        wait_until(lambda: ("reshard", "done") in actions(api, cluster["id"]), 120, interval_s=1,
                   what="reshard done")
        time.sleep(1)
    finally:
        writer.stop.set()
        stop.set()
        writer.join()
        read_thread.join()
    client = engine(cluster)
    try:
        behind = client.indices.get_alias(name="logs")
        assert list(behind) == ["logs-000002"]
        assert client.indices.get_settings(index="logs-000002")["logs-000002"]["settings"]["index"][
            "number_of_shards"] == "2"
    finally:
        client.close()
    assert len(writer.acked) > 50
    assert ids_behind(cluster, "logs") == writer.acked
    assert reads["failed"] == 0 and reads["answered"] > 0
    api.delete(f"/clusters/{cluster['id']}")
