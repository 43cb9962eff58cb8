"""Serverless figures: how long a hibernated cluster takes to answer its first request, beside a
cold start of the engine JVM alone in the same run; and what hibernated clusters cost.

Wake: POST /hibernate, wait for `hibernated`, then time a `_count` through the gateway (held
until the engine answers) and check it counts every document. Rounds alternate cold start and
wake. Targets (issue 10): wake p50 under 5 s and at most 1.5 x the cold start.
Density: N clusters hibernated at once: engine processes left, the platform's RSS, disk each.
Run: .venv/bin/python bench/wake_time.py
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repo, not bench/

import statistics
import time
from pathlib import Path

import httpx

from bench.private_platform import AUTH, Running, delete_and_wait, run_alone, seed_body
from bench.ready_time import floor_once
from services.manager.drivers.local_processes import find_engines

ROUNDS = 5
DENSITY_CLUSTERS = 6
DOCS = 500


def _wait(api: httpx.Client, cluster_id: str, status: str, timeout_s: float = 180) -> dict:
    deadline = time.monotonic() + timeout_s
    while (view := api.get(f"/clusters/{cluster_id}").json())["status"] != status:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{cluster_id} not {status}: {view['status']} {view['status_reason']}")
        time.sleep(0.1)
    return view


def _ready_cluster(api: httpx.Client, name: str) -> dict:
    # a tenant per cluster: the density part holds more clusters than one tenant's default quota
    body = {**seed_body(name), "tenant_org_id": f"bench-{name}", "hibernate_after_s": 0}
    answer = api.post("/clusters", json=body)
    if answer.status_code != 202:
        raise RuntimeError(f"POST /clusters: {answer.status_code} {answer.text}")
    cluster_id = answer.json()["id"]
    view = _wait(api, cluster_id, "ready")
    bulk = "".join(f'{{"index":{{"_index":"kept","_id":"d{i}"}}}}\n{{"n":{i}}}\n' for i in range(DOCS))
    httpx.post(f"{view['endpoint']}/_bulk?refresh=true", content=bulk, timeout=60,
               headers={**AUTH, "content-type": "application/x-ndjson"}).raise_for_status()
    return view


def wake_once(api: httpx.Client, view: dict) -> float:
    api.post(f"/clusters/{view['id']}/hibernate").raise_for_status()
    _wait(api, view["id"], "hibernated")
    started = time.perf_counter()
    answer = httpx.get(f"{view['endpoint']}/kept/_count", headers=AUTH, timeout=120)
    took = time.perf_counter() - started
    if answer.status_code != 200 or answer.json()["count"] != DOCS:
        raise RuntimeError(f"after the wake: {answer.status_code} {answer.text[:200]}")
    return took


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def _du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def density(api: httpx.Client, running: Running) -> str:
    views = [_ready_cluster(api, f"dense{i}") for i in range(DENSITY_CLUSTERS)]
    platform = list(running.supervisor.pids().values())
    awake_engines = [n.pid for n in find_engines(running.state_dir / "clusters")]
    awake = _rss_mb(platform) + _rss_mb(awake_engines)
    for view in views:
        api.post(f"/clusters/{view['id']}/hibernate").raise_for_status()
    for view in views:
        _wait(api, view["id"], "hibernated")
    left = find_engines(running.state_dir / "clusters")
    asleep = _rss_mb(platform)
    disk = statistics.median(_du_mb(running.state_dir / "clusters" / v["id"]) for v in views)
    for view in views:
        delete_and_wait(api, view["id"])
    return (f"density: {DENSITY_CLUSTERS} clusters awake {awake:.0f} MB RSS (platform + {len(awake_engines)} engine "
            f"JVMs); hibernated {asleep:.0f} MB RSS (platform only, {len(left)} engine processes left), "
            f"{disk:.1f} MB disk each (median); the bound is disk and the port slots (ESS_LOCAL_PORT_SLOTS, 100)")


def run(running: Running) -> list[str]:
    with httpx.Client(base_url=running.api, headers=AUTH, timeout=30) as api:
        view = _ready_cluster(api, "wake")
        cold, wakes = [], []
        try:
            for _ in range(ROUNDS):
                cold.append(floor_once())
                wakes.append(wake_once(api, view))
        finally:
            delete_and_wait(api, view["id"])
        wake = (f"wake: hibernated -> first answer through the gateway, median of {ROUNDS} "
                f"{statistics.median(wakes):.2f} s ({min(wakes):.2f}..{max(wakes):.2f}); cold engine start "
                f"{statistics.median(cold):.2f} s ({min(cold):.2f}..{max(cold):.2f}); ratio "
                f"{statistics.median(wakes) / statistics.median(cold):.2f} (targets: p50 < 5 s, ratio <= 1.5)")
        print(wake, flush=True)
        return [wake, density(api, running)]


if __name__ == "__main__":
    run_alone(run)
