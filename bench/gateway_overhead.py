"""What the gateway adds: wrk at 20 connections against the engine directly and through the
gateway, in the same run, on `_search` and on `GET /<index>/_doc/<id>`.

Through the gateway twice: with a tenant's key (the tenant API policy decides every request) and
with the operator's (which passes without the policy, audited by one log line), so the policy's
cost shows against the same gateway; and the policy's decision alone, timed in-process.
Rounds alternate direct, tenant, operator, ... so drift on a busy machine hits all alike; the
figures are medians over the rounds, with their spread (min..max).
Targets (issue 10): at most 1 ms added at p50, at least 70 % of direct throughput.
Run: .venv/bin/python bench/gateway_overhead.py   (needs wrk: apt install wrk)
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repo, not bench/

import re
import shutil
import statistics
import subprocess
import time

import httpx

from bench.private_platform import AUTH, OPERATOR_KEY, Running, delete_and_wait, run_alone, seed_body
from services.gateway import api_policy

ROUNDS = 4  # even: each of tenant and operator runs first in half the rounds
CONNECTIONS = 20
DURATION_S = 8
DOCS = 1000
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, headers: dict[str, str]) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, requests/s) of one wrk run."""
    command = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{DURATION_S}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors on {url}:\n{out}")

    def latency(p: str) -> float:
        value, unit = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * UNITS[unit]

    return latency("50"), latency("99"), float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def _spread(values: list[float], digits: int = 2) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}..{max(values):.{digits}f})"


def run(running: Running) -> list[str]:
    if shutil.which("wrk") is None:
        return ["gateway overhead: skipped, wrk is not installed (Debian: apt install wrk)"]
    with httpx.Client(base_url=running.api, headers=AUTH, timeout=30) as api:
        body = {**seed_body("gateway"), "memory": "1Gi", "hibernate_after_s": 0}
        api.post("/tenants", json={"tenant_org_id": body["tenant_org_id"]})
        tenant_key = api.post(f"/tenants/{body['tenant_org_id']}/keys", json={}).json()["key"]
        cluster_id = api.post("/clusters", json=body).json()["id"]
        deadline = time.monotonic() + 180
        while (view := api.get(f"/clusters/{cluster_id}").json())["status"] != "ready":
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster not ready: {view['status_reason']}")
            time.sleep(0.2)
        direct, gateway = view["engine_endpoint"], view["endpoint"]
        bulk = "".join(f'{{"index":{{"_index":"bench","_id":"d{i}"}}}}\n{{"title":"item {i}","n":{i}}}\n'
                       for i in range(DOCS))
        httpx.post(f"{direct}/_bulk?refresh=true", content=bulk, headers={"content-type": "application/x-ndjson"},
                   timeout=60).raise_for_status()
        paths = {"_search": "/bench/_search?q=title:item&size=10", "GET _doc": "/bench/_doc/d42"}
        results: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
        keys = {"tenant": tenant_key, "operator": OPERATOR_KEY}
        try:
            for name, path in paths.items():
                wrk(direct + path, {})  # warm-up: caches and JIT
                wrk(gateway + path, {"Authorization": f"ApiKey {tenant_key}"})
                for round_ in range(ROUNDS):
                    results.setdefault((name, "direct"), []).append(wrk(direct + path, {}))
                    # each order in turn: the run right after the direct one measured slower in both orders
                    for who, key in (keys.items() if round_ % 2 == 0 else reversed(keys.items())):
                        results.setdefault((name, who), []).append(wrk(gateway + path, {"Authorization": f"ApiKey {key}"}))
        finally:
            delete_and_wait(api, cluster_id)
    lines = []
    for name, path in paths.items():
        d, g, o = results[(name, "direct")], results[(name, "tenant")], results[(name, "operator")]
        added = [gp[0] - dp[0] for dp, gp in zip(d, g)]
        share = [gp[2] / dp[2] for dp, gp in zip(d, g)]
        policy_share = [gp[2] / op[2] for op, gp in zip(o, g)]
        lines.append(
            f"gateway {name} at {CONNECTIONS} connections, median of {ROUNDS} (min..max): "
            f"p50 direct {_spread([r[0] for r in d])} ms, gateway {_spread([r[0] for r in g])} ms, "
            f"added {_spread(added)} ms (target <= 1); p99 direct {_spread([r[1] for r in d])} ms, "
            f"gateway {_spread([r[1] for r in g])} ms; throughput direct {_spread([r[2] for r in d], 0)}/s, "
            f"gateway {_spread([r[2] for r in g], 0)}/s = {_spread([s * 100 for s in share], 0)} % (target >= 70 %)")
        lines.append(
            f"  tenant policy on {name}: tenant key {_spread([r[2] for r in g], 0)}/s p50 "
            f"{_spread([r[0] for r in g])} ms, operator key (no policy) {_spread([r[2] for r in o], 0)}/s p50 "
            f"{_spread([r[0] for r in o])} ms: {_spread([s * 100 for s in policy_share], 0)} %; the decision "
            f"alone {_spread(policy_cost(path))} us")
    return lines


def policy_cost(path: str, calls: int = 20_000) -> list[float]:
    """Microseconds per policy decision of `path`, one figure per round."""
    figures = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(calls):
            api_policy.decide("GET", path, "opensearch")
        figures.append((time.perf_counter() - started) / calls * 1e6)
    return figures


if __name__ == "__main__":
    run_alone(run)
