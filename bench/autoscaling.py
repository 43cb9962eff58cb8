"""Autoscaling follows each tenant's own load, never the host's (issue 22).

Two tenants on one machine, one cluster each (1 node, 512 MiB, max 3 nodes, an index of DOCS
small documents), the shard controller at the platform's thresholds with a shorter window:
  1. busy loops of a third process on every core for three sustain windows: neither scales;
  2. tenant A gets a sustained search load through the gateway (--clients closed-loop searches,
     enough to queue them on its node): it scales out, tenant B does not;
  3. the load stops: A scales back in.
Steps 2 and 3 run --rounds times. Prints the node counts over time as they go, then every plan
and node-count request of both clusters with its reason, the search latency (client side, and the
engine's mean query time between polls), queues and rejections before and after the scale-out,
and how long each step took: median and min..max over the rounds.

Run: .venv/bin/python bench/autoscaling.py [--rounds 2] [--clients 24]   (about 6 min a round)
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repo, not bench/

import argparse
import asyncio
import math
import re
import statistics
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx

from bench.chaos_faults import CpuHogs, host_busy_between, host_cpu_ticks
from bench.private_platform import AUTH, private_platform
from cli.output import event_text

# a 10 s window; the cool-down outlasts the load kept on after a scale-out, so one node is added a round
COOLDOWN_S = 60.0
POLICY = {"ESS_POLL_INTERVAL_S": "2", "ESS_SUSTAIN_SAMPLES": "5", "ESS_COOLDOWN_S": f"{COOLDOWN_S:g}"}
WINDOW_S = 10.0
DOCS = 50_000
MAX_NODES = 3
# a search whose work is the engine's (about 18 ms of aggregation over every document, never from the
# request cache), so the load queues at the engine rather than in this script or the gateway
SEARCH = {"size": 0, "query": {"match": {"title": "item"}},
          "aggs": {"h": {"histogram": {"field": "n", "interval": 100},
                         "aggs": {"c": {"cardinality": {"field": "tag"}}}}}}
SCALE_OUT_TIMEOUT_S, SCALE_IN_TIMEOUT_S = 300.0, 600.0


@dataclass
class Row:
    at: float
    nodes: dict[str, int]
    figures: dict[str, dict[str, float]]  # cluster -> metric -> value, from reporting's /metrics
    host_busy: float


@dataclass
class Watch:
    """Node counts and reporting's figures of both clusters every second; a line every 5 s."""

    api: httpx.Client
    metrics_url: str
    clusters: dict[str, str]  # name -> cluster id
    started: float
    rows: list[Row] = field(default_factory=list)
    phase: str = "setup"
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        ticks, printed = host_cpu_ticks(), 0.0
        while not self._stop.wait(1.0):
            now_ticks = host_cpu_ticks()
            nodes = {name: self.api.get(f"/clusters/{cid}").json().get("nodes", 0)
                     for name, cid in self.clusters.items()}
            text = httpx.get(self.metrics_url, timeout=5).text
            figures = {name: scrape(text, cid) for name, cid in self.clusters.items()}
            row = Row(time.monotonic(), nodes, figures, host_busy_between(ticks, now_ticks))
            ticks = now_ticks
            self.rows.append(row)
            if row.at - printed >= 5:
                printed = row.at
                print(f"  t+{row.at - self.started:5.0f}s  {self.phase:<14} " + "  ".join(
                    f"{name}: {row.nodes[name]} node(s), CPU {fmt(figures[name].get('cpu'), '%')}, queue "
                    f"{fmt(figures[name].get('queue'))}, latency {fmt(figures[name].get('latency_ms'), 'ms')}"
                    for name in self.clusters) + f"   host busy {row.host_busy:.0%}", flush=True)

    def stop(self) -> None:
        self._stop.set()


def fmt(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.0f}{(' ' + unit) if unit else ''}"


SIGNALS = {"ess_cluster_engine_cpu_percent": "cpu", "ess_cluster_search_latency_seconds": "latency_ms",
           "ess_cluster_thread_pool_queue": "queue", "ess_cluster_thread_pool_rejected_total": "rejected",
           "ess_cluster_circuit_breaker_tripped_total": "tripped"}


def scrape(text: str, cluster_id: str) -> dict[str, float]:
    """The signals reporting exposes for one cluster (of the pools, the search pool's)."""
    found: dict[str, float] = {}
    for name, labels, value in re.findall(r"^(ess_cluster_\w+)\{([^}]*)\} (\S+)$", text, re.M):
        tags = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if name in SIGNALS and tags.get("cluster") == cluster_id and tags.get("pool", "search") == "search":
            found[SIGNALS[name]] = float(value) * (1000 if name.endswith("_seconds") else 1)
    return found


class SearchLoad:
    """`clients` closed-loop searches through the gateway with the tenant's key, each timed."""

    def __init__(self, endpoint: str, key: str, clients: int):
        self.url = f"{endpoint}/books/_search?request_cache=false"
        self.key, self.clients = key, clients
        self.results: list[tuple[float, float, str]] = []  # (ended at, seconds, "ok" or what refused it)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    async def _run(self) -> None:
        async with httpx.AsyncClient(headers={"Authorization": f"ApiKey {self.key}"}, timeout=60,
                                     limits=httpx.Limits(max_connections=self.clients)) as client:
            await asyncio.gather(*(self._loop(client) for _ in range(self.clients)))

    async def _loop(self, client: httpx.AsyncClient) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                answer = await client.post(self.url, json=SEARCH)
                outcome = "ok" if answer.status_code == 200 else f"{answer.status_code} {error_type(answer)}"
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            self.results.append((time.monotonic(), time.monotonic() - started, outcome))

    def between(self, start: float, end: float) -> dict:
        """Answered per second, latency quantiles (ms) and what refused the rest, over a span."""
        done = [(s, outcome) for at, s, outcome in self.results if start <= at < end]
        ok = sorted(s for s, outcome in done if outcome == "ok")
        q = statistics.quantiles(ok, n=100) if len(ok) > 1 else [ok[0] if ok else math.nan] * 99
        return {"rate": len(ok) / (end - start), "p50": q[49] * 1000, "p90": q[89] * 1000, "p99": q[98] * 1000,
                "sent": len(done), "refused": Counter(outcome for _, outcome in done if outcome != "ok")}


def told(f: dict) -> str:
    refused = sum(f["refused"].values())
    why = ", ".join(f"{n} {what}" for what, n in f["refused"].most_common())
    return (f"{f['rate']:.0f}/s answered, latency p50 {f['p50']:.0f} ms p90 {f['p90']:.0f} ms p99 {f['p99']:.0f} ms; "
            f"refused {refused} of {f['sent']}" + (f" ({why})" if why else ""))


def error_type(answer: httpx.Response) -> str:
    try:
        error = answer.json().get("error")
    except ValueError:
        return "(not JSON)"
    return error.get("type", "?") if isinstance(error, dict) else str(error)


def engine_view(rows: list[Row], name: str, start: float, end: float) -> str:
    """The engine's side over a span: median (min..max) of CPU, queue and mean query time; refusals."""
    picked = [r.figures[name] for r in rows if start <= r.at < end]

    def spread(key: str, unit: str) -> str:
        values = [f[key] for f in picked if key in f]
        return f"{statistics.median(values):.0f} ({min(values):.0f}..{max(values):.0f}) {unit}" if values else "-"

    def growth(key: str) -> str:
        values = [f[key] for f in picked if key in f]
        return f"{max(0, int(values[-1] - values[0]))}" if values else "-"

    return (f"engine: CPU {spread('cpu', '%')}, search queue {spread('queue', '')}, query time "
            f"{spread('latency_ms', 'ms')}; {growth('rejected')} searches rejected by the pool, "
            f"{growth('tripped')} requests refused for memory")


def wait_nodes(watch: Watch, name: str, nodes: int, timeout_s: float) -> float | None:
    """Seconds until the cluster shows `nodes` (None: not within the timeout)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if watch.rows and watch.rows[-1].at > started and watch.rows[-1].nodes[name] == nodes:
            return watch.rows[-1].at - started
        time.sleep(0.5)
    return None


def make_cluster(api: httpx.Client, name: str) -> tuple[str, str, str]:
    """A tenant with a key and a ready cluster holding the index; (cluster id, endpoint, key)."""
    tenant = f"tenant-{name.lower()}-{uuid.uuid4().hex[:6]}"
    api.post("/tenants", json={"tenant_org_id": tenant}).raise_for_status()
    key = api.post(f"/tenants/{tenant}/keys", json={}).json()["key"]
    body = {"tenant_org_id": tenant, "user": "bench", "service_name": "search", "replicas": 1, "cpu": "500m",
            "memory": "512Mi", "storage": "5Gi", "hibernate_after_s": 0}
    cluster_id = api.post("/clusters", json=body).json()["id"]
    api.patch(f"/clusters/{cluster_id}", json={"max_nodes": MAX_NODES}).raise_for_status()
    deadline = time.monotonic() + 180
    while (view := api.get(f"/clusters/{cluster_id}").json())["status"] != "ready":
        if time.monotonic() > deadline:
            raise RuntimeError(f"cluster {cluster_id} not ready: {view.get('status_reason')}")
        time.sleep(0.5)
    with httpx.Client(headers={"Authorization": f"ApiKey {key}"}, timeout=120) as gateway:
        mappings = {"properties": {"title": {"type": "text"}, "tag": {"type": "keyword"}, "n": {"type": "integer"}}}
        gateway.put(f"{view['endpoint']}/books", json={"settings": {"number_of_shards": 1, "number_of_replicas": 0},
                                                       "mappings": mappings}).raise_for_status()
        for start in range(0, DOCS, 10_000):
            lines = "".join(f'{{"index":{{"_id":"d{i}"}}}}\n{{"title":"item {i}","tag":"t{i % 997}","n":{i}}}\n'
                            for i in range(start, start + 10_000))
            gateway.post(f"{view['endpoint']}/books/_bulk", content=lines,
                         headers={"content-type": "application/x-ndjson"}).raise_for_status()
        gateway.post(f"{view['endpoint']}/books/_refresh").raise_for_status()
    return cluster_id, view["endpoint"], key


def wait_idle(api: httpx.Client, cluster_id: str, timeout_s: float = 180) -> None:
    """Until the controller has seen a whole window without a request (the bulk load is over)."""
    deadline = time.monotonic() + timeout_s
    while not ((api.get(f"/clusters/{cluster_id}/plan").json().get("plan") or {}).get("reason", "")
               .startswith("no searches or writes")):
        if time.monotonic() > deadline:
            raise RuntimeError(f"cluster {cluster_id} not idle after {timeout_s:.0f} s")
        time.sleep(1)


def decisions(api: httpx.Client, cluster_id: str) -> list[str]:
    """Every plan and node-count request of the cluster with its reason, as `ess clusters events` says it."""
    events = api.get(f"/clusters/{cluster_id}/events", params={"limit": 1000}).json()["events"]
    return [f"{e['occurred_at'][11:19]} {e['kind']:<5} {event_text(e)}" for e in events
            if e["kind"] in ("plan", "scale")]


def spread(values: list[float | None], unit: str) -> str:
    """Median (min..max) over the rounds; a step that never came is counted out."""
    known = [v for v in values if v is not None]
    if not known:
        return "never"
    told = f"median {statistics.median(known):.0f}{unit} ({min(known):.0f}..{max(known):.0f})"
    return told + (f", {len(known)} of {len(values)} rounds" if len(known) < len(values) else "")


def run(rounds: int, clients: int) -> list[str]:
    lines = [f"== autoscaling, {os.cpu_count()} cores, window {WINDOW_S:g} s ({POLICY}), {rounds} round(s), "
             f"{clients} search clients, {DOCS} documents per cluster =="]
    with private_platform(env={**POLICY, "ESS_HIBERNATE_AFTER_S": "0"}) as running, \
            httpx.Client(base_url=running.api, headers=AUTH, timeout=30) as api:
        print(lines[0], flush=True)
        made = {name: make_cluster(api, name) for name in ("A", "B")}
        reporting = running.supervisor.services["reporting"].port
        watch = Watch(api, f"http://127.0.0.1:{reporting}/metrics", {n: m[0] for n, m in made.items()},
                      time.monotonic())
        threading.Thread(target=watch.run, daemon=True).start()
        try:
            # 1. a busy host alone: neither tenant sends anything
            for cluster_id, _, _ in made.values():
                wait_idle(api, cluster_id)
            watch.phase = "host busy"
            hogs = CpuHogs(os.cpu_count() or 1, seconds=3 * WINDOW_S + 30)
            hogged = time.monotonic()
            try:
                time.sleep(3 * WINDOW_S + 5)
            finally:
                hogs.stop()
            busy_rows = [r for r in watch.rows if r.at >= hogged]
            lines.append(f"host busy: busy loops on {os.cpu_count()} cores for {time.monotonic() - hogged:.0f} s, "
                         f"host busy {statistics.median(r.host_busy for r in busy_rows):.0%} (median); nodes A "
                         f"{max(r.nodes['A'] for r in busy_rows)}, B {max(r.nodes['B'] for r in busy_rows)} at most")
            outs, ins, spans = [], [], []
            for round_no in range(1, rounds + 1):
                # 2. tenant A's own load
                watch.phase = f"A load #{round_no}"
                load = SearchLoad(made["A"][1], made["A"][2], clients)
                began = time.monotonic()
                load.start()
                outs.append(wait_nodes(watch, "A", 2, SCALE_OUT_TIMEOUT_S))
                scaled = time.monotonic()
                time.sleep(3 * WINDOW_S)  # the load goes on at two nodes, to compare
                load.stop()
                stopped = time.monotonic()
                before, after = load.between(began, scaled), load.between(scaled, stopped)
                spans.append((before, after))
                lines += [f"round {round_no}: A scaled out after {fmt(outs[-1], 's')} of load",
                          f"  before (load, 1 node): client {told(before)}",
                          f"    {engine_view(watch.rows, 'A', began, scaled)}",
                          f"  after (load, {watch.rows[-1].nodes['A']} nodes): client {told(after)}",
                          f"    {engine_view(watch.rows, 'A', scaled, stopped)}"]
                # 3. the load is gone
                watch.phase = f"A quiet #{round_no}"
                ins.append(wait_nodes(watch, "A", 1, SCALE_IN_TIMEOUT_S))
                lines.append(f"  A back to 1 node {fmt(ins[-1], 's')} after the load stopped; B at most "
                             f"{max(r.nodes['B'] for r in watch.rows if r.at >= began)} node(s) meanwhile")
                time.sleep(COOLDOWN_S)  # the next round starts out of the cool-down of this scale-in
        finally:
            watch.stop()
        lines += [f"scale-out after the load began: {spread(outs, ' s')}; "
                  f"scale-in after it stopped: {spread(ins, ' s')}",
                  f"B's nodes over the whole run: at most {max(r.nodes['B'] for r in watch.rows)}"]
        for name, pick, unit in (("answered", lambda f: f["rate"], "/s"), ("latency p50", lambda f: f["p50"], " ms"),
                                 ("latency p99", lambda f: f["p99"], " ms"),
                                 ("refused", lambda f: 100 * sum(f["refused"].values()) / max(f["sent"], 1), " %")):
            lines.append(f"A's clients, {name}: before the scale-out {spread([pick(b) for b, _ in spans], unit)}; "
                         f"after {spread([pick(a) for _, a in spans], unit)}")
        for name, (cluster_id, _, _) in made.items():
            lines.append(f"decisions of {name} ({cluster_id}):")
            lines += [f"  {line}" for line in decisions(api, cluster_id)]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=24)
    args = parser.parse_args()
    print("\n".join(run(args.rounds, args.clients)))


if __name__ == "__main__":
    main()
