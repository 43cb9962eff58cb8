"""The gateway's byte pump on the shared platform: a tenant's repeated calls are carried by the
pump (straight to the engine) and still metered once each; whatever the pump learned opens no
other path, key or cluster; a revoked key is refused within the key cache's time; a cluster that
hibernates under a learned grant is woken by its next call, which is answered."""

from __future__ import annotations

import http.client
import json
import os
import re
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import OPERATOR, ready_cluster, tenant_with_key
from tests.helpers import wait_for_status, wait_until

# the Python gateway's server names itself; the pump passes the engine's headers alone, which
# is how these tests see which of the two answered
PYTHON_SERVER = "aiohttp"


@pytest.fixture(scope="module")
def tenants(api):
    return tenant_with_key(api), tenant_with_key(api)


@pytest.fixture(scope="module")
def cluster(api, tenants):
    (tenant, _), _ = tenants
    with ready_cluster(api, tenant_org_id=tenant, service_name="pump", hibernate_after_s=0) as ready:
        yield ready


def as_key(key: str) -> dict[str, str]:
    return {"Authorization": f"ApiKey {key}"}


def raw_request(method: str, url: str, headers: dict[str, str]) -> tuple[int, str]:
    """The path exactly as written (httpx would resolve `..` before sending it)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request(method, url[len(f"{parts.scheme}://{parts.netloc}"):], headers=headers)
        answer = connection.getresponse()
        return answer.status, answer.read().decode(errors="replace")
    finally:
        connection.close()


def requests_counted(settings, cluster_id: str) -> float:
    metrics = httpx.get(f"http://127.0.0.1:{settings.gateway_metrics_port}/metrics").text
    return next((float(l.split()[-1]) for l in metrics.splitlines()
                 if l.startswith("ess_gateway_requests_total") and cluster_id in l), 0.0)


def settled_count(settings, cluster_id: str) -> float:
    """The count once the pump has reported everything it carried (it reports every second)."""
    counted = requests_counted(settings, cluster_id)
    while True:
        time.sleep(settings.pump_report_s + 0.5)
        again = requests_counted(settings, cluster_id)
        if again == counted:
            return counted
        counted = again


def one_connection(key: str) -> httpx.Client:
    """Calls on one kept-alive connection, so to one pump: the kernel spreads connections over the
    gateway's pumps (ESS_GATEWAY_WORKERS, two here) and each pump learns a grant and a shape on its own."""
    return httpx.Client(headers=as_key(key), timeout=120)


def test_repeated_calls_are_carried_by_the_pump_and_metered_once_each(api, cluster, tenants, settings):
    (tenant, key), _ = tenants
    base = cluster["endpoint"]
    assert httpx.put(f"{base}/books/_doc/1?refresh=true", json={"title": "one"}, headers=as_key(key)).status_code == 201
    before = settled_count(settings, cluster["id"])
    # a key no pump has a grant for: its first call is decided now, so the grant (ESS_KEY_CACHE_S,
    # 5 s) is fresh for the 30 calls right after it
    fresh = api.post(f"/tenants/{tenant}/keys", json={}).json()["key"]
    with one_connection(fresh) as client:
        first = client.get(f"{base}/books/_doc/1")
        answers = [client.get(f"{base}/books/_doc/{i % 3}") for i in range(30)]
    assert first.json()["_source"] == {"title": "one"}
    assert [a.status_code for a in answers].count(200) == 10 and {a.status_code for a in answers} == {200, 404}
    carried_by = [a.headers.get("server", "the pump") for a in answers]
    assert not [s for s in carried_by if PYTHON_SERVER in s], carried_by
    assert answers[1].json()["_source"] == {"title": "one"}
    wait_until(lambda: requests_counted(settings, cluster["id"]) >= before + 31, 10, what="31 calls metered")
    time.sleep(2.5)  # another report of the pump's counts: nothing counted twice
    assert requests_counted(settings, cluster["id"]) - before == 31


def test_large_bodies_stream_through_the_pump_both_ways_whole(api, cluster, tenants, settings):
    (tenant, key), _ = tenants
    base, ndjson = cluster["endpoint"], {"Content-Type": "application/x-ndjson"}
    text = "y" * 2000
    bulk = "".join(f'{{"index":{{"_index":"big","_id":"d{i}"}}}}\n{{"text":"{text}","n":{i}}}\n' for i in range(1500))
    assert len(bulk) > 2 << 20  # more than the 1 MiB the gateways read whole: streamed
    small = '{"index":{"_index":"big","_id":"s"}}\n{"text":"x","n":-1}\n'
    with one_connection(key) as client:
        assert client.post(f"{base}/_bulk?refresh=true", content=small + bulk, headers=ndjson).status_code == 200
    # a key this gateway never saw: its first call is decided and granted now, so the grant (it lasts
    # ESS_KEY_CACHE_S, 5 s) is fresh for the two large calls right after it
    fresh = api.post(f"/tenants/{tenant}/keys", json={}).json()["key"]
    with one_connection(fresh) as client:
        assert client.post(f"{base}/_bulk", content=small, headers=ndjson).status_code == 200  # both shapes learned
        assert client.get(f"{base}/big/_search?size=0").status_code == 200
        found = client.get(f"{base}/big/_search?size=1000&sort=n")
        answer = client.post(f"{base}/_bulk?refresh=true", content=bulk.encode(), headers=ndjson)
    assert len(found.content) > 1 << 20 and PYTHON_SERVER not in found.headers.get("server", "")
    hits = found.json()["hits"]["hits"]
    assert [h["_source"]["n"] for h in hits] == list(range(-1, 999)) and hits[1]["_source"]["text"] == text
    assert answer.status_code == 200 and PYTHON_SERVER not in answer.headers.get("server", "")
    assert answer.json()["errors"] is False and len(answer.json()["items"]) == 1500


def test_what_the_pump_learned_opens_no_other_path_key_or_cluster(api, cluster, tenants, settings):
    (_, key), (_, other_key) = tenants
    base = cluster["endpoint"]
    for path in ("/books/_doc/1", "/books/_search", "/_cluster/health", "/"):
        httpx.get(base + path, headers=as_key(key))  # learned: these shapes, this key, this cluster
    attacks = ["/_snapshot/_doc/x", "/%5Fsnapshot/_doc/x", "/_snapshot/_search", "/books/_doc/..",
               "/books/_doc/%2e%2e/%2e%2e/_snapshot", "/_nodes/_doc/x", "/_cluster/settings", "/_cluster/state",
               "/books/_doc/x/../../../_snapshot", "/_all/_snapshot", "/books/_settings/../../_nodes",
               "/_snapshot/books/_search", "//_snapshot", "/_cat/nodes"]
    for path in attacks:
        for method in ("GET", "HEAD", "PUT", "POST", "DELETE"):
            status, text = raw_request(method, base + path, as_key(key))
            assert status in (400, 410), (method, path, status, text)
    # another tenant's key on the learned cluster and path: the cluster does not exist for it
    for _ in range(3):
        assert httpx.get(f"{base}/books/_doc/1", headers=as_key(other_key)).status_code == 404
    # the same key on another cluster id: nothing learned for it either
    assert httpx.get(f"{settings.public_gateway_url}/c000000000000/books/_doc/1",
                     headers=as_key(key)).status_code == 404
    # the operator's calls are never carried by the pump: each stays audited by the gateway
    for _ in range(3):
        answer = httpx.get(f"{base}/books/_doc/1", headers=OPERATOR)
        assert answer.status_code == 200 and PYTHON_SERVER in answer.headers.get("server", "")


def internal_port(state_dir) -> int:
    """Where the running Python gateway answers its pump, as its log says (an attacker on the host
    would find it in `ss -ltn`)."""
    said = re.findall(r"pump started .*decides=127\.0\.0\.1:(\d+)", (state_dir / "logs" / "gateway.log").read_text())
    return int(said[-1])


def pumps(state_dir) -> list[int]:
    """The pids of the running gateway's pumps, as its log says (the last start's lines)."""
    said = re.findall(r"pump started .*decides=(\S+) .*pid=(\d+)", (state_dir / "logs" / "gateway.log").read_text())
    return [int(pid) for decides, pid in said if decides == said[-1][0]]


def connections_to(pid: int, port: int, peers: set[int]) -> int:
    """Established TCP connections on local `port` from one of the `peers` ports, held by process
    `pid` (from /proc, as `ss -tnp` reads them); anyone else's connection to the port is not counted."""
    inodes = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)
        if local == port and remote in peers and fields[3] == "01" and f"socket:[{fields[9]}]" in inodes:
            count += 1
    return count


def test_the_gateways_pumps_share_the_tenants_port_and_every_call_is_metered_once(cluster, tenants, settings,
                                                                                  state_dir):
    """ESS_GATEWAY_WORKERS pumps listen on one port: the kernel gives each some of 24 clients'
    connections, and every call on them is answered and metered exactly once."""
    (_, key), _ = tenants
    workers = pumps(state_dir)
    assert len(workers) == settings.pump_workers == 2
    port, path = settings.gateway_port, f"/{cluster['id']}/books/_doc/1"
    clients = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(24)]
    try:
        before = settled_count(settings, cluster["id"])
        for _ in range(3):
            for client in clients:
                client.request("GET", path, headers=as_key(key))
                answer = client.getresponse()
                assert answer.status == 200 and json.loads(answer.read())["_source"] == {"title": "one"}
        peers = {client.sock.getsockname()[1] for client in clients}
        held = [connections_to(pid, port, peers) for pid in workers]
        assert all(held) and sum(held) == 24, held  # 2 x (1/2)^24 that one pump got none by chance
    finally:
        for client in clients:
            client.close()
    assert settled_count(settings, cluster["id"]) - before == 72


def test_the_python_gateways_own_port_trusts_only_its_pump(cluster, tenants, state_dir):
    """Another process on the gateway's host calling the Python gateway's loopback port itself, as
    an attacker there would: a tenant's call is answered as at the front door but with no grant
    (it holds the engine's credentials), and the pump's own calls (record changes, activity to
    meter) are refused, with or without a guessed secret."""
    (_, key), _ = tenants
    base, internal = cluster["endpoint"], f"http://127.0.0.1:{internal_port(state_dir)}"
    assert httpx.put(f"{base}/books/_doc/1?refresh=true", json={"title": "one"}, headers=as_key(key)).status_code in (
        200, 201)
    for guess in ({}, {"X-Ess-Pump": ""}, {"X-Ess-Pump": "secret"}, {"X-Ess-Pump": "x" * 43}):
        answer = httpx.get(f"{internal}/{cluster['id']}/books/_doc/1", headers={**as_key(key), **guess})
        assert answer.status_code == 200 and answer.json()["_source"] == {"title": "one"}
        assert not [h for h in answer.headers if h.lower().startswith("x-ess-")], dict(answer.headers)
        assert httpx.get(f"{internal}/_pump/changes", params={"after": 0}, headers=guess).status_code == 403
        forged = {"clusters": {cluster["id"]: {"requests": 10**6}}}
        assert httpx.post(f"{internal}/_pump/activity", json=forged, headers=guess).status_code == 403
    assert httpx.get(f"{base}/books/_doc/1", headers=as_key(key)).json()["_source"] == {"title": "one"}


def test_a_revoked_key_is_refused_within_the_key_cache_time(api, cluster, settings):
    tenant = cluster["tenant_org_id"]
    made = api.post(f"/tenants/{tenant}/keys", json={}).json()
    base = cluster["endpoint"]
    for _ in range(5):
        assert httpx.get(f"{base}/books/_doc/1", headers=as_key(made["key"])).status_code == 200
    assert api.delete(f"/tenants/{tenant}/keys/{made['key_id']}").status_code == 204
    time.sleep(settings.key_cache_s + 0.5)  # the bound the gateway promises, the pump included
    for _ in range(5):
        assert httpx.get(f"{base}/books/_doc/1", headers=as_key(made["key"])).status_code == 401


def test_a_cluster_hibernated_under_a_learned_grant_is_woken_by_its_next_call(api, cluster, tenants):
    (_, key), _ = tenants
    base = cluster["endpoint"]
    for _ in range(3):
        assert httpx.get(f"{base}/books/_doc/1", headers=as_key(key)).status_code == 200
    assert api.post(f"/clusters/{cluster['id']}/hibernate").status_code == 202
    wait_for_status(api, cluster["id"], "hibernated", 120)
    woken = httpx.get(f"{base}/books/_doc/1", headers=as_key(key), timeout=120)
    assert woken.status_code == 200 and woken.json()["_source"] == {"title": "one"}
    assert api.get(f"/clusters/{cluster['id']}").json()["status"] == "ready"
