"""Snapshot and restore throughput (MB/s) of an index of about 100 MB, through the platform's API,
beside a plain copy of the same index files on the same disk in the same run (issue 11).

One cluster (1 node, 512 MiB heap); index `bench` (1 shard, no replica) filled through the
engine endpoint with documents carrying 4 KiB of random base64 kept in `_source` only (unmapped:
little CPU to index, and incompressible, so the store is about the payload), then flushed; its
size is the engine's `_stats/store` (not cached: `index.store.stats_refresh_interval` 0). Each run:
  - snapshot: `POST /clusters/{id}/snapshots`, polled on `GET .../snapshots` until `success`;
    MB/s = size_bytes / elapsed. Every snapshot is a full one: the previous run's is deleted
    first, so the repository holds no blob to share (the engine's own incremental size is printed
    to show it equals the total);
  - restore: `POST /clusters/{id}/restore` of that snapshot (the whole index, replaced in place),
    polled on the cluster's `restore.state` until `done`, then the document count is checked.
    This includes the backup pass's cadence (ESS_RECONCILE_INTERVAL_S): the engine's own
    recovery time (`_recovery`, type SNAPSHOT) is printed beside it;
  - baseline: the index's files copied (read, write, fsync) into a temp dir of the state dir.
Median, min-max and the ratio of medians against the copy.

Run: .venv/bin/python bench/snapshot_throughput.py [--runs 3] [--mb 100]   (about 3 minutes)
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repo, not bench/

import argparse
import base64
import shutil
import statistics
import time
from datetime import datetime
from pathlib import Path

import httpx

from bench.private_platform import AUTH, Running, delete_and_wait, private_platform, seed_body
from services.manager.backups import REPOSITORY

RUNS = 3
MB = 100
INDEX = "bench"
PAYLOAD_BYTES = 4096
BULK_DOCS = 1000  # about 4 MB a request
MIB = 2**20


def wait_for(check, timeout_s: float, what: str, interval_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not within {timeout_s} s")
        time.sleep(interval_s)
    return found


def ready_cluster(api: httpx.Client, name: str, body: dict | None = None) -> dict:
    """A new 1-node cluster (512 MiB heap) in a tenant of its own, waited for until ready."""
    body = body or {**seed_body(name), "tenant_org_id": f"bench-{name}", "memory": "1Gi", "hibernate_after_s": 0}
    answer = api.post("/clusters", json=body)
    if answer.status_code != 202:
        raise RuntimeError(f"POST /clusters: {answer.status_code} {answer.text}")
    cluster_id = answer.json()["id"]
    return wait_for(lambda: (v := api.get(f"/clusters/{cluster_id}").json())["status"] == "ready" and v,
                    180, f"cluster {cluster_id} ready")


def store_bytes(engine: httpx.Client) -> int:
    stats = engine.get(f"/{INDEX}/_stats/store").raise_for_status().json()
    return stats["indices"][INDEX]["primaries"]["store"]["size_in_bytes"]


def fill(engine: httpx.Client, mb: float) -> tuple[int, int]:
    """Index `mb` MB of payload, then flush: (documents, the engine's store bytes)."""
    # store stats are cached 10 s by default: the size read right after the flush must be the new one
    settings = {"number_of_shards": 1, "number_of_replicas": 0, "store.stats_refresh_interval": "0s"}
    engine.put(f"/{INDEX}", json={"settings": settings,
                                  "mappings": {"dynamic": False, "properties": {"n": {"type": "long"}}}}
               ).raise_for_status()
    docs = 0
    while docs * PAYLOAD_BYTES < mb * MIB:
        lines = []
        for _ in range(min(BULK_DOCS, int(mb * MIB / PAYLOAD_BYTES) + 1 - docs)):
            payload = base64.b64encode(os.urandom(PAYLOAD_BYTES * 3 // 4)).decode()
            lines.append(f'{{"index":{{"_index":"{INDEX}","_id":"d{docs}"}}}}\n{{"n":{docs},"payload":"{payload}"}}\n')
            docs += 1
        answer = engine.post("/_bulk", content="".join(lines), headers={"content-type": "application/x-ndjson"})
        if answer.raise_for_status().json()["errors"]:
            raise RuntimeError(f"bulk: {answer.text[:300]}")
    engine.post(f"/{INDEX}/_flush").raise_for_status()
    engine.post(f"/{INDEX}/_refresh").raise_for_status()
    return docs, store_bytes(engine)


def snapshot_once(api: httpx.Client, engine: httpx.Client, cluster_id: str) -> tuple[dict, float, int]:
    """A snapshot through the API: (its listing entry, wall seconds, the engine's incremental bytes)."""
    started = time.perf_counter()
    taken = api.post(f"/clusters/{cluster_id}/snapshots")
    if taken.status_code != 202:
        raise RuntimeError(f"POST snapshots: {taken.status_code} {taken.text}")
    name = taken.json()["name"]

    def finished():
        found = [s for s in api.get(f"/clusters/{cluster_id}/snapshots").json()["snapshots"] if s["name"] == name]
        return found[0] if found and found[0]["status"] != "in_progress" else None

    snapshot = wait_for(finished, 300, f"snapshot {name}")
    took = time.perf_counter() - started
    if snapshot["status"] != "success":
        raise RuntimeError(f"snapshot {name}: {snapshot}")
    status = engine.get(f"/_snapshot/{REPOSITORY}/{name}/_status").raise_for_status().json()
    return snapshot, took, status["snapshots"][0]["stats"]["incremental"]["size_in_bytes"]


def restore_once(api: httpx.Client, engine: httpx.Client, cluster_id: str, name: str, docs: int) -> tuple[float, float]:
    """A restore of the whole snapshot through the API: (wall seconds to `done`, the engine's recovery seconds)."""
    started = time.perf_counter()
    asked = api.post(f"/clusters/{cluster_id}/restore", json={"snapshot": name})
    if asked.status_code != 202:
        raise RuntimeError(f"POST restore: {asked.status_code} {asked.text}")
    restore = wait_for(lambda: (r := api.get(f"/clusters/{cluster_id}").json()["restore"])["state"]
                       in ("done", "failed") and r, 300, f"restore of {name}")
    took = time.perf_counter() - started
    if restore["state"] != "done":
        raise RuntimeError(f"restore of {name}: {restore}")
    engine.post(f"/{INDEX}/_refresh").raise_for_status()
    count = engine.get(f"/{INDEX}/_count").raise_for_status().json()["count"]
    if count != docs:
        raise RuntimeError(f"restored {count} documents of {docs}")
    shards = engine.get(f"/{INDEX}/_recovery").raise_for_status().json()[INDEX]["shards"]
    recovery = [s for s in shards if s["type"] == "SNAPSHOT"]
    engine_s = (max(s["stop_time_in_millis"] for s in recovery) - min(s["start_time_in_millis"] for s in recovery)) / 1000
    return took, engine_s


def index_dir(running: Running, cluster_id: str, engine: httpx.Client) -> Path:
    uuid = engine.get(f"/_cat/indices/{INDEX}", params={"h": "uuid"}).raise_for_status().text.strip()
    found = [p for p in (running.state_dir / "clusters" / cluster_id).rglob(uuid)
             if p.is_dir() and p.parent.name == "indices"]
    if len(found) != 1:
        raise RuntimeError(f"index {INDEX} ({uuid}) in {len(found)} directories: {found}")
    return found[0]


def copy_once(source: Path, scratch: Path) -> tuple[float, int]:
    """The floor: the index's files copied on the same disk, each written through to it."""
    shutil.rmtree(scratch, ignore_errors=True)
    copied = 0
    started = time.perf_counter()
    for path in source.rglob("*"):
        if path.is_file() and not path.name.endswith(".lock"):
            target = scratch / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "rb") as read, open(target, "wb") as write:
                shutil.copyfileobj(read, write, 4 * MIB)
                write.flush()
                os.fsync(write.fileno())
            copied += path.stat().st_size
    took = time.perf_counter() - started
    shutil.rmtree(scratch, ignore_errors=True)
    return took, copied


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def spread(values: list[float], unit: str, digits: int = 1) -> str:
    return f"{statistics.median(values):.{digits}f} {unit} ({min(values):.{digits}f}..{max(values):.{digits}f})"


def run(running: Running, runs: int = RUNS, mb: float = MB) -> list[str]:
    with httpx.Client(base_url=running.api, headers=AUTH, timeout=60) as api:
        view = ready_cluster(api, "snap")
        try:
            with httpx.Client(base_url=view["engine_endpoint"], timeout=120) as engine:
                started = time.perf_counter()
                docs, size = fill(engine, mb)
                print(f"index {INDEX}: {docs} documents, store {size / MIB:.1f} MB after flush, "
                      f"filled in {time.perf_counter() - started:.0f} s", flush=True)
                snap_s, snap_mbs, snap_engine, restore_s, restore_mbs, restore_engine, copy_mbs = ([] for _ in range(7))
                previous = None
                for round_ in range(runs):
                    if previous:  # so this run's snapshot is a full one
                        api.delete(f"/clusters/{view['id']}/snapshots/{previous}").raise_for_status()
                    snapshot, took, incremental = snapshot_once(api, engine, view["id"])
                    previous = snapshot["name"]
                    engine_took = (_ts(snapshot["finished_at"]) - _ts(snapshot["started_at"])) or 0.001
                    snap_s.append(took)
                    snap_mbs.append(snapshot["size_bytes"] / MIB / took)
                    snap_engine.append(snapshot["size_bytes"] / MIB / engine_took)
                    full = "full" if incremental == snapshot["size_bytes"] else f"INCREMENTAL {incremental} bytes"
                    restore_took, recovery_took = restore_once(api, engine, view["id"], previous, docs)
                    restore_s.append(restore_took)
                    restore_mbs.append(snapshot["size_bytes"] / MIB / restore_took)
                    restore_engine.append(snapshot["size_bytes"] / MIB / max(recovery_took, 0.001))
                    files = index_dir(running, view["id"], engine)  # the restored index has a new uuid
                    copy_took, copied = copy_once(files, running.state_dir / "bench-copy")
                    copy_mbs.append(copied / MIB / copy_took)
                    print(f"run {round_ + 1}: snapshot {snapshot['size_bytes'] / MIB:.1f} MB ({full}) in {took:.2f} s, "
                          f"restore in {restore_took:.2f} s (engine recovery {recovery_took:.2f} s), "
                          f"copy {copied / MIB:.1f} MB in {copy_took:.2f} s", flush=True)
        finally:
            delete_and_wait(api, view["id"], timeout_s=300)
    copy = statistics.median(copy_mbs)
    return [
        f"snapshot (full, {size / MIB:.0f} MB, POST -> listed success), {runs} runs: {spread(snap_mbs, 'MB/s')}, "
        f"{spread(snap_s, 's', 2)}; engine's own start->finish {spread(snap_engine, 'MB/s')}; "
        f"ratio to the file copy {statistics.median(snap_mbs) / copy:.2f}",
        f"restore (whole index in place, POST -> restore.state done), {runs} runs: {spread(restore_mbs, 'MB/s')}, "
        f"{spread(restore_s, 's', 2)}; engine's own recovery {spread(restore_engine, 'MB/s')}; "
        f"ratio to the file copy {statistics.median(restore_mbs) / copy:.2f}",
        f"baseline: the index files copied with fsync, same disk: {spread(copy_mbs, 'MB/s')}",
    ]


def main(run, doc: str, runs: int, mb: float) -> None:
    """`__main__` of the backup benchmarks: `--runs` and `--mb`, in a private platform of their own."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--runs", type=int, default=runs)
    parser.add_argument("--mb", type=float, default=mb, help="the index's size, MB of store after flush")
    args = parser.parse_args()
    with private_platform() as platform:
        print("\n".join(run(platform, args.runs, args.mb)))


if __name__ == "__main__":
    main(run, __doc__, RUNS, MB)
