"""Scaling never takes a cluster offline: while it goes 1 -> 3 -> 2 -> 1 nodes, a writer and two
readers through the cluster's endpoint see no failed request, and every acknowledged write is
found afterwards. Nodes join and leave one at a time; the leaving ones are drained first.

The tenant's key reads through the byte pump, the operator's through the Python gateway: a search
the engine fails as a node leaves under it is sent again by either, never passed on."""

from __future__ import annotations

import threading
import time


from services.manager.drivers.local_processes import find_engines
from tests.conftest import OPERATOR_KEY, seed_request, tenant_with_key
from tests.helpers import endpoint_client, wait_for_status, wait_until


class Traffic:
    """A writer and readers on the cluster's endpoint, one per key; every failure is counted, and
    the clients retry nothing."""

    def __init__(self, endpoint: str, index: str, tenant_key: str):
        self.endpoint, self.index, self.tenant_key = endpoint, index, tenant_key
        self.acked: set[str] = set()
        self.failures: list[str] = []
        self.reads = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._write, daemon=True)] + [
            threading.Thread(target=self._read, args=(key,), daemon=True) for key in (tenant_key, OPERATOR_KEY)]

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def _client(self, key: str):
        return endpoint_client(self.endpoint, key, timeout=30, max_retries=0)

    def _write(self) -> None:
        client, i = self._client(self.tenant_key), 0
        while not self.stop.is_set():
            doc_id = f"w{i}"
            try:
                answer = client.index(index=self.index, id=doc_id, body={"n": i})
                if answer["result"] in ("created", "updated"):
                    self.acked.add(doc_id)
            except Exception as exc:  # a failed request is what this test counts
                self.failures.append(f"write {doc_id}: {type(exc).__name__}: {exc}")
            i += 1
            time.sleep(0.02)
        client.close()

    def _read(self, key: str) -> None:
        client = self._client(key)
        while not self.stop.is_set():
            try:
                client.search(index=self.index, body={"size": 1, "query": {"match_all": {}}})
                self.reads += 1
            except Exception as exc:
                who = "tenant" if key == self.tenant_key else "operator"
                self.failures.append(f"{who} read: {type(exc).__name__}: {exc} {getattr(exc, 'info', '')}")
            time.sleep(0.02)
        client.close()


def nodes_running(settings, cluster_id: str) -> list[int]:
    return sorted(n.node for n in find_engines(settings.clusters_dir) if n.cluster_id == cluster_id)


def test_scaling_1_3_2_1_under_traffic_fails_no_request_and_loses_no_write(api, settings):
    tenant, key = tenant_with_key(api)
    cluster = api.post("/clusters", json=seed_request(service_name="online", tenant_org_id=tenant)).json()
    ready = wait_for_status(api, cluster["id"], "ready")
    endpoint = ready["endpoint"]
    admin = endpoint_client(endpoint, OPERATOR_KEY)
    admin.indices.create(index="live", body={"settings": {"number_of_shards": 2, "number_of_replicas": 1}})
    events_seen: list[str] = []

    with Traffic(endpoint, "live", key) as traffic:
        for nodes in (3, 2, 1):
            answer = api.patch(f"/clusters/{cluster['id']}", json={"replicas": nodes})
            assert answer.status_code == 202
            after = wait_for_status(api, cluster["id"], "ready", timeout_s=240)
            assert (after["nodes"], after["endpoint"]) == (nodes, endpoint)  # the endpoint never changes
            assert nodes_running(settings, cluster["id"]) == list(range(1, nodes + 1))
            time.sleep(1)  # traffic on the new size too
        events_seen = [e.get("reason", "") for e in api.get(f"/clusters/{cluster['id']}/events").json()["events"]
                       if e["kind"] == "status"]

    assert traffic.failures == [], traffic.failures[:5]
    assert len(traffic.acked) > 100 and traffic.reads > 100
    admin.indices.refresh(index="live")
    found = admin.search(index="live", body={"size": 10000, "_source": False, "query": {"match_all": {}}})
    assert {h["_id"] for h in found["hits"]["hits"]} >= traffic.acked
    # one node at a time: joined in order, then drained and removed from the top
    steps = [r.split(" (")[0] for r in events_seen if "joining" in r or "drained and removed" in r]
    assert steps == ["Node 2 joining", "Node 3 joining", "Node 3 drained and removed",
                     "Node 2 drained and removed"], events_seen
    admin.close()
    api.delete(f"/clusters/{cluster['id']}")
    wait_until(lambda: nodes_running(settings, cluster["id"]) == [], 60, what="nodes stopped")
