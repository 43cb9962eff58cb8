"""Searches that fail while a cluster scales in, straight to the engine and through the gateway.

One cluster (2 shards, 1 replica), three readers searching back to back in the same run:
straight to `engine_endpoint` (the baseline: what the engine itself does), through the gateway
with the operator's key (the Python gateway carries it) and with a tenant's key (the byte pump
carries it). `--rounds` times the cluster goes 1 -> 2 -> 1 nodes; the second node's stop at the
end of each drain is when the engine fails searches that had a copy on it. Prints per reader
the searches and the failed ones per round (median, min..max) with the commonest errors, and how
often the gateway sent a read again.

    python bench/scale_in_reads.py [--rounds 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
from opensearchpy import OpenSearch  # noqa: E402

from bench.private_platform import AUTH, OPERATOR_KEY, Running, run_alone, seed_body  # noqa: E402

READERS = ("direct", "gateway, Python", "gateway, pump")


class Reader:
    def __init__(self, name: str, client: OpenSearch):
        self.name, self.client = name, client
        self.searches = self.failed = 0
        self.errors: Counter[str] = Counter()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                answer = self.client.search(index="live", body={"size": 1, "query": {"match_all": {}}})
                failed = answer["_shards"].get("failed", 0)
                error = f"partial: {failed} shard(s) failed" if failed else ""
            except Exception as exc:  # what this bench counts
                error = f"{type(exc).__name__}: {getattr(exc, 'error', exc)}"[:100]
            self.searches += 1
            if error:
                self.failed += 1
                self.errors[error] += 1


def wait_ready(api: httpx.Client, cluster_id: str, nodes: int, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while (view := api.get(f"/clusters/{cluster_id}").json())["status"] != "ready" or view["nodes"] != nodes:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{cluster_id} not ready at {nodes} node(s) within {timeout_s} s: {view}")
        time.sleep(0.2)


def run(running: Running, rounds: int) -> list[str]:
    api = httpx.Client(base_url=running.api, headers=AUTH, timeout=30)
    body = seed_body("scalein")
    api.post("/tenants", json={"tenant_org_id": body["tenant_org_id"]})
    tenant_key = api.post(f"/tenants/{body['tenant_org_id']}/keys", json={}).json()["key"]
    cluster = api.post("/clusters", json=body).json()
    api.patch(f"/clusters/{cluster['id']}", json={"autoscaling": False})
    wait_ready(api, cluster["id"], 1)
    view = api.get(f"/clusters/{cluster['id']}").json()
    direct = OpenSearch(hosts=[view["engine_endpoint"]], max_retries=0, timeout=30)
    direct.indices.create(index="live", body={"settings": {"number_of_shards": 2, "number_of_replicas": 1}})
    for i in range(200):
        direct.index(index="live", id=str(i), body={"n": i})
    direct.indices.refresh(index="live")
    readers = [Reader(READERS[0], direct)] + [
        Reader(name, OpenSearch(hosts=[view["endpoint"]], max_retries=0, timeout=30,
                                headers={"Authorization": f"ApiKey {key}"}))
        for name, key in ((READERS[1], OPERATOR_KEY), (READERS[2], tenant_key))]
    for reader in readers:
        reader.thread.start()
    per_round: dict[str, list[int]] = {r.name: [] for r in readers}
    searched: dict[str, int] = {r.name: 0 for r in readers}
    for _ in range(rounds):
        before = {r.name: r.failed for r in readers}
        for nodes in (2, 1):
            api.patch(f"/clusters/{cluster['id']}", json={"replicas": nodes})
            wait_ready(api, cluster["id"], nodes)
            time.sleep(1)
        for r in readers:
            per_round[r.name].append(r.failed - before[r.name])
    for reader in readers:
        reader.stop.set()
        reader.thread.join()
        searched[reader.name] = reader.searches
    api.delete(f"/clusters/{cluster['id']}")
    log = running.state_dir / "logs" / "gateway.log"
    again = log.read_text().count("read sent again") if log.is_file() else 0
    lines = [f"scale-in reads: {rounds} rounds of 1 -> 2 -> 1 nodes, searches back to back on 2 shards, 1 replica"]
    for reader in readers:
        counts = per_round[reader.name]
        lines.append(f"  {reader.name:16} {searched[reader.name]:>7} searches; failed per round: median "
                     f"{statistics.median(counts):g} ({min(counts)}..{max(counts)}), {reader.failed} in all")
        lines += [f"      {n} x {error}" for error, n in reader.errors.most_common(3)]
    lines.append(f"  reads the Python gateway sent again: {again} (the pump's are not logged)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    run_alone(lambda running: run(running, args.rounds))


if __name__ == "__main__":
    main()
