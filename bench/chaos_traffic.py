"""The traffic of a chaos run: per cluster a writer and a reader on its endpoint (through the
gateway, as a tenant's client goes), a writer through the manager API, and a poller of its status
through the API. Every request is recorded
with its time span and outcome, so the run can tell later which fault window it fell in.

A write counts as acknowledged only on a 2xx; a failed write is tried again later with the same
id (a failure is not an ack, and an id written twice is still one document).
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import httpx
from opensearchpy import OpenSearch

INDEX = "chaos"  # written on the endpoint: 2 shards, 1 replica, so a killed node other than 1 loses nothing
VECTOR_INDEX = "chaosv"  # written through the manager API (vector documents)
REQUEST_TIMEOUT_S = 15.0
ENDPOINT_WRITE, ENDPOINT_READ = "endpoint write", "endpoint read"
API_WRITE, API_READ, API_SCALE = "api write", "api read", "api scale"
PATHS = (ENDPOINT_WRITE, ENDPOINT_READ, API_WRITE, API_READ, API_SCALE)


@dataclass(frozen=True)
class Outcome:
    path: str  # one of PATHS
    cluster: str
    start: float  # time.monotonic()
    end: float
    error: str = ""  # "" : it worked
    replica: str = ""  # the manager replica an API request went to


@dataclass
class ChaosCluster:
    """A cluster of the run, as the run knows it; `target` is the node count last asked for."""

    id: str
    tenant: str
    endpoint: str  # the engine's own address: what the checks read, around the gateway
    tenant_endpoint: str  # the gateway's address of the cluster: what the traffic uses
    target: int
    answered: bool = True  # False while a request for `target` got no 202 yet (it is sent again)
    # polled: (time sent, status, nodes, replicas, replica that answered)
    statuses: list[tuple[float, str, int, int, str]] = field(default_factory=list)
    acked: dict[str, set[str]] = field(default_factory=lambda: {ENDPOINT_WRITE: set(), API_WRITE: set()})


class Recorder:
    """Every request outcome of the run, from all threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self.outcomes: list[Outcome] = []
        self.failovers = 0  # API requests refused by one replica and taken by another

    def add(self, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)


class ApiPool:
    """The manager replicas behind a load balancer: a request goes to one at random; a refused
    connection (the request never arrived) goes on to the next, as a balancer does."""

    def __init__(self, urls: dict[str, str], headers: dict[str, str], recorder: Recorder):
        self._clients = {name: httpx.Client(base_url=url, headers=headers, timeout=REQUEST_TIMEOUT_S)
                         for name, url in urls.items()}
        self._recorder = recorder

    def request(self, method: str, path: str, **kwargs) -> tuple[httpx.Response, str]:
        """The answer and the replica that gave it; raises the last error (its replica in `.replica`)."""
        order = random.sample(list(self._clients), len(self._clients))
        for i, name in enumerate(order):
            try:
                return self._clients[name].request(method, path, **kwargs), name
            except httpx.ConnectError as exc:
                if i == len(order) - 1:
                    exc.replica = name
                    raise
                self._recorder.failovers += 1
            except httpx.HTTPError as exc:
                exc.replica = name
                raise

    def each(self, method: str, path: str, **kwargs) -> dict[str, httpx.Response]:
        """The same request to every replica that takes connections (for checks: they must agree)."""
        answers = {}
        for name, client in self._clients.items():
            try:
                answers[name] = client.request(method, path, **kwargs)
            except httpx.ConnectError:
                continue  # down: a balancer would not send it anything either
        return answers

    def timed(self, recorder: Recorder, what: str, cluster: str, method: str, path: str,
              ok=lambda r: r.is_success, **kwargs) -> tuple[httpx.Response, str] | None:
        """One request, recorded; the answer and its replica when `ok` says it worked."""
        start = time.monotonic()
        try:
            answer, replica = self.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            recorder.add(Outcome(what, cluster, start, time.monotonic(), _describe(exc), getattr(exc, "replica", "")))
            return None
        error = "" if ok(answer) else f"HTTP {answer.status_code} {answer.text[:160]}"
        recorder.add(Outcome(what, cluster, start, time.monotonic(), error, replica))
        return None if error else (answer, replica)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc)[:160]}"


def endpoint_client(endpoint: str, headers: dict[str, str] | None = None) -> OpenSearch:
    return OpenSearch(hosts=[endpoint], max_retries=0, timeout=REQUEST_TIMEOUT_S, headers=headers)


class Ids:
    """New document ids, and now and then (once a second at most) one that failed, oldest first."""

    def __init__(self, prefix: str):
        self._prefix, self._n, self._last_retry = prefix, 0, 0.0
        self._retry: deque[str] = deque()

    def next(self) -> str:
        if self._retry and time.monotonic() - self._last_retry > 1.0:
            self._last_retry = time.monotonic()
            return self._retry.popleft()
        self._n += 1
        return f"{self._prefix}{self._n}"

    def failed(self, doc_id: str) -> None:
        self._retry.append(doc_id)


class ClusterTraffic:
    """The four loops of one cluster, in threads, until `stop()`."""

    def __init__(self, cluster: ChaosCluster, api_urls: dict[str, str], headers: dict[str, str],
                 recorder: Recorder, write_pause_s: float = 0.05):
        self.cluster, self._urls, self._headers, self._recorder = cluster, api_urls, headers, recorder
        self._pause = write_pause_s
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=loop, name=f"{loop.__name__}-{cluster.id}", daemon=True)
                         for loop in (self._endpoint_writes, self._endpoint_reads, self._api_writes, self._polls)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.ident is not None:  # started
                thread.join()

    def _write_loop(self, path: str, prefix: str, write, pause_s: float) -> None:
        ids = Ids(prefix)
        while not self._stop.is_set():
            doc_id = ids.next()
            if write(doc_id):
                self.cluster.acked[path].add(doc_id)
            else:
                ids.failed(doc_id)
            self._stop.wait(pause_s)

    def _endpoint_writes(self) -> None:
        client = endpoint_client(self.cluster.tenant_endpoint, self._headers)

        def write(doc_id: str) -> bool:
            start = time.monotonic()
            try:
                answer = client.index(index=INDEX, id=doc_id, body={"id": doc_id, "at": time.time()})
                error = "" if answer.get("result") in ("created", "updated") else f"answer {answer}"[:160]
            except Exception as exc:  # every failure is what the run counts
                error = _describe(exc)
            self._recorder.add(Outcome(ENDPOINT_WRITE, self.cluster.id, start, time.monotonic(), error))
            return not error

        self._write_loop(ENDPOINT_WRITE, "e", write, self._pause)
        client.close()

    def _endpoint_reads(self) -> None:
        client = endpoint_client(self.cluster.tenant_endpoint, self._headers)
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                answer = client.search(index=INDEX, body={"size": 1, "query": {"match_all": {}}})
                failed = answer["_shards"].get("failed", 0)
                error = f"partial result: {failed} shard(s) failed" if failed else ""
            except Exception as exc:
                error = _describe(exc)
            self._recorder.add(Outcome(ENDPOINT_READ, self.cluster.id, start, time.monotonic(), error))
            self._stop.wait(self._pause * 4)
        client.close()

    def _api_writes(self) -> None:
        api = ApiPool(self._urls, self._headers, self._recorder)
        path = f"/clusters/{self.cluster.id}/vector-indices/{VECTOR_INDEX}/documents"

        def write(doc_id: str) -> bool:
            body = {"documents": [{"id": doc_id, "vector": [random.random(), random.random()]}]}
            answer = api.timed(self._recorder, API_WRITE, self.cluster.id, "POST", path, json=body,
                               ok=lambda r: r.is_success and r.json().get("indexed") == 1)
            return answer is not None

        self._write_loop(API_WRITE, "a", write, self._pause * 10)
        api.close()

    def _polls(self) -> None:
        api = ApiPool(self._urls, self._headers, self._recorder)
        while not self._stop.is_set():
            sent = time.monotonic()
            answered = api.timed(self._recorder, API_READ, self.cluster.id, "GET", f"/clusters/{self.cluster.id}")
            if answered is not None:
                view = answered[0].json()
                self.cluster.statuses.append((sent, view["status"], view.get("nodes") or 0, view["replicas"],
                                              answered[1]))
            self._stop.wait(0.5)
        api.close()
