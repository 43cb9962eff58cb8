"""Latency of GET /clusters/{id} under 20 concurrent clients (closed loop, keep-alive).

Run: .venv/bin/python bench/get_latency.py
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repo, not bench/

import asyncio
import math
import re
import shutil
import subprocess
import time

import httpx

from bench.private_platform import AUTH, OPERATOR_KEY, Running, delete_and_wait, run_alone, seed_body

CLIENTS = 20
WARMUP_S = 2.0
MEASURE_S = 10.0
READY_TIMEOUT_S = 120


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


async def _client(api: str, path: str, warm_until: float, stop_at: float, latencies: list[float], errors: list[int]):
    async with httpx.AsyncClient(base_url=api, timeout=10, headers=AUTH) as client:
        while (now := time.perf_counter()) < stop_at:
            answer = await client.get(path)
            elapsed = time.perf_counter() - now
            if now >= warm_until:
                if answer.status_code == 200:
                    latencies.append(elapsed)
                else:
                    errors.append(answer.status_code)


async def _load(api: str, path: str) -> tuple[list[float], list[int]]:
    latencies: list[float] = []
    errors: list[int] = []
    warm_until = time.perf_counter() + WARMUP_S
    stop_at = warm_until + MEASURE_S
    await asyncio.gather(*(_client(api, path, warm_until, stop_at, latencies, errors) for _ in range(CLIENTS)))
    return latencies, errors


def run(running: Running) -> list[str]:
    with httpx.Client(base_url=running.api, timeout=10, headers=AUTH) as api:
        answer = api.post("/clusters", json=seed_body("latency"))
        answer.raise_for_status()
        cluster_id = answer.json()["id"]
        deadline = time.monotonic() + READY_TIMEOUT_S
        while (status := api.get(f"/clusters/{cluster_id}").json()["status"]) != "ready":
            if time.monotonic() > deadline or status == "failed":
                break
            time.sleep(0.2)
        print(f"  latency: cluster {cluster_id} is {status}; {CLIENTS} clients, {WARMUP_S:.0f} s warm-up, "
              f"{MEASURE_S:.0f} s measured", flush=True)
        latencies, errors = asyncio.run(_load(running.api, f"/clusters/{cluster_id}"))
        wrk_lines = _wrk(f"{running.api}/clusters/{cluster_id}")
        delete_and_wait(api, cluster_id)
    ms = sorted(x * 1000 for x in latencies)
    p99 = percentile(ms, 99)
    return [
        f"GET /clusters/{{id}}, {CLIENTS} clients, cluster {status}: {len(ms)} requests ({len(errors)} errors), "
        f"{len(ms) / MEASURE_S:.0f} req/s",
        f"GET /clusters/{{id}} latency: p50 {percentile(ms, 50):.1f} ms  p90 {percentile(ms, 90):.1f} ms  "
        f"p99 {p99:.1f} ms  max {ms[-1]:.1f} ms   target p99 < 20 ms   {'PASS' if p99 < 20 else 'MISS'}",
        *wrk_lines,
    ]


def _wrk(url: str) -> list[str]:
    """The same load from wrk (Debian package), whose client costs far less CPU than Python's."""
    if shutil.which("wrk") is None:
        return ["GET /clusters/{id} with wrk: skipped, wrk not installed (apt install wrk)"]
    out = subprocess.run(["wrk", "-t1", f"-c{CLIENTS}", f"-d{MEASURE_S:.0f}s", "--latency",
                          "-H", f"Authorization: ApiKey {OPERATOR_KEY}", url],
                         capture_output=True, text=True).stdout
    to_ms = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    found = {p: float(v) * to_ms[u] for p, v, u in re.findall(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)$", out, re.M)}
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = found.get("99", float("nan"))
    return [f"GET /clusters/{{id}} with wrk, {CLIENTS} connections: {float(rate.group(1)) if rate else 0:.0f} req/s, "
            f"p50 {found.get('50', float('nan')):.1f} ms  p90 {found.get('90', float('nan')):.1f} ms  "
            f"p99 {p99:.1f} ms   target p99 < 20 ms   {'PASS' if p99 < 20 else 'MISS'}"]


def main() -> None:
    run_alone(run)


if __name__ == "__main__":
    main()
