"""Crashes: a killed engine comes back by itself; a killed manager leaves no twin or orphan."""

from __future__ import annotations

import os
import signal

import httpx

from services.manager.drivers.local_processes import find_engines
from tests.conftest import seed_request
from tests.helpers import status_events, wait_for_status, wait_until


def _engines_of(settings, cluster_id):
    return [e for e in find_engines(settings.clusters_dir) if e.cluster_id == cluster_id]


def test_killed_engine_is_back_and_keeps_its_data(api, settings):
    cluster = api.post("/clusters", json=seed_request(service_name="phoenix")).json()
    ready = wait_for_status(api, cluster["id"], "ready")
    base = f"/clusters/{cluster['id']}/vector-indices"
    assert api.post(base, json={"name": "kept", "dimensions": 2}).status_code == 201
    api.post(f"{base}/kept/documents", json={"documents": [{"id": "one", "vector": [1, 0]}]})

    [engine] = _engines_of(settings, cluster["id"])
    os.kill(engine.pid, signal.SIGKILL)
    wait_until(lambda: api.get(f"/clusters/{cluster['id']}").json()["status"] != "ready", 30,
               interval_s=0.1, what="the crash noticed")
    wait_for_status(api, cluster["id"], "ready", timeout_s=180)  # a JVM boot took over 60 s at load 28

    [restarted] = _engines_of(settings, cluster["id"])
    assert restarted.pid != engine.pid
    hits = api.post(f"{base}/kept/search", json={"vector": [1, 0], "k": 1}).json()["hits"]
    assert [h["id"] for h in hits] == ["one"]
    assert api.get(f"/clusters/{cluster['id']}").json()["endpoint"] == ready["endpoint"]
    api.delete(f"/clusters/{cluster['id']}")


async def test_manager_killed_while_provisioning_ends_ready_once_with_one_engine(api, settings, manager):
    cluster = api.post("/clusters", json=seed_request(service_name="survivor")).json()
    wait_until(lambda: _engines_of(settings, cluster["id"]), 30, interval_s=0.05, what="engine spawned")
    manager.kill()  # SIGKILL while the engine is still starting
    manager.start()

    ready = wait_for_status(api, cluster["id"], "ready")
    assert len(_engines_of(settings, cluster["id"])) == 1
    statuses = [e.status for e in await status_events(settings, ready)]
    assert statuses.count("ready") == 1, statuses
    api.delete(f"/clusters/{cluster['id']}")


def test_restarted_manager_adopts_running_engines(api, settings, manager):
    cluster = api.post("/clusters", json=seed_request(service_name="adopted")).json()
    wait_for_status(api, cluster["id"], "ready")
    [before] = _engines_of(settings, cluster["id"])

    manager.stop()
    assert [e.pid for e in _engines_of(settings, cluster["id"])] == [before.pid]  # tenants keep serving
    manager.start()

    wait_for_status(api, cluster["id"], "ready")
    assert [e.pid for e in _engines_of(settings, cluster["id"])] == [before.pid]
    api.delete(f"/clusters/{cluster['id']}")


def test_scaling_out_and_in_keeps_every_document(api, settings):
    cluster = api.post("/clusters", json=seed_request(service_name="elastic")).json()
    wait_for_status(api, cluster["id"], "ready")
    base = f"/clusters/{cluster['id']}/vector-indices"
    api.post(base, json={"name": "kept", "dimensions": 2})
    docs = [{"id": f"d{i}", "vector": [1, i]} for i in range(50)]
    assert api.post(f"{base}/kept/documents", json={"documents": docs}).json()["indexed"] == 50

    for replicas in (2, 1):
        answer = api.patch(f"/clusters/{cluster['id']}", json={"replicas": replicas})
        assert answer.status_code == 202
        assert answer.json()["status"] == "scaling"
        ready = wait_for_status(api, cluster["id"], "ready")
        assert ready["nodes"] == replicas
        assert sorted(e.node for e in _engines_of(settings, cluster["id"])) == list(range(1, replicas + 1))
        hits = api.post(f"{base}/kept/search", json={"vector": [1, 0], "k": 50}).json()["hits"]
        assert sorted(h["id"] for h in hits) == sorted(d["id"] for d in docs)
    api.delete(f"/clusters/{cluster['id']}")


def test_reporting_answers_health(reporting):
    base = f"http://127.0.0.1:{reporting.port}"
    assert httpx.get(f"{base}/health").text == "ok"
    assert httpx.get(f"{base}/ready").json() == {"status": "ready"}
    assert "process_resident_memory_bytes" in httpx.get(f"{base}/metrics").text
