"""Backups as a tenant sees them: snapshot, drop an index by mistake, restore it with every
document and the same kNN answer; the schedule takes one snapshot per period, also across a
manager restart; a deleted cluster comes back with its data, until its retention is over; a clone
starts with it."""

from __future__ import annotations

import random

import httpx

import pytest
from opensearchpy.exceptions import NotFoundError

from tests.conftest import ISSUED_KEYS, OPERATOR_KEY, key_header, seed_request
from tests.helpers import endpoint_client, wait_for_status, wait_until

DOCS = 300
DIMENSIONS = 4
QUERY = {"vector": [0.9, 0.1, 0.3, 0.5], "k": 10}
RETENTION_S = 30  # long enough for the final snapshot to be listed first, even on a loaded machine


def new_cluster(api, **overrides) -> dict:
    created = api.post("/clusters", json=seed_request(hibernate_after_s=0, **overrides))
    assert created.status_code == 202, created.text
    return wait_for_status(api, created.json()["id"], "ready", timeout_s=180)


def load_vectors(api, cluster_id: str) -> list[str]:
    """300 documents in a vector index; the kNN answer's ids, in order."""
    base = f"/clusters/{cluster_id}/vector-indices"
    assert api.post(base, json={"name": "docs", "dimensions": DIMENSIONS}).status_code == 201
    rng = random.Random(11)
    docs = [{"id": f"d{i}", "vector": [rng.random() for _ in range(DIMENSIONS)], "fields": {"n": i}}
            for i in range(DOCS)]
    assert api.post(f"{base}/docs/documents", json={"documents": docs}).json()["indexed"] == DOCS
    endpoint_client(api.get(f"/clusters/{cluster_id}").json()["endpoint"], OPERATOR_KEY).indices.refresh(index="docs")
    return knn_ids(api, cluster_id)


def knn_ids(api, cluster_id: str) -> list[str]:
    answer = api.post(f"/clusters/{cluster_id}/vector-indices/docs/search", json=QUERY)
    assert answer.status_code == 200, answer.text
    return [hit["id"] for hit in answer.json()["hits"]]


def count(cluster: dict) -> int:
    client = endpoint_client(cluster["endpoint"], OPERATOR_KEY, timeout=60)
    client.indices.refresh(index="docs")
    return client.count(index="docs")["count"]


def snapshots(api, cluster_id: str) -> list[dict]:
    answer = api.get(f"/clusters/{cluster_id}/snapshots")
    assert answer.status_code == 200, answer.text
    return answer.json()["snapshots"]


def wait_for_snapshot(api, cluster_id: str, name: str) -> dict:
    def done():
        found = [s for s in snapshots(api, cluster_id) if s["name"] == name]
        return found[0] if found and found[0]["status"] != "in_progress" else None

    return wait_until(done, 120, interval_s=0.5, what=f"snapshot {name} finished")


def wait_for_restore(api, cluster_id: str) -> dict:
    def done():
        restore = api.get(f"/clusters/{cluster_id}").json()["restore"]
        return restore if restore and restore["state"] in ("done", "failed") else None

    return wait_until(done, 180, interval_s=0.5, what="restore finished")


def take_snapshot(api, cluster_id: str) -> dict:
    taken = api.post(f"/clusters/{cluster_id}/snapshots")
    assert taken.status_code == 202, taken.text
    assert taken.json()["status"] == "in_progress"
    snapshot = wait_for_snapshot(api, cluster_id, taken.json()["name"])
    assert snapshot["status"] == "success", snapshot
    return snapshot


def test_a_dropped_index_comes_back_from_a_snapshot_with_every_document_and_the_same_knn_answer(api, manager):
    cluster = new_cluster(api, service_name="mistake")
    before = load_vectors(api, cluster["id"])

    snapshot = take_snapshot(api, cluster["id"])
    assert snapshot["indices"] == ["docs-000001"] and snapshot["size_bytes"] > 0  # the index behind alias docs
    assert snapshot["started_at"] <= snapshot["finished_at"]

    client = endpoint_client(cluster["endpoint"], OPERATOR_KEY)
    client.indices.delete(index=list(client.indices.get_alias(name="docs")))  # the mistake, through the endpoint
    with pytest.raises(NotFoundError):
        client.count(index="docs")

    asked = api.post(f"/clusters/{cluster['id']}/restore", json={"snapshot": snapshot["name"], "indices": ["docs"]})
    assert asked.status_code == 202, asked.text
    assert asked.json()["restore"]["state"] in ("requested", "running")
    restore = wait_for_restore(api, cluster["id"])
    assert restore["state"] == "done", restore
    assert count(cluster) == DOCS
    assert knn_ids(api, cluster["id"]) == before

    # a restore of everything replaces what is there now with the snapshot's copy, also when
    # the manager is killed while it runs: never a cluster left restoring
    client.index(index="docs", id="late", body={"vector": [0, 0, 0, 1], "n": -1}, refresh=True)
    assert api.post(f"/clusters/{cluster['id']}/restore", json={"snapshot": snapshot["name"]}).status_code == 202
    manager.kill()
    manager.start()
    assert wait_for_restore(api, cluster["id"])["state"] == "done"
    assert count(cluster) == DOCS

    missing = api.post(f"/clusters/{cluster['id']}/restore", json={"snapshot": "no-such-snapshot"})
    assert missing.status_code == 404
    unknown_index = api.post(f"/clusters/{cluster['id']}/restore",
                             json={"snapshot": snapshot["name"], "indices": ["other"]})
    assert unknown_index.status_code == 422 and unknown_index.json()["fields"][0]["field"] == "indices"

    gone = api.delete(f"/clusters/{cluster['id']}/snapshots/{snapshot['name']}")
    assert gone.status_code == 200
    assert snapshot["name"] not in [s["name"] for s in snapshots(api, cluster["id"])]
    assert api.delete(f"/clusters/{cluster['id']}/snapshots/{snapshot['name']}").status_code == 404

    # a hibernated cluster is not woken for a backup: 409 says why and what to do
    assert api.post(f"/clusters/{cluster['id']}/hibernate").status_code == 202
    wait_for_status(api, cluster["id"], "hibernated", timeout_s=60)
    asleep = api.post(f"/clusters/{cluster['id']}/snapshots")
    assert asleep.status_code == 409 and asleep.json()["error"] == "hibernated" and "/wake" in asleep.json()["message"]
    api.delete(f"/clusters/{cluster['id']}")


def test_the_schedule_takes_one_snapshot_per_period_across_a_manager_restart_and_keeps_the_newest(api, manager,
                                                                                                  reporting):
    cluster = new_cluster(api, service_name="scheduled")
    assert cluster["snapshot_policy"] == {"every_s": 3600, "keep": 24}  # the platform's default
    period = 20
    changed = api.patch(f"/clusters/{cluster['id']}", json={"snapshot_policy": {"every_s": period}})
    assert changed.status_code == 202 and changed.json()["snapshot_policy"] == {"every_s": period, "keep": 24}

    def autos() -> list[int]:
        return sorted(int(s["name"].split("-")[1]) for s in snapshots(api, cluster["id"])
                      if s["name"].startswith("auto-"))

    first = wait_until(autos, 3 * period, interval_s=0.5, what="a scheduled snapshot")[0]
    manager.kill()  # SIGKILL, most likely within the period its snapshot was taken in
    manager.start()
    wait_until(lambda: len(autos()) >= 3, 4 * period, interval_s=1, what="two more periods")

    taken = autos()
    assert all(start % period == 0 for start in taken)
    # one per period, none skipped while a manager ran and none twice: consecutive periods
    assert taken == list(range(first, first + period * len(taken), period)), taken

    def age_on_metrics():
        text = httpx.get(f"http://127.0.0.1:{reporting.port}/metrics").text
        line = [x for x in text.splitlines() if x.startswith("ess_cluster_snapshot_age_seconds")
                and f'cluster="{cluster["id"]}"' in x]
        return float(line[0].rsplit(" ", 1)[1]) if line else None

    age = wait_until(lambda: (a := age_on_metrics()) is not None and a < 3 * period and a, 60, interval_s=1,
                     what="the snapshot age on reporting's /metrics")
    assert 0 < age < 3 * period

    assert api.patch(f"/clusters/{cluster['id']}", json={"snapshot_policy": {"keep": 1}}).status_code == 202
    wait_until(lambda: len(autos()) == 1, 3 * period, interval_s=1, what="pruned to keep=1")
    assert api.patch(f"/clusters/{cluster['id']}", json={"snapshot_policy": {"every_s": 0}}).status_code == 202
    api.delete(f"/clusters/{cluster['id']}")


def test_a_deleted_cluster_is_listed_and_comes_back_with_its_data(api):
    cluster = new_cluster(api, service_name="regret")
    before = load_vectors(api, cluster["id"])
    tenant = {"tenant_org_id": cluster["tenant_org_id"]}

    assert api.delete(f"/clusters/{cluster['id']}").status_code == 202
    [deleted] = wait_until(lambda: api.get("/clusters", params={**tenant, "deleted": "true"}).json()["clusters"],
                           120, interval_s=0.5, what="listed as deleted")  # after its final snapshot
    assert deleted["id"] == cluster["id"] and deleted["status"] == "deleted"
    assert deleted["deleted_at"] and deleted["endpoint"] is None and deleted["final_snapshot"].startswith("final-")
    assert api.get("/clusters", params=tenant).json()["clusters"] == []
    assert api.get(f"/clusters/{cluster['id']}").status_code == 404  # deleted, as before backups
    assert api.post(f"/clusters/{cluster['id']}/snapshots").status_code == 404

    back = api.post(f"/clusters/{cluster['id']}/undelete")
    assert back.status_code == 202, back.text
    assert back.json()["restore"]["snapshot"].startswith("final-")
    assert api.post(f"/clusters/{cluster['id']}/undelete").status_code == 409  # it is not deleted now
    ready = wait_for_status(api, cluster["id"], "ready", timeout_s=180)
    assert wait_for_restore(api, cluster["id"])["state"] == "done"
    assert ready["endpoint"] == cluster["endpoint"]  # the tenant's clients need no change
    assert count(ready) == DOCS
    assert knn_ids(api, cluster["id"]) == before
    assert [c["id"] for c in api.get("/clusters", params=tenant).json()["clusters"]] == [cluster["id"]]
    api.delete(f"/clusters/{cluster['id']}")


def test_a_clone_starts_with_the_snapshot_and_only_the_operator_clones_across_tenants(api, settings):
    source = new_cluster(api, service_name="original")
    before = load_vectors(api, source["id"])
    snapshot = take_snapshot(api, source["id"])
    origin = {"cluster_id": source["id"], "snapshot": snapshot["name"]}

    other = seed_request()
    stranger = api.post(f"/tenants/{other['tenant_org_id']}/keys", json={}).json()["key"]
    ISSUED_KEYS.append(stranger)
    refused = api.post("/clusters", json={**other, "from": origin},
                       headers=key_header(stranger))
    assert refused.status_code == 404  # another tenant's cluster looks absent to a tenant key

    created = api.post("/clusters", json={**seed_request(service_name="copy", hibernate_after_s=0), "from": origin})
    assert created.status_code == 202, created.text  # the operator clones into another tenant
    clone = wait_for_status(api, created.json()["id"], "ready", timeout_s=180)
    assert wait_for_restore(api, clone["id"])["state"] == "done"
    assert count(clone) == DOCS
    assert knn_ids(api, clone["id"]) == before
    assert count(source) == DOCS  # the source is untouched
    # the clone read the source through a copy in its own path.repo, gone once it was restored
    assert not (settings.restores_dir / clone["id"] / source["id"]).exists()
    for cluster in (clone, source):
        api.delete(f"/clusters/{cluster['id']}")


def test_an_elasticsearch_cluster_snapshots_and_restores_through_the_same_api(api):
    cluster = new_cluster(api, service_name="es-backup", engine="elasticsearch")
    client = endpoint_client(cluster["endpoint"], OPERATOR_KEY)
    body = "".join(f'{{"index":{{"_index":"logs","_id":"l{i}"}}}}\n{{"n":{i}}}\n' for i in range(DOCS))
    assert not client.bulk(body=body, refresh=True)["errors"]
    snapshot = take_snapshot(api, cluster["id"])
    assert snapshot["indices"] == ["logs"]
    client.indices.delete(index="logs")
    assert api.post(f"/clusters/{cluster['id']}/restore", json={"snapshot": snapshot["name"]}).status_code == 202
    assert wait_for_restore(api, cluster["id"])["state"] == "done"
    assert client.count(index="logs")["count"] == DOCS
    api.delete(f"/clusters/{cluster['id']}")


@pytest.fixture
def short_retention(manager):
    """The session's manager restarted with a retention of RETENTION_S (it reads settings at start);
    afterwards restarted again with the session's own."""
    usual = manager.env
    manager.stop()
    manager.env = {**usual, "ESS_DELETED_RETENTION_S": str(RETENTION_S)}
    manager.start()
    yield
    manager.stop()
    manager.env = usual
    manager.start()


def test_after_the_retention_a_deleted_cluster_and_its_snapshots_are_gone_for_good(api, settings, short_retention):
    cluster = new_cluster(api, service_name="purged")
    load_vectors(api, cluster["id"])
    deleted_list = {"tenant_org_id": cluster["tenant_org_id"], "deleted": "true"}
    repository = settings.snapshots_dir / cluster["id"]

    assert api.delete(f"/clusters/{cluster['id']}").status_code == 202
    [deleted] = wait_until(lambda: api.get("/clusters", params=deleted_list).json()["clusters"], RETENTION_S,
                           interval_s=0.5, what="listed as deleted")
    assert deleted["id"] == cluster["id"] and deleted["final_snapshot"].startswith("final-")
    assert any(repository.iterdir())  # the final snapshot is on disk while the cluster can come back

    wait_until(lambda: api.get("/clusters", params=deleted_list).json()["clusters"] == [], 3 * RETENTION_S,
               interval_s=0.5, what="gone from the deleted clusters")
    too_late = api.post(f"/clusters/{cluster['id']}/undelete")
    assert too_late.status_code == 404 and too_late.json()["error"] == "not_found"
    assert not repository.exists()
