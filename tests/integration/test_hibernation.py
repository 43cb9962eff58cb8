"""Serverless: an idle cluster hibernates (no engine process, data kept), the next request through
the gateway wakes it and is answered with every document; and the races around both are safe."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from services.manager.drivers.local_processes import find_engines
from tests.conftest import OPERATOR, OPERATOR_KEY, _service, seed_request
from tests.helpers import endpoint_client, status_events, wait_for_status, wait_until

DOCS = 200


def engines_of(settings, cluster_id: str) -> list:
    return [n for n in find_engines(settings.clusters_dir) if n.cluster_id == cluster_id]


def load(cluster: dict, index: str = "kept") -> None:
    client = endpoint_client(cluster["endpoint"], OPERATOR_KEY)
    body = "".join(f'{{"index":{{"_index":"{index}","_id":"d{i}"}}}}\n{{"n":{i}}}\n' for i in range(DOCS))
    answer = client.bulk(body=body, refresh=True)
    assert not answer["errors"]


def new_cluster(api, **overrides) -> dict:
    created = api.post("/clusters", json=seed_request(**overrides))
    assert created.status_code == 202, created.text
    return wait_for_status(api, created.json()["id"], "ready")


def test_an_idle_cluster_hibernates_and_the_next_search_wakes_it_with_every_document(api, settings):
    cluster = new_cluster(api, service_name="idle", hibernate_after_s=20)
    load(cluster)
    hibernated = wait_for_status(api, cluster["id"], "hibernated", timeout_s=60)
    assert engines_of(settings, cluster["id"]) == []  # an idle tenant costs disk only
    assert hibernated["endpoint"] == cluster["endpoint"]
    # what it holds, as of its hibernation, read without waking it
    assert hibernated["stored_documents"] == DOCS and hibernated["stored_bytes"] > 0
    assert engines_of(settings, cluster["id"]) == []
    client = endpoint_client(cluster["endpoint"], OPERATOR_KEY, timeout=90)
    assert client.count(index="kept")["count"] == DOCS  # held while it woke, then answered
    assert api.get(f"/clusters/{cluster['id']}").json()["status"] == "ready"
    statuses = [e.status for e in asyncio.run(status_events(settings, cluster))]
    assert statuses[-4:] == ["hibernating", "hibernated", "waking", "ready"], statuses
    api.delete(f"/clusters/{cluster['id']}")


def test_hibernate_and_wake_on_request_and_patch_the_idle_time(api, settings):
    cluster = new_cluster(api, service_name="manual", hibernate_after_s=0)
    assert cluster["hibernate_after_s"] == 0
    changed = api.patch(f"/clusters/{cluster['id']}", json={"hibernate_after_s": 3600})
    assert changed.status_code == 202 and changed.json()["hibernate_after_s"] == 3600
    bad = api.patch(f"/clusters/{cluster['id']}", json={"hibernate_after_s": 5})
    assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "hibernate_after_s"
    load(cluster)
    assert api.post(f"/clusters/{cluster['id']}/hibernate").status_code == 202
    wait_for_status(api, cluster["id"], "hibernated", timeout_s=60)
    assert engines_of(settings, cluster["id"]) == []
    assert api.post(f"/clusters/{cluster['id']}/wake").status_code == 202
    wait_for_status(api, cluster["id"], "ready", timeout_s=90)
    assert endpoint_client(cluster["endpoint"], OPERATOR_KEY).count(index="kept")["count"] == DOCS
    api.delete(f"/clusters/{cluster['id']}")


def test_writes_while_hibernation_begins_are_served_or_refused_never_lost(api, settings):
    cluster = new_cluster(api, service_name="racing", hibernate_after_s=0)
    client = endpoint_client(cluster["endpoint"], OPERATOR_KEY, timeout=90, max_retries=0)
    client.indices.create(index="racing", body={"settings": {"number_of_shards": 1}})
    before = {n.pid for n in engines_of(settings, cluster["id"])}
    acknowledged, refused, stop = [], [], threading.Event()

    def write(worker: int) -> None:
        n = 0
        while not stop.is_set():
            doc_id = f"w{worker}-{n}"
            n += 1
            answer = httpx.put(f"{cluster['endpoint']}/racing/_doc/{doc_id}", json={"n": n}, headers=OPERATOR,
                               timeout=90)
            (acknowledged if answer.status_code in (200, 201) else refused).append((doc_id, answer.status_code))

    with ThreadPoolExecutor(3) as pool:
        for worker in range(3):
            pool.submit(write, worker)
        time.sleep(1)
        asked = api.post(f"/clusters/{cluster['id']}/hibernate")
        assert asked.status_code == 202 and asked.json()["status"] == "hibernating", asked.text
        time.sleep(4)  # the stop goes on while they write; the writes held meanwhile then wake it
        stop.set()
    assert all(status == 503 for _, status in refused), refused
    wait_for_status(api, cluster["id"], "ready", timeout_s=90)
    statuses = [e.status for e in asyncio.run(status_events(settings, cluster))]
    # the stop asked for completes although writes came at once, then the writes held meanwhile
    # woke it (`hibernated` shows only if no write reached the gateway before the stop ended)
    after = statuses[statuses.index("hibernating"):]
    assert after in (["hibernating", "waking", "ready"], ["hibernating", "hibernated", "waking", "ready"]), statuses
    assert before.isdisjoint(n.pid for n in engines_of(settings, cluster["id"]))  # a new engine process
    client.indices.refresh(index="racing")
    found = {h["_id"] for h in client.search(index="racing", body={"size": 10000})["hits"]["hits"]}
    lost = {doc_id for doc_id, _ in acknowledged} - found
    assert acknowledged and not lost, f"{len(lost)} acknowledged writes lost"
    api.delete(f"/clusters/{cluster['id']}")


def test_a_delete_during_a_wake_and_a_wake_during_a_delete(api, settings):
    first = new_cluster(api, service_name="del-wake", hibernate_after_s=0)
    api.post(f"/clusters/{first['id']}/hibernate")
    wait_for_status(api, first["id"], "hibernated", timeout_s=60)
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(httpx.get, f"{first['endpoint']}/_cluster/health", headers=OPERATOR, timeout=90)
        wait_until(lambda: api.get(f"/clusters/{first['id']}").json()["status"] == "waking", 30, what="waking")
        assert api.delete(f"/clusters/{first['id']}").status_code == 202
        answer = held.result()
    assert answer.status_code == 404 and "being deleted" in answer.json()["error"]["reason"]
    # a delete takes a final snapshot first, for which a sleeping engine is started: a JVM boot
    wait_until(lambda: api.get(f"/clusters/{first['id']}").status_code == 404, 180, what="first deleted")
    assert engines_of(settings, first["id"]) == []

    second = new_cluster(api, service_name="wake-del", hibernate_after_s=0)
    api.post(f"/clusters/{second['id']}/hibernate")
    wait_for_status(api, second["id"], "hibernated", timeout_s=60)
    assert api.delete(f"/clusters/{second['id']}").status_code == 202
    woken = api.post(f"/clusters/{second['id']}/wake")
    assert woken.status_code in (404, 409), woken.text  # deleting, or already gone
    through_gateway = httpx.get(f"{second['endpoint']}/_cluster/health", headers=OPERATOR, timeout=30)
    assert through_gateway.status_code == 404
    wait_until(lambda: api.get(f"/clusters/{second['id']}").status_code == 404, 180, what="second deleted")
    assert engines_of(settings, second["id"]) == []


@pytest.fixture
def second_gateway(nats, settings, platform_env, state_dir):
    from devrun.supervisor import free_port

    port = free_port()
    process = _service("services.gateway", port, {**platform_env, "ESS_GATEWAY_PORT": str(port),
                                                  "ESS_GATEWAY_METRICS_PORT": str(free_port()),
                                                  "ESS_GATEWAY_INSTANCE_ID": "second"}, state_dir)
    yield port
    process.stop()


def test_a_held_request_survives_a_gateway_restart_and_two_gateways_serve_one_cluster(
        api, settings, gateway, second_gateway):
    cluster = new_cluster(api, service_name="restart", hibernate_after_s=0)
    load(cluster)
    api.post(f"/clusters/{cluster['id']}/hibernate")
    wait_for_status(api, cluster["id"], "hibernated", timeout_s=60)
    other = f"http://127.0.0.1:{second_gateway}/{cluster['id']}"
    with ThreadPoolExecutor(2) as pool:
        held_here = pool.submit(httpx.get, f"{cluster['endpoint']}/kept/_count", headers=OPERATOR, timeout=90)
        held_there = pool.submit(httpx.get, f"{other}/kept/_count", headers=OPERATOR, timeout=90)
        wait_until(lambda: api.get(f"/clusters/{cluster['id']}").json()["status"] == "waking", 30, what="waking")
        gateway.process.terminate()  # a graceful stop: held requests are finished first
        here, there = held_here.result(), held_there.result()
    gateway.process.wait(90)
    gateway.start()
    assert (here.status_code, here.json()["count"]) == (200, DOCS)
    assert (there.status_code, there.json()["count"]) == (200, DOCS)
    wakes = [e for e in asyncio.run(status_events(settings, cluster)) if e.status == "waking"]
    assert len(wakes) == 1  # two gateways asked; the cluster woke once
    after = httpx.get(f"{cluster['endpoint']}/kept/_count", headers=OPERATOR, timeout=30)
    assert after.json()["count"] == DOCS
    api.delete(f"/clusters/{cluster['id']}")
