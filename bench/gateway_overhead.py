"""What the gateway adds: wrk against the engine directly and through the gateway, in the same
run, on `_search` and on `GET /<index>/_doc/<id>`, at 20 connections and at 200.

Through the gateway two ways, both with a tenant's key (the tenant API policy decides): through
its front door, where the byte pump carries a decided call (issue 23), and through the Python
gateway alone (its internal port, as without the pump), so the pump's gain shows against the
same gateway in the same run. Rounds alternate direct, pump, Python, ... so drift on a busy
machine hits all alike; the figures are medians over the rounds with their spread (min..max).
Targets (issue 23), at 20 connections: GET _doc through the gateway >= 50 % of direct, <= 0.5 ms
added at p50 and <= 2 ms at p99; _search >= 80 %. At 200 connections: no errors (non-2xx
answers stop the run; socket errors and calls over 10 s are counted).
A yardstick, when HAProxy is installed (Debian: apt install haproxy): the same calls through
HAProxy on one thread, keeping its engine connections, deciding nothing. It is what a compiled,
well-kept proxy costs on the same shared cores: the floor a second process per call sets.
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
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from bench.private_platform import AUTH, Running, delete_and_wait, private_platform, seed_body, wait_for_idle_standby
from devrun.supervisor import free_port
from services.manager.drivers.local_processes import listening
from libs.common.settings import GatewaySection
from services.gateway import api_policy

WAYS = {"pump": "through the gateway, the pump carries", "python": "through the gateway, Python alone",
        "haproxy": "yardstick, HAProxy deciding nothing"}
ROUNDS = 4  # even: each of pump and Python runs first in half the rounds
CONNECTIONS = (20, 200)
DURATION_S = 8
DOCS = 1000
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, headers: dict[str, str], connections: int) -> tuple[float, float, float, int]:
    """(p50 ms, p99 ms, requests/s, socket errors) of one wrk run; raises on a non-2xx answer.
    A call may take up to 10 s before wrk counts it as an error (its default is 2 s)."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{DURATION_S}s", "--timeout", "10s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors on {url}:\n{out}")

    def latency(p: str) -> float:
        value, unit = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * UNITS[unit]

    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return (latency("50"), latency("99"), float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            sum(int(n) for n in errors.groups()) if errors else 0)


def _spread(values: list[float], digits: int = 2) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}..{max(values):.{digits}f})"


HAPROXY_CONFIG = """global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
    http-reuse always
frontend tenants
    bind 127.0.0.1:{port}
    default_backend engine
backend engine
    server node1 {engine}
"""


@contextmanager
def haproxy(engine_endpoint: str):
    """HAProxy on a free port in front of the engine (base URL), stopped by its pid on exit."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="ess-bench-haproxy-") as folder:
        config = Path(folder) / "haproxy.cfg"
        config.write_text(HAPROXY_CONFIG.format(port=port, engine=urlsplit(engine_endpoint).netloc))
        process = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while not listening("127.0.0.1", port):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("haproxy did not start")
                time.sleep(0.1)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(10)


def run(running: Running, internal_port: int) -> list[str]:
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
        # pinned at one node: under wrk the shard controller would rightly add nodes mid-run, and a
        # node joining (a JVM start, shards moving) lands in some rounds and not others
        api.patch(f"/clusters/{cluster_id}", json={"autoscaling": False}).raise_for_status()
        wait_for_idle_standby(running)  # the pool's refill warms a JVM up: not while measuring
        ways = {"direct": view["engine_endpoint"], "pump": view["endpoint"],
                "python": f"http://127.0.0.1:{internal_port}/{cluster_id}"}
        bulk = "".join(f'{{"index":{{"_index":"bench","_id":"d{i}"}}}}\n{{"title":"item {i}","n":{i}}}\n'
                       for i in range(DOCS))
        httpx.post(f"{ways['direct']}/_bulk?refresh=true", content=bulk,
                   headers={"content-type": "application/x-ndjson"}, timeout=60).raise_for_status()
        paths = {"_search": "/bench/_search?q=title:item&size=10", "GET _doc": "/bench/_doc/d42"}
        key = {"Authorization": f"ApiKey {tenant_key}"}
        results: dict[tuple[str, int, str], list[tuple[float, float, float]]] = {}
        try:
            with ExitStack() as stack:
                if shutil.which("haproxy"):
                    ways["haproxy"] = stack.enter_context(haproxy(ways["direct"]))
                for name, path in paths.items():
                    for connections in CONNECTIONS:
                        for way, base in ways.items():  # warm-up: caches, JIT, the pump's grant
                            wrk(base + path, key, connections)
                        for round_ in range(ROUNDS):
                            others = [way for way in ways if way != "direct"]
                            for way in ["direct", *(others if round_ % 2 == 0 else others[::-1])]:
                                results.setdefault((name, connections, way), []).append(
                                    wrk(ways[way] + path, key, connections))
        finally:
            delete_and_wait(api, cluster_id)
    lines = []
    for name, path in paths.items():
        for connections in CONNECTIONS:
            d = results[(name, connections, "direct")]
            lines.append(f"{name} at {connections} connections, median of {ROUNDS} (min..max): direct "
                         f"{_spread([r[2] for r in d], 0)}/s p50 {_spread([r[0] for r in d])} ms "
                         f"p99 {_spread([r[1] for r in d])} ms, socket errors {sum(r[3] for r in d)}")
            for way in [way for way in ("pump", "python", "haproxy") if (name, connections, way) in results]:
                g = results[(name, connections, way)]
                lines.append(
                    f"  {WAYS[way]}: "
                    f"{_spread([r[2] for r in g], 0)}/s = {_spread([gp[2] / dp[2] * 100 for dp, gp in zip(d, g)], 0)} "
                    f"% of direct; p50 {_spread([r[0] for r in g])} ms, added "
                    f"{_spread([gp[0] - dp[0] for dp, gp in zip(d, g)])} ms; p99 {_spread([r[1] for r in g])} ms, "
                    f"added {_spread([gp[1] - dp[1] for dp, gp in zip(d, g)])} ms; socket errors {sum(r[3] for r in g)}")
        lines.append(f"  the tenant policy's decision alone on {name}: {_spread(policy_cost(path))} us")
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


def main() -> None:
    if shutil.which("wrk") is None:
        print("gateway overhead: skipped, wrk is not installed (Debian: apt install wrk)")
        return
    internal_port = free_port()
    with private_platform(env={"ESS_GATEWAY_INTERNAL_PORT": str(internal_port)}) as running:
        lines = run(running, internal_port)
    print(f"== gateway overhead: {GatewaySection().pump_workers} pump(s) (ESS_GATEWAY_WORKERS), {os.cpu_count()} cores")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
