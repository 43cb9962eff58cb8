"""Clone time: `POST /clusters` with `"from": {"cluster_id", "snapshot"}` until the new cluster is
`ready` and holds the source's documents, against the same cluster created empty, in the same
run (issue 11).

One source cluster with an index of `--mb` MB (snapshot_throughput.py's documents) and one
snapshot of it. Each run creates, alternating (empty first), the same body (1 node, 512 MiB
heap, a tenant of its own) without and with `from`; polls `GET /clusters/{id}` every 100 ms:
the empty one until `ready`, the clone until `ready` and then until `restore.state` is `done`
and the engine's `_count` equals the source's. Each is deleted (and waited for) before the
next. Median, min-max, and the ratios of medians clone / empty.

Run: .venv/bin/python bench/clone_ready.py [--runs 3] [--mb 20]   (about 4 minutes)
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repo, not bench/

import statistics
import time

import httpx

from bench.private_platform import AUTH, Running, delete_and_wait, seed_body
from bench.snapshot_throughput import INDEX, MIB, fill, main, ready_cluster, snapshot_once, spread, wait_for

RUNS = 3
MB = 20


def create(api: httpx.Client, name: str, origin: dict | None) -> tuple[str, float]:
    body = {**seed_body(name), "tenant_org_id": f"bench-{name}", "memory": "1Gi", "hibernate_after_s": 0}
    started = time.perf_counter()
    answer = api.post("/clusters", json={**body, "from": origin} if origin else body)
    if answer.status_code != 202:
        raise RuntimeError(f"POST /clusters: {answer.status_code} {answer.text}")
    cluster_id = answer.json()["id"]
    wait_for(lambda: api.get(f"/clusters/{cluster_id}").json()["status"] == "ready", 300, f"{cluster_id} ready")
    return cluster_id, time.perf_counter() - started


def data_present(api: httpx.Client, cluster_id: str, docs: int) -> None:
    """Wait until the clone's restore is done, then check it counts every document."""
    restore = wait_for(lambda: (r := api.get(f"/clusters/{cluster_id}").json()["restore"])
                       and r["state"] in ("done", "failed") and r, 300, f"{cluster_id} restored")
    if restore["state"] != "done":
        raise RuntimeError(f"clone {cluster_id}: {restore}")
    engine = api.get(f"/clusters/{cluster_id}").json()["engine_endpoint"]
    count = httpx.get(f"{engine}/{INDEX}/_count", timeout=60).raise_for_status().json()["count"]
    if count != docs:
        raise RuntimeError(f"clone {cluster_id} counts {count} documents of {docs}")


def run(running: Running, runs: int = RUNS, mb: float = MB) -> list[str]:
    with httpx.Client(base_url=running.api, headers=AUTH, timeout=60) as api:
        source = ready_cluster(api, "clone-src")
        try:
            with httpx.Client(base_url=source["engine_endpoint"], timeout=120) as engine:
                docs, size = fill(engine, mb)
                snapshot, _, _ = snapshot_once(api, engine, source["id"])
            origin = {"cluster_id": source["id"], "snapshot": snapshot["name"]}
            print(f"source: {docs} documents, store {size / MIB:.1f} MB, snapshot {snapshot['name']}", flush=True)
            empty, clone_ready, clone_data = [], [], []
            for round_ in range(runs):
                cluster_id, took = create(api, f"empty{round_}", None)
                empty.append(took)
                delete_and_wait(api, cluster_id, timeout_s=300)
                started = time.perf_counter()
                cluster_id, took = create(api, f"clone{round_}", origin)
                clone_ready.append(took)
                data_present(api, cluster_id, docs)
                clone_data.append(time.perf_counter() - started)
                delete_and_wait(api, cluster_id, timeout_s=300)
                print(f"run {round_ + 1}: empty ready {empty[-1]:.2f} s, clone ready {clone_ready[-1]:.2f} s, "
                      f"clone with its data {clone_data[-1]:.2f} s", flush=True)
        finally:
            delete_and_wait(api, source["id"], timeout_s=300)
    base = statistics.median(empty)
    return [
        f"empty cluster, POST -> ready, {runs} runs: {spread(empty, 's', 2)}",
        f"clone of {size / MIB:.0f} MB, POST -> ready: {spread(clone_ready, 's', 2)}, ratio to empty "
        f"{statistics.median(clone_ready) / base:.2f}; POST -> restore done and {docs} documents counted: "
        f"{spread(clone_data, 's', 2)}, ratio to empty {statistics.median(clone_data) / base:.2f}",
    ]


if __name__ == "__main__":
    main(run, __doc__, RUNS, MB)
