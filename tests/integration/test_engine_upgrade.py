"""An engine upgrade asked by `PATCH /clusters/{id}` with `version` (issue 24): a ready OpenSearch
2.19.1 cluster with a writer and a reader on its endpoint goes to 3.5.0 (one node by surge, three
node by node) with no failed request and every acknowledged write found, and its kNN answer
unchanged; an upgrade whose shards cannot move is given up with a reason, the cluster serving; a
hibernated one wakes on the new version; a downgrade or a version the platform does not run is
refused naming the field."""

from __future__ import annotations

import contextlib
import threading
import time

import httpx
import pytest

from libs.common.settings import ELASTICSEARCH819_VERSION, ELASTICSEARCH_VERSION, ENGINE_VERSION, OPENSEARCH3_VERSION
from tests.conftest import ready_cluster, tenant_with_key
from tests.helpers import nearest_items, vector_items, wait_for_status, wait_until



class Traffic:
    """A writer (one document per call) and a reader (a count) on a tenant's endpoint, each
    keeping what failed; `acked` holds the ids the engine acknowledged."""

    def __init__(self, base: str, key: str):
        self.base, self.headers = base, {"Authorization": f"ApiKey {key}"}
        self.acked: list[str] = []
        self.failed: list[str] = []
        self.reads = 0
        self.slowest_s = 0.0  # the longest call: a request held or slowed by a restart
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._write), threading.Thread(target=self._read)]

    def __enter__(self) -> "Traffic":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(180)

    def _write(self) -> None:
        with httpx.Client(headers=self.headers, timeout=120) as client:
            number = 0
            while not self._stop.is_set():
                doc_id = f"w{number}"
                try:
                    started = time.monotonic()
                    answer = client.put(f"{self.base}/log/_doc/{doc_id}", json={"n": number})
                    self.slowest_s = max(self.slowest_s, time.monotonic() - started)
                    (self.acked if answer.status_code in (200, 201) else self.failed).append(
                        doc_id if answer.status_code in (200, 201) else f"PUT {answer.status_code} {answer.text[:200]}")
                except httpx.HTTPError as exc:
                    self.failed.append(f"PUT {type(exc).__name__} {exc}")
                number += 1
                time.sleep(0.02)

    def _read(self) -> None:
        with httpx.Client(headers=self.headers, timeout=120) as client:
            while not self._stop.is_set():
                try:
                    started = time.monotonic()
                    answer = client.get(f"{self.base}/log/_count")
                    self.slowest_s = max(self.slowest_s, time.monotonic() - started)
                    if answer.status_code == 200:
                        self.reads += 1
                    else:
                        self.failed.append(f"GET {answer.status_code} {answer.text[:200]}")
                except httpx.HTTPError as exc:
                    self.failed.append(f"GET {type(exc).__name__} {exc}")
                time.sleep(0.02)


def reasons_until_ready(api: httpx.Client, cluster_id: str, timeout_s: float) -> list[str]:
    """Each status reason the cluster showed, in order, until it is ready again."""
    reasons: list[str] = []
    deadline = time.monotonic() + timeout_s
    while (view := api.get(f"/clusters/{cluster_id}").json())["status"] != "ready":
        if not reasons or reasons[-1] != view["status_reason"]:
            reasons.append(view["status_reason"])
        assert time.monotonic() < deadline, f"not ready within {timeout_s} s: {reasons[-3:]}"
        time.sleep(0.2)
    return reasons


# a surge's two moves of the endpoint, each shown for a second or more (its drains may be instant)
MOVES_OF_THE_ENDPOINT = ("moving the endpoint to Node 2", "moving the endpoint to Node 1 before Node 2 leaves")
# each engine from its default to the second version this platform runs of it
PATHS = [("opensearch", ENGINE_VERSION, OPENSEARCH3_VERSION), ("elasticsearch", ELASTICSEARCH_VERSION,
                                                              ELASTICSEARCH819_VERSION)]


@pytest.mark.parametrize("engine,old,new", PATHS)
def test_a_one_node_cluster_is_upgraded_by_surge_under_a_writer_and_a_reader_losing_nothing(api, engine, old, new):
    tenant, key = tenant_with_key(api)
    with ready_cluster(api, tenant_org_id=tenant, service_name=f"upgrade-{engine[:2]}", engine=engine, version=old,
                       hibernate_after_s=0) as cluster:
        cluster_id, base = cluster["id"], cluster["endpoint"]
        assert cluster["version"] == old
        _, query, nearest = vector_items(api, cluster_id, 80, seed=24)
        before = nearest_items(api, cluster_id, query)
        assert before == nearest

        made = httpx.put(f"{base}/log", headers={"Authorization": f"ApiKey {key}"})  # the reader counts it
        assert made.status_code == 200, made.text
        with Traffic(base, key) as traffic:
            wait_until(lambda: len(traffic.acked) >= 20 and traffic.reads >= 20, 60, what="traffic flowing")
            answer = api.patch(f"/clusters/{cluster_id}", json={"version": new})
            assert answer.status_code == 202, answer.text
            assert (answer.json()["version"], answer.json()["status"]) == (new, "scaling")
            assert "by surge" in answer.json()["status_reason"]
            reasons = reasons_until_ready(api, cluster_id, 600)
            print("surge:", " | ".join(reasons))
            for step in MOVES_OF_THE_ENDPOINT:
                assert any(step in reason for reason in reasons), (step, reasons)
            acked_before = len(traffic.acked)
            wait_until(lambda: len(traffic.acked) >= acked_before + 20, 60, what="writes after the upgrade")
        assert traffic.failed == [], traffic.failed[:5]
        print(f"one-node {engine} upgrade by surge: {len(traffic.acked)} writes, {traffic.reads} reads, 0 failed, "
              f"the slowest call {traffic.slowest_s:.2f} s")
        view = api.get(f"/clusters/{cluster_id}").json()
        assert (view["status"], view["replicas"], view["nodes"]) == ("ready", 1, 1), view
        nodes = httpx.get(f"{view['engine_endpoint']}/_cat/nodes?h=name,version&format=json").json()
        assert nodes == [{"name": "Node 1", "version": new}], nodes
        assert httpx.get(f"{base}/", headers=traffic.headers).json()["version"]["number"] == new
        headers = {"Authorization": f"ApiKey {key}"}
        assert httpx.post(f"{base}/log/_refresh", headers=headers).status_code == 200
        found = httpx.post(f"{base}/log/_search", headers=headers,
                           json={"size": 10000, "_source": False, "query": {"match_all": {}}}).json()
        assert {hit["_id"] for hit in found["hits"]["hits"]} >= set(traffic.acked)
        assert nearest_items(api, cluster_id, query) == before

        down = api.patch(f"/clusters/{cluster_id}", json={"version": old})
        assert down.status_code == 422 and "cannot go down" in down.text and "version" in down.text, down.text


@pytest.mark.parametrize("engine,old,new", PATHS)
def test_a_three_node_cluster_is_upgraded_node_by_node_while_it_serves(api, engine, old, new):
    tenant, key = tenant_with_key(api)
    headers = {"Authorization": f"ApiKey {key}"}
    with ready_cluster(api, tenant_org_id=tenant, service_name=f"rolling-{engine[:2]}", replicas=3, engine=engine,
                       version=old, hibernate_after_s=0) as cluster:
        cluster_id, base = cluster["id"], cluster["endpoint"]
        assert api.patch(f"/clusters/{cluster_id}", json={"autoscaling": False}).status_code == 202
        made = httpx.put(f"{base}/log", headers=headers,
                         json={"settings": {"number_of_shards": 3, "number_of_replicas": 1}})
        assert made.status_code == 200, made.text
        wait_until(lambda: httpx.get(f"{base}/_cluster/health/log", headers=headers).json()["status"] == "green", 60,
                   what="the index green on 3 nodes")
        with Traffic(base, key) as traffic:
            wait_until(lambda: len(traffic.acked) >= 20 and traffic.reads >= 20, 60, what="traffic flowing")
            answer = api.patch(f"/clusters/{cluster_id}", json={"version": new})
            assert answer.status_code == 202, answer.text
            assert (answer.json()["status"], answer.json()["version"]) == ("scaling", new)
            wait_for_status(api, cluster_id, "ready", 600)
            acked_before = len(traffic.acked)
            wait_until(lambda: len(traffic.acked) >= acked_before + 20, 60, what="writes after the upgrade")
        engine_url = api.get(f"/clusters/{cluster_id}").json()["engine_endpoint"]
        nodes = httpx.get(f"{engine_url}/_cat/nodes?h=name,version&format=json").json()
        assert sorted(n["version"] for n in nodes) == [new] * 3, nodes
        assert traffic.failed == [], traffic.failed[:5]
        assert httpx.get(f"{base}/", headers=headers).json()["version"]["number"] == new
        assert httpx.post(f"{base}/log/_refresh", headers=headers).status_code == 200
        found = httpx.post(f"{base}/log/_search", headers=headers,
                           json={"size": 10000, "_source": False, "query": {"match_all": {}}}).json()
        assert {hit["_id"] for hit in found["hits"]["hits"]} >= set(traffic.acked)
        print(f"rolling {engine} upgrade of 3 nodes: {len(traffic.acked)} writes, {traffic.reads} reads, 0 failed, "
              f"the slowest call {traffic.slowest_s:.2f} s")


def test_a_one_node_clusters_new_memory_moves_by_surge_never_stopping(api):
    tenant, key = tenant_with_key(api)
    with ready_cluster(api, tenant_org_id=tenant, service_name="memory", memory="512Mi",
                       hibernate_after_s=0) as cluster:
        cluster_id, base = cluster["id"], cluster["endpoint"]
        assert httpx.put(f"{base}/log", headers={"Authorization": f"ApiKey {key}"}).status_code == 200

        def heaps_mb() -> list[int]:
            engine_url = api.get(f"/clusters/{cluster_id}").json()["engine_endpoint"]
            nodes = httpx.get(f"{engine_url}/_nodes/jvm").json()["nodes"]
            return [n["jvm"]["mem"]["heap_max_in_bytes"] // 2**20 for n in nodes.values()]
        before = heaps_mb()
        with Traffic(base, key) as traffic:
            wait_until(lambda: len(traffic.acked) >= 20 and traffic.reads >= 20, 60, what="traffic flowing")
            assert api.patch(f"/clusters/{cluster_id}", json={"memory": "1Gi"}).status_code == 202
            reasons = reasons_until_ready(api, cluster_id, 600)
            acked_before = len(traffic.acked)
            wait_until(lambda: len(traffic.acked) >= acked_before + 20, 60, what="writes after the change")
        for step in MOVES_OF_THE_ENDPOINT:
            assert any(step in reason for reason in reasons), (step, reasons)
        assert traffic.failed == [], traffic.failed[:5]
        after = heaps_mb()  # 256 MiB heap to 512 (what the JVM reports is a little under each)
        assert len(after) == 1 and len(before) == 1 and after[0] > 1.8 * before[0], (before, after)
        print(f"one-node memory change by surge: {len(traffic.acked)} writes, {traffic.reads} reads, 0 failed, "
              f"the slowest call {traffic.slowest_s:.2f} s")


def test_an_upgrade_whose_shards_cannot_move_is_given_up_with_a_reason_and_the_cluster_serves(api):
    tenant, key = tenant_with_key(api)
    headers = {"Authorization": f"ApiKey {key}"}
    with ready_cluster(api, tenant_org_id=tenant, service_name="stalled", version=ENGINE_VERSION,
                       hibernate_after_s=0) as cluster:
        cluster_id, base = cluster["id"], cluster["endpoint"]
        for number in range(5):
            assert httpx.put(f"{base}/pinned/_doc/{number}?refresh=true", json={"n": number},
                             headers=headers).status_code == 201
        # a shard that cannot be allocated anywhere else: held to node 1 on the engine itself
        # (a tenant may not set allocation filters: the policy refuses them)
        engine = api.get(f"/clusters/{cluster_id}").json()["engine_endpoint"]
        pin = {"index.routing.allocation.require._name": "Node 1"}
        assert httpx.put(f"{engine}/pinned/_settings", json=pin).status_code == 200
        answer = api.patch(f"/clusters/{cluster_id}", json={"version": OPENSEARCH3_VERSION})
        assert answer.status_code == 202, answer.text
        view = wait_for_status(api, cluster_id, "ready", 600)
        assert "stalled" in view["status_reason"] and "allocation explain" in view["status_reason"], view
        # it serves meanwhile and after, on the nodes it has (the surge's node of 3.5.0 stays)
        assert httpx.get(f"{base}/pinned/_count", headers=headers).json()["count"] == 5
        assert (view["nodes"], view["replicas"]) == (2, 2), view

        # the cause gone, any change of the spec tries again: one node, on 3.5.0
        assert httpx.put(f"{engine}/pinned/_settings",
                         json={"index.routing.allocation.require._name": None}).status_code == 200
        assert api.patch(f"/clusters/{cluster_id}", json={"replicas": 1}).status_code == 202
        view = wait_for_status(api, cluster_id, "ready", 600)
        assert (view["nodes"], view["version"]) == (1, OPENSEARCH3_VERSION), view
        nodes = httpx.get(f"{engine}/_cat/nodes?h=name,version&format=json").json()
        assert nodes == [{"name": "Node 1", "version": OPENSEARCH3_VERSION}], nodes
        assert httpx.get(f"{base}/pinned/_count", headers=headers).json()["count"] == 5


def test_a_hibernated_cluster_wakes_on_the_new_version_with_its_documents(api):
    tenant, key = tenant_with_key(api)
    headers = {"Authorization": f"ApiKey {key}"}
    with ready_cluster(api, tenant_org_id=tenant, service_name="asleep", version=ENGINE_VERSION,
                       hibernate_after_s=0) as cluster:
        cluster_id, base = cluster["id"], cluster["endpoint"]
        for number in range(12):
            assert httpx.put(f"{base}/books/_doc/{number}", json={"n": number}, headers=headers).status_code == 201
        assert api.post(f"/clusters/{cluster_id}/hibernate").status_code == 202
        wait_for_status(api, cluster_id, "hibernated", 120)
        answer = api.patch(f"/clusters/{cluster_id}", json={"version": OPENSEARCH3_VERSION})
        assert answer.status_code == 202, answer.text
        view = api.get(f"/clusters/{cluster_id}").json()
        assert (view["status"], view["version"]) == ("hibernated", OPENSEARCH3_VERSION)
        assert OPENSEARCH3_VERSION in view["status_reason"]
        woken = httpx.get(f"{base}/books/_count", headers=headers, timeout=120)  # wakes it
        assert woken.status_code == 200 and woken.json()["count"] == 12
        assert httpx.get(f"{base}/", headers=headers).json()["version"]["number"] == OPENSEARCH3_VERSION


def test_a_version_the_platform_does_not_run_or_with_other_changes_is_refused(api):
    with ready_cluster(api, service_name="refused", version=ENGINE_VERSION) as cluster:
        for body, said in (({"version": "3.9.0"}, "not available on this platform"),
                           ({"version": "2.18.0"}, "not available on this platform"),
                           ({"version": OPENSEARCH3_VERSION, "replicas": 2}, "version is changed alone"),
                           ({"version": "3.5"}, "version")):
            answer = api.patch(f"/clusters/{cluster['id']}", json=body)
            assert answer.status_code == 422 and said in answer.text and "version" in answer.text, answer.text
        view = api.get(f"/clusters/{cluster['id']}").json()
        assert (view["status"], view["version"]) == ("ready", ENGINE_VERSION)


def test_the_operator_upgrades_a_tenants_fleet_at_most_one_at_a_time(api):
    tenant, key = tenant_with_key(api)
    headers = {"Authorization": f"ApiKey {key}"}
    with contextlib.ExitStack() as stack:
        clusters = [stack.enter_context(ready_cluster(api, tenant_org_id=tenant, service_name=f"fleet{n}",
                                                      version=ENGINE_VERSION, hibernate_after_s=0)) for n in range(3)]
        for number, cluster in enumerate(clusters):
            for doc in range(number + 2):
                put = httpx.put(f"{cluster['endpoint']}/books/_doc/{doc}?refresh=true", json={"n": doc},
                                headers=headers)
                assert put.status_code == 201, put.text
        asleep = clusters[2]["id"]
        assert api.post(f"/clusters/{asleep}/hibernate").status_code == 202
        wait_for_status(api, asleep, "hibernated", 120)

        ask = {"engine": "opensearch", "from_version": ENGINE_VERSION, "to_version": OPENSEARCH3_VERSION,
               "at_once": 1, "tenant_org_id": tenant}
        by_tenant = httpx.post(f"{str(api.base_url).rstrip('/')}/platform/upgrades", json=ask, headers=headers)
        assert by_tenant.status_code == 403, by_tenant.text
        answer = api.post("/platform/upgrades", json=ask)
        assert answer.status_code == 202, answer.text
        upgrade = answer.json()
        assert sorted(upgrade["targets"]) == sorted(c["id"] for c in clusters)

        most_at_once = 0

        def finished():
            nonlocal most_at_once
            now = api.get(f"/platform/upgrades/{upgrade['id']}").json()
            most_at_once = max(most_at_once, sum(c["progress"] == "upgrading" for c in now["clusters"]))
            return now if now["state"] == "done" else None

        done = wait_until(finished, 240, interval_s=0.1, what="the fleet upgrade done")
        assert most_at_once == 1
        progress = {c["id"]: (c["progress"], c["version"]) for c in done["clusters"]}
        assert progress == {clusters[0]["id"]: ("done", OPENSEARCH3_VERSION),
                            clusters[1]["id"]: ("done", OPENSEARCH3_VERSION), asleep: ("asleep", OPENSEARCH3_VERSION)}
        for number, cluster in enumerate(clusters):  # the asleep one is woken by this call, on 3.5.0
            count = httpx.get(f"{cluster['endpoint']}/books/_count", headers=headers, timeout=120)
            assert count.status_code == 200 and count.json()["count"] == number + 2, (number, count.text)
            root = httpx.get(f"{cluster['endpoint']}/", headers=headers).json()
            assert root["version"]["number"] == OPENSEARCH3_VERSION
        assert upgrade["id"] in [u["id"] for u in api.get("/platform/upgrades").json()]
