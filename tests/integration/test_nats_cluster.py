"""The platform on a JetStream cluster of three NATS servers (ESS_NATS_URL lists all three,
ESS_NATS_REPLICAS=3): each server SIGKILLed in turn under a writer and a reader through the
gateway and API calls through two manager replicas loses no acknowledged write, fails no
request that started later than `PAUSE_S` after a kill, and every stream and bucket keeps
three copies. (What fails inside the pause is a request in flight on a connection to the server
that died: its reply never comes, and after ESS_NATS_TIMEOUT_S it is a 503 with Retry-After.)

It runs its own platform (the servers are killed), not the session's.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx
import pytest
from faststream.nats import NatsBroker
from opensearchpy import OpenSearch

from bench.private_platform import AUTH, private_platform, seed_body
from devrun.nats_server import jetstream_ready, nats_cluster
from devrun.supervisor import free_port
from libs.common import streams
from libs.common.kv import open_bucket

SERVERS = 3
DOWN_S = 8.0  # each server stays dead this long, under traffic
# a failure within this long of a kill is a leader election's pause (JetStream elects a new
# leader per stream and bucket in a few seconds); any later one is counted against the platform
PAUSE_S = 6.0


@dataclass
class Traffic:
    """Requests of every kind, each with its time and outcome; none retried by the client."""

    gateway: str
    cluster_id: str
    key: str
    apis: list[str]
    acked: dict[str, float] = field(default_factory=dict)  # document id -> when it was acknowledged
    outcomes: list[tuple[str, float, str]] = field(default_factory=list)  # (kind, when, error)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=loop, daemon=True) for loop in (self._write, self._read, self._api)]
        for thread in threads:
            thread.start()
        return threads

    def _engine(self) -> OpenSearch:
        return OpenSearch(hosts=[f"{self.gateway}/{self.cluster_id}"], max_retries=0, timeout=15,
                          headers={"Authorization": f"ApiKey {self.key}"})

    def _record(self, kind: str, work) -> None:
        when, error = time.monotonic(), ""
        try:
            work()
        except Exception as exc:  # what the test counts
            error = f"{type(exc).__name__}: {str(exc)[:160]}"
        self.outcomes.append((kind, when, error))

    def _write(self) -> None:
        client, i = self._engine(), 0
        while not self.stop.is_set():
            doc_id = f"d{i}"

            def write(doc_id=doc_id):
                client.index(index="kept", id=doc_id, body={"n": doc_id})
                self.acked[doc_id] = time.monotonic()
            self._record("gateway write", write)
            i += 1
            time.sleep(0.05)

    def _read(self) -> None:
        client = self._engine()
        while not self.stop.is_set():
            self._record("gateway read", lambda: client.search(index="kept", body={"size": 1}))
            time.sleep(0.05)

    def _api(self) -> None:
        clients = [httpx.Client(base_url=url, headers=AUTH, timeout=15) for url in self.apis]
        n = 0
        while not self.stop.is_set():
            api = clients[n % len(clients)]

            def call(api=api, n=n):
                if n % 2:  # a read of the record, and a write of it (KV either way)
                    answer = api.get(f"/clusters/{self.cluster_id}")
                else:
                    answer = api.patch(f"/clusters/{self.cluster_id}", json={"hibernate_after_s": 3600 + n})
                assert answer.status_code in (200, 202), f"{answer.status_code} {answer.text[:120]}"
            self._record("api", call)
            n += 1
            time.sleep(0.1)


def streams_held(monitor_port: int) -> set[str]:
    """The streams (KV buckets are streams too) one server holds a copy of, from its own /jsz: a
    server's view of the others' copies is in flux around a leader change (seen: 4 copies of 3)."""
    info = httpx.get(f"http://127.0.0.1:{monitor_port}/jsz?streams=true", timeout=5).json()
    return {stream["name"] for account in info.get("account_details", [])
            for stream in account.get("stream_detail", [])}


def holders_of_streams(monitor_ports: dict[str, int], timeout_s: float = 30) -> dict[str, set[str]]:
    """Every stream and the servers holding it, once every server holds every stream (a restarted
    server catches up after its restart); the last view if that never comes."""
    deadline = time.monotonic() + timeout_s
    while True:
        holders: dict[str, set[str]] = {}
        for server, port in monitor_ports.items():
            for stream in streams_held(port):
                holders.setdefault(stream, set()).add(server)
        if (holders and all(names == set(monitor_ports) for names in holders.values())) \
                or time.monotonic() > deadline:
            return holders
        time.sleep(0.5)


@pytest.mark.engine
def test_each_nats_server_killed_in_turn_loses_nothing_and_pauses_only():
    urls = ",".join(f"nats://127.0.0.1:{free_port()}" for _ in range(SERVERS))
    with private_platform(managers=2, env={"ESS_NATS_URL": urls, "ESS_NATS_REPLICAS": str(SERVERS),
                                           "ESS_WARM_ENGINES": "0"}) as running:
        sup = running.supervisor
        running.keep_state = True  # its logs, until the checks passed
        api = httpx.Client(base_url=sup.api_urls[0], headers=AUTH, timeout=30)
        body = seed_body("nats3")
        assert api.post("/tenants", json={"tenant_org_id": body["tenant_org_id"]}).status_code == 201
        key = api.post(f"/tenants/{body['tenant_org_id']}/keys", json={}).json()["key"]
        cluster = api.post("/clusters", json=body).json()
        deadline = time.monotonic() + 180
        while api.get(f"/clusters/{cluster['id']}").json()["status"] != "ready":
            assert time.monotonic() < deadline, "not ready within 180 s"
            time.sleep(0.5)
        traffic = Traffic(sup.gateway_url, cluster["id"], key, sup.api_urls)
        engine = traffic._engine()
        engine.indices.create(index="kept", body={"settings": {"number_of_shards": 1, "number_of_replicas": 0}})

        threads = traffic.start()
        kills: list[tuple[str, float]] = []
        for name in list(sup.nats):
            time.sleep(3)
            sup.kill(name)
            kills.append((name, time.monotonic()))
            time.sleep(DOWN_S)
            sup.start(name)
            jetstream_ready([sup.nats[name]], timeout_s=60)
        time.sleep(3)
        traffic.stop.set()
        for thread in threads:
            thread.join()

        def excused(when: float) -> bool:
            return any(0 <= when - killed <= PAUSE_S for _, killed in kills)
        failed = [o for o in traffic.outcomes if o[2]]
        for kind, when, error in failed:  # shown with -s: how long after which kill
            after = [(round(when - killed, 2), name) for name, killed in kills if when >= killed]
            print("failed:", kind, min(after) if after else "before any kill", error[:160])
        unexcused = [o for o in failed if not excused(o[1])]
        assert unexcused == [], f"{len(failed)} failed, {len(unexcused)} outside a pause: {unexcused[:5]}"
        for name, killed in kills:  # writes went on while each server was down, not only around it
            assert any(killed < at < killed + DOWN_S for at in traffic.acked.values()), \
                f"no write acknowledged while {name} was down"
        engine.indices.refresh(index="kept")
        found = engine.search(index="kept", body={"size": 10000, "_source": False})
        assert {hit["_id"] for hit in found["hits"]["hits"]} >= set(traffic.acked)
        assert api.get(f"/clusters/{cluster['id']}").json()["status"] == "ready"
        # every stream and bucket on all three servers, as asked
        ports = {server.route.name: server.route.monitor_port for server in sup.nats.values()}
        holders = holders_of_streams(ports)
        assert holders and all(names == set(ports) for names in holders.values()), holders
        print(f"{len(traffic.outcomes)} requests, {len(failed)} failed, all within {PAUSE_S} s of a kill: "
              f"{sorted({o[0] for o in failed})}")
        engine.close()
        api.delete(f"/clusters/{cluster['id']}")
        running.keep_state = False


async def test_a_stream_and_a_bucket_made_with_one_copy_are_moved_to_three(tmp_path):
    servers = nats_cluster([f"nats://127.0.0.1:{free_port()}" for _ in range(SERVERS)], free_port,
                           tmp_path / "nats", tmp_path / "logs")
    try:
        for server in servers:
            server.start()
        jetstream_ready(servers)
        broker = NatsBroker([f"nats://{s.host}:{s.port}" for s in servers])
        await broker.connect()
        js = broker.connection.jetstream()
        await streams.declare_stream(js, streams.AUDIT, 1)  # made on one copy, as a single server would
        await js.create_key_value(bucket="moved", history=5)
        await streams.declare_stream(js, streams.AUDIT, SERVERS)  # its owner starts with ESS_NATS_REPLICAS=3
        kv = await open_bucket(broker, "moved", SERVERS, history=5)
        await kv.put("k", b"v")
        assert (await js.stream_info(streams.AUDIT.name)).config.num_replicas == SERVERS
        assert (await js.stream_info("KV_moved")).config.num_replicas == SERVERS
        assert (await kv.get("k")).value == b"v"
        await broker.stop()
    finally:
        for server in servers:
            server.stop()
