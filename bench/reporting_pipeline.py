"""The reporting pipeline with many simulated clusters: samples/s, lag and coverage.

Run: .venv/bin/python bench/reporting_pipeline.py [--clusters 1000] [--interval 10] [--seconds 60]

Starts only what reporting needs: NATS, a stand-in engine and `python -m services.reporting`.
The stand-in (this benchmark only) is an aiohttp server in its own process on 127.0.0.1 that
answers the four calls `OpenSearchEngine.stats()` makes, `GET /_cluster/health`,
`GET /_nodes/stats/jvm,os,fs,process,thread_pool,breaker`, `GET /_stats/docs,store,indexing,search` and
`GET /_nodes/os` (health also with `?level=indices`, which adds the per-index layout), with
OpenSearch 2.x-shaped bodies whose counters grow with time (whole: it ignores `filter_path`, which
a real engine applies); any other request is counted and gets a 404.
N ready cluster records, all pointing at that one endpoint (each client still has its own
connections), are written straight into the clusters KV bucket before reporting starts.

A JetStream ordered consumer on `ess.metrics.>` (stream ESS_METRICS, new messages only) takes
every sample. After a warm-up of one interval (counted from the first sample received) it
measures for `--seconds`: samples per second, the lag from `MetricsSample.taken_at` to receipt,
coverage (distinct clusters sampled in each interval-long window), the gap between successive
samples of one cluster, and the CPU and RSS of the reporting process (NATS and the stand-in for
context). At the end it reads reporting's own /metrics once (poll errors, poll duration).

Target: 1,000 clusters at a 10 s interval with lag under 1 s: p99 lag < 1 s, and every cluster
sampled in the window with no gap between its samples over the interval + 1 s. On exit, also on
Ctrl-C or SIGTERM, everything it started is stopped and its temp dir removed.
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repo, not bench/

import argparse
import asyncio
import json
import math
import random
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import httpx

from bench.private_platform import exit_on_sigterm
from devrun.supervisor import REPO, ServiceProcess, free_port, stop_all, stop_process
from devrun.nats_server import NatsServer, wait_for_port
from libs.common.metrics import NODE_STATS_METRICS

TARGET_CLUSTERS = 1000
TARGET_INTERVAL_S = 10.0
TARGET_LAG_S = 1.0
PATHS = ("/_cluster/health", f"/_nodes/stats/{NODE_STATS_METRICS}", "/_stats/docs,store,indexing,search",
         "/_nodes/os")


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else float("nan")


# -- the stand-in engine (its own process) ---------------------------------------------------------
TENANT_INDICES = ("products", "orders", "embeddings")
SYSTEM_INDICES = (".plugins-ml-config", ".opensearch-observability")
GB = 2**30


def _index_section(docs: int, store: int, indexed: int, index_ms: int, queries: int, query_ms: int) -> dict:
    return {
        "docs": {"count": docs, "deleted": docs // 50},
        "store": {"size_in_bytes": store, "reserved_in_bytes": 0},
        "indexing": {"index_total": indexed, "index_time_in_millis": index_ms, "index_current": 0,
                     "index_failed": 0, "delete_total": docs // 50, "delete_time_in_millis": docs // 400,
                     "delete_current": 0, "noop_update_total": 0, "is_throttled": False,
                     "throttle_time_in_millis": 0, "doc_status": {}},
        "search": {"open_contexts": 0, "query_total": queries, "query_time_in_millis": query_ms, "query_current": 0,
                   "concurrent_query_total": 0, "concurrent_query_time_in_millis": 0, "concurrent_query_current": 0,
                   "concurrent_avg_slice_count": 0.0, "fetch_total": queries, "fetch_time_in_millis": query_ms // 4,
                   "fetch_current": 0, "scroll_total": 0, "scroll_time_in_millis": 0, "scroll_current": 0,
                   "point_in_time_total": 0, "point_in_time_time_in_millis": 0, "point_in_time_current": 0,
                   "suggest_total": 0, "suggest_time_in_millis": 0, "suggest_current": 0,
                   "search_idle_reactivated_count_total": 0,
                   "request": {phase: {"time_in_millis": 0, "current": 0, "total": 0}
                               for phase in ("dfs_pre_query", "query", "fetch", "dfs_query", "expand",
                                             "can_match")}},
    }


def _add(a: dict, b: dict) -> dict:
    out = {}
    for key, value in a.items():
        if isinstance(value, dict):
            out[key] = _add(value, b[key])
        elif isinstance(value, bool):
            out[key] = value
        else:
            out[key] = value + b[key]
    return out


class StandIn:
    """One single-node OpenSearch 2.19 cluster whose documents and queries grow with time."""

    def __init__(self) -> None:
        self.started = time.time()
        self.node_id = "Qh3kBv0xS9mYyI2dQm1c7w"
        self.requests: dict[str, int] = defaultdict(int)  # "METHOD raw path" -> count

    def health(self, level: str = "cluster") -> dict:
        shards = len(TENANT_INDICES) + len(SYSTEM_INDICES)
        body = {"cluster_name": "ess-bench", "status": "green", "timed_out": False, "number_of_nodes": 1,
                "number_of_data_nodes": 1, "discovered_master": True, "discovered_cluster_manager": True,
                "active_primary_shards": shards, "active_shards": shards, "relocating_shards": 0,
                "initializing_shards": 0, "unassigned_shards": 0, "delayed_unassigned_shards": 0,
                "number_of_pending_tasks": 0, "number_of_in_flight_fetch": 0,
                "task_max_waiting_in_queue_millis": 0, "active_shards_percent_as_number": 100.0}
        if level in ("indices", "shards"):  # one primary, no replica: a single-node cluster stays green
            body["indices"] = {
                name: {"status": "green", "number_of_shards": 1, "number_of_replicas": 0, "active_primary_shards": 1,
                       "active_shards": 1, "relocating_shards": 0, "initializing_shards": 0, "unassigned_shards": 0}
                for name in TENANT_INDICES + SYSTEM_INDICES
            }
        return body

    def nodes_stats(self) -> dict:
        now = time.time()
        ms = int(now * 1000)
        up_ms = int((now - self.started) * 1000) + 3_600_000
        heap_max = 512 * 2**20
        heap_used = int(heap_max * (0.35 + 0.25 * random.random()))
        gcs = int(up_ms / 2000)

        def pool(used: int, peak: int, mx: int) -> dict:
            return {"used_in_bytes": used, "max_in_bytes": mx, "peak_used_in_bytes": peak, "peak_max_in_bytes": mx,
                    "last_gc_stats": {"used_in_bytes": used // 2, "max_in_bytes": mx, "usage_percent": 20}}

        disk_total = 50 * GB
        disk_free = disk_total - 12 * GB - int(now - self.started) * 4096
        node = {
            "timestamp": ms, "name": "ess-bench-0", "transport_address": "127.0.0.1:9300", "host": "127.0.0.1",
            "ip": "127.0.0.1:9300", "roles": ["cluster_manager", "data", "ingest", "remote_cluster_client"],
            "attributes": {"shard_indexing_pressure_enabled": "true"},
            "os": {"timestamp": ms, "cpu": {"percent": random.randint(1, 40),
                                            "load_average": {"1m": 0.42, "5m": 0.37, "15m": 0.31}},
                   "mem": {"total_in_bytes": 8 * GB, "free_in_bytes": 3 * GB, "used_in_bytes": 5 * GB,
                           "free_percent": 37, "used_percent": 63},
                   "swap": {"total_in_bytes": 0, "free_in_bytes": 0, "used_in_bytes": 0},
                   "cgroup": {"cpuacct": {"control_group": "/", "usage_nanos": up_ms * 10**5},
                              "cpu": {"control_group": "/", "cfs_period_micros": 100000, "cfs_quota_micros": -1,
                                      "stat": {"number_of_elapsed_periods": 0, "number_of_times_throttled": 0,
                                               "time_throttled_nanos": 0}},
                              "memory": {"control_group": "/", "limit_in_bytes": "9223372036854771712",
                                         "usage_in_bytes": str(int(1.2 * GB))}}},
            "jvm": {"timestamp": ms, "uptime_in_millis": up_ms,
                    "mem": {"heap_used_in_bytes": heap_used, "heap_used_percent": heap_used * 100 // heap_max,
                            "heap_committed_in_bytes": heap_max, "heap_max_in_bytes": heap_max,
                            "non_heap_used_in_bytes": 160 * 2**20, "non_heap_committed_in_bytes": 170 * 2**20,
                            "pools": {"young": pool(heap_used // 3, heap_max // 2, 0),
                                      "old": pool(heap_used // 2, heap_max // 2, heap_max),
                                      "survivor": pool(heap_used // 20, heap_max // 16, 0)}},
                    "threads": {"count": 61, "peak_count": 64},
                    "gc": {"collectors": {"young": {"collection_count": gcs, "collection_time_in_millis": gcs * 7},
                                          "old": {"collection_count": 0, "collection_time_in_millis": 0}}},
                    "buffer_pools": {name: {"count": 12, "used_in_bytes": 2**20, "total_capacity_in_bytes": 2**20}
                                     for name in ("mapped", "direct", "mapped - 'non-volatile memory'")},
                    "classes": {"current_loaded_count": 23014, "total_loaded_count": 23100,
                                "total_unloaded_count": 86}},
            "process": {"timestamp": ms, "open_file_descriptors": 412, "max_file_descriptors": 65535,
                        "cpu": {"percent": random.randint(0, 20), "total_in_millis": up_ms // 20},
                        "mem": {"total_virtual_in_bytes": 6 * GB}},
            "thread_pool": {name: {"threads": threads, "queue": 0, "active": 0, "rejected": 0, "largest": threads,
                                   "completed": up_ms // 100}
                            for name, threads in (("search", 2), ("write", 1), ("get", 1), ("management", 2),
                                                  ("refresh", 1), ("flush", 1), ("generic", 4), ("snapshot", 1))},
            "breakers": {name: {"limit_size_in_bytes": heap_max // 2, "limit_size": "256mb",
                                "estimated_size_in_bytes": 0, "estimated_size": "0b", "overhead": 1.0, "tripped": 0}
                         for name in ("request", "fielddata", "in_flight_requests", "parent")},
            "fs": {"timestamp": ms,
                   "total": {"total_in_bytes": disk_total, "free_in_bytes": disk_free,
                             "available_in_bytes": disk_free - GB, "cache_reserved_in_bytes": 0},
                   "data": [{"path": "/var/lib/ess/clusters/bench/data/nodes/0", "mount": "/ (overlay)",
                             "type": "overlay", "total_in_bytes": disk_total, "free_in_bytes": disk_free,
                             "available_in_bytes": disk_free - GB, "cache_reserved_in_bytes": 0}],
                   "io_stats": {"devices": [{"device_name": "vda1", "operations": up_ms // 10,
                                             "read_operations": up_ms // 40, "write_operations": up_ms // 13,
                                             "read_kilobytes": up_ms, "write_kilobytes": up_ms * 3,
                                             "read_time": up_ms // 90, "write_time": up_ms // 30,
                                             "queue_size": 0, "io_time_in_millis": up_ms // 20}],
                                "total": {"operations": up_ms // 10, "read_operations": up_ms // 40,
                                          "write_operations": up_ms // 13, "read_kilobytes": up_ms,
                                          "write_kilobytes": up_ms * 3, "read_time": up_ms // 90,
                                          "write_time": up_ms // 30, "queue_size": 0,
                                          "io_time_in_millis": up_ms // 20}}},
        }
        return {"_nodes": {"total": 1, "successful": 1, "failed": 0}, "cluster_name": "ess-bench",
                "nodes": {self.node_id: node}}

    def nodes_info(self) -> dict:
        os_info = {"refresh_interval_in_millis": 1000, "name": "Linux", "pretty_name": "Debian GNU/Linux 12",
                   "arch": "amd64", "version": "6.1.0", "available_processors": 1, "allocated_processors": 1}
        return {"_nodes": {"total": 1, "successful": 1, "failed": 0}, "cluster_name": "ess-bench",
                "nodes": {self.node_id: {"name": "ess-bench-0", "version": "2.19.1", "os": os_info}}}

    def indices_stats(self) -> dict:
        t = time.time() - self.started
        indices = {}
        for n, name in enumerate(TENANT_INDICES + SYSTEM_INDICES):
            system = name.startswith(".")
            rate, qrate = (0, 0.1) if system else (20 * (n + 1), 5 * (n + 2))
            docs = (5 if system else 100_000 * (n + 1)) + int(rate * t)
            indexed, queries = docs + 1000 * n, 50_000 + int(qrate * t)
            primaries = _index_section(docs, docs * 900, indexed, indexed // 3, queries, queries * 2)
            # one replica on the single node is unassigned; total == primaries
            indices[name] = {"uuid": f"u{n:02d}Zb1Y8SCyQ1a2fgh3ijkl", "primaries": primaries,
                             "total": _add(primaries, _index_section(0, 0, 0, 0, 0, 0))}
        first, *rest = indices.values()
        everything = {"primaries": first["primaries"], "total": first["total"]}
        for body in rest:
            everything = {"primaries": _add(everything["primaries"], body["primaries"]),
                          "total": _add(everything["total"], body["total"])}
        shards = len(indices)
        return {"_shards": {"total": shards, "successful": shards, "failed": 0}, "_all": everything,
                "indices": indices}


def serve_stand_in(port: int) -> None:
    """The stand-in's process: aiohttp on uvloop, 127.0.0.1:port, until SIGTERM."""
    from aiohttp import web

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    engine = StandIn()
    answers = {PATHS[0]: engine.health, PATHS[1]: engine.nodes_stats, PATHS[2]: engine.indices_stats,
               PATHS[3]: engine.nodes_info}

    async def handle(request: web.Request) -> web.Response:
        answer = answers.get(request.path) if request.method == "GET" else None
        engine.requests[f"{request.method} {request.raw_path}{'' if answer else ' (unknown: 404)'}"] += 1
        if answer is None:
            error = {"type": "bench_unknown_request", "reason": request.path}
            return web.json_response({"error": error, "status": 404}, status=404)
        body = answer(request.query.get("level", "cluster")) if request.path == PATHS[0] else answer()
        return web.Response(body=json.dumps(body).encode(), content_type="application/json")

    def report_requests(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once, however often we are asked to stop
        print(f"stand-in answered: {dict(engine.requests)}", file=sys.stderr, flush=True)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, report_requests)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, handle_signals=False,
                backlog=4096)


def payload_sizes() -> list[int]:
    engine = StandIn()
    return [len(json.dumps(f()).encode()) for f in (lambda: engine.health("indices"), engine.nodes_stats,
                                                     engine.indices_stats, engine.nodes_info)]


# -- /proc readings ------------------------------------------------------------------------------------
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# -- seeding the clusters bucket ---------------------------------------------------------------------
async def seed_clusters(nats_url: str, endpoint: str, count: int) -> None:
    from libs.common.models import ClusterRecord, ClusterSpec, ClusterStatus
    from libs.common.service import build_broker
    from libs.common.settings import ENGINE_VERSION, NatsSection
    from libs.common.store import ClusterStore

    settings = NatsSection(nats_url=nats_url)
    broker = build_broker(settings)
    await broker.connect()
    try:
        store = await ClusterStore.open(broker, replicas=1)
        spec = ClusterSpec(replicas=1, cpu="500m", memory="512Mi", storage="5Gi", engine="opensearch",
                           version=ENGINE_VERSION)

        async def one(i: int) -> None:
            await store.create(ClusterRecord(
                id=f"c{i:06d}bench", tenant_org_id=f"bench{i:06d}", user="bench", service_name=f"svc{i}",
                spec=spec, generation=1, observed_generation=1, status=ClusterStatus.READY,
                status_reason="stand-in engine", health="green", nodes=1, endpoint=endpoint,
            ))

        for start in range(0, count, 100):
            await asyncio.gather(*(one(i) for i in range(start, min(count, start + 100))))
    finally:
        await broker.stop()


# -- measuring ---------------------------------------------------------------------------------------
async def measure(nats_url: str, interval: float, seconds: float, pids: dict[str, int]) -> dict:
    import nats
    from nats.js.api import DeliverPolicy

    from libs.common import subjects

    received: list[tuple[float, float, str]] = []  # (receipt, taken_at, cluster id), all samples
    first = asyncio.get_running_loop().create_future()

    async def on_sample(msg) -> None:
        now = time.time()
        body = json.loads(msg.data)
        received.append((now, datetime.fromisoformat(body["taken_at"]).timestamp(), body["cluster_id"]))
        if not first.done():
            first.set_result(now)

    async def quiet(exc: Exception) -> None:  # a Ctrl-C stops NATS too; the cleanup reports what matters
        pass

    nc = await nats.connect(nats_url, error_cb=quiet, max_reconnect_attempts=3, reconnect_time_wait=0.5)
    try:
        js = nc.jetstream()
        sub = await js.subscribe("ess.metrics.>", stream=subjects.METRICS_STREAM, ordered_consumer=True,
                                 deliver_policy=DeliverPolicy.NEW, cb=on_sample, pending_msgs_limit=-1,
                                 pending_bytes_limit=-1)
        first_at = await asyncio.wait_for(first, 120)
        print(f"  first sample after subscribing; warm-up {interval:.0f} s, then {seconds:.0f} s measured", flush=True)
        await asyncio.sleep(max(0.0, first_at + interval - time.time()))
        start = time.time()
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self0 = time.process_time()
        rss: dict[str, list[float]] = defaultdict(list)
        while (left := start + seconds - time.time()) > 0:
            for name, pid in pids.items():
                rss[name].append(rss_mb(pid))
            await asyncio.sleep(min(1.0, left))
        end = time.time()
        cpu = {name: 100 * (cpu_seconds(pid) - cpu0[name]) / (end - start) for name, pid in pids.items()}
        cpu["bench client"] = 100 * (time.process_time() - self0) / (end - start)
        await asyncio.sleep(min(5.0, interval))  # samples taken inside the window may still be on their way
        await sub.unsubscribe()
    finally:
        await nc.close()
    return {"received": received, "start": start, "end": end, "cpu": cpu, "rss": rss}


def poll_figures(port: int) -> dict:
    """Reporting's own counters from /metrics: poll errors and the poll-duration histogram."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=60).text
    errors, buckets, count, total = 0.0, {}, 0.0, 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ess_reporting_poll_errors_total":
                errors += sample.value
            elif sample.name == "ess_reporting_poll_duration_seconds_bucket":
                buckets[float(sample.labels["le"])] = sample.value
            elif sample.name == "ess_reporting_poll_duration_seconds_count":
                count = sample.value
            elif sample.name == "ess_reporting_poll_duration_seconds_sum":
                total = sample.value

    def quantile(q: float) -> str:
        for le, c in sorted(buckets.items()):
            if c >= q * count:
                return f"<= {le * 1000:.0f} ms" if le != float("inf") else "> 10 s"
        return "n/a"

    return {"errors": int(errors), "polls": int(count), "mean_ms": 1000 * total / count if count else float("nan"),
            "p50": quantile(0.5), "p99": quantile(0.99)}


def report(result: dict, clusters: int, interval: float, seconds: float, port: int, polls: dict) -> list[str]:
    start, end = result["start"], result["end"]
    window = [r for r in result["received"] if start <= r[1] < end]  # samples taken inside the window
    lags = sorted(r[0] - r[1] for r in window)
    per_second = [0] * int(seconds)
    for receipt, _, _ in window:
        slot = int(receipt - start)
        if 0 <= slot < len(per_second):
            per_second[slot] += 1
    n_windows = max(1, int(seconds // interval))
    coverage = []
    for w in range(n_windows):
        lo, hi = start + w * interval, start + (w + 1) * interval
        coverage.append(len({c for _, taken, c in window if lo <= taken < hi}))
    by_cluster: dict[str, list[float]] = defaultdict(list)
    for _, taken, c in sorted(result["received"], key=lambda r: r[1]):
        by_cluster[c].append(taken)
    gaps = sorted(b - a for times in by_cluster.values() for a, b in zip(times, times[1:])
                  if start <= b < end)
    # every cluster sampled, and never left longer than an interval (plus 1 s of jitter) without a sample
    def never_late(times: list[float]) -> bool:
        inside = [t for t in times if t < end]
        stamps = inside + [end]  # the end of the window counts: a cluster that stopped being sampled is late
        return any(start <= t for t in inside) and all(
            b - a <= interval + TARGET_LAG_S for a, b in zip(stamps, stamps[1:]) if b >= start)

    covered = sum(1 for times in by_cluster.values() if never_late(times))
    stopped = sum(1 for times in by_cluster.values() if max(times) < end - interval - TARGET_LAG_S)
    expected = clusters / interval
    rate = len(window) / (end - start)
    p99 = percentile(lags, 99)
    full = covered == clusters
    sizes = payload_sizes()
    cpu, rss = result["cpu"], result["rss"]
    ok = clusters >= TARGET_CLUSTERS and interval <= TARGET_INTERVAL_S and p99 < TARGET_LAG_S and full
    lines = [
        f"reporting pipeline: {clusters} clusters, {interval:g} s interval, {seconds:g} s measured after "
        f"{interval:g} s warm-up; stand-in engine: one aiohttp process, one endpoint 127.0.0.1:{port} "
        f"shared by all clusters (each cluster's client has its own connections), 1 node, "
        f"{len(TENANT_INDICES)}+{len(SYSTEM_INDICES)} indices, bodies {'+'.join(map(str, sizes))} B per poll",
        f"samples/s: {rate:.1f} (expected {expected:.1f}); per 1 s bin median {statistics.median(per_second):.0f}, "
        f"min {min(per_second)}, max {max(per_second)}; {len(window)} samples taken in the window",
        f"lag taken_at -> receipt: median {percentile(lags, 50) * 1000:.0f} ms  "
        f"p90 {percentile(lags, 90) * 1000:.0f} ms  p99 {p99 * 1000:.0f} ms  "
        f"max {lags[-1] * 1000 if lags else float('nan'):.0f} ms",
        f"coverage: clusters sampled per {interval:g} s window: {', '.join(map(str, coverage))} of {clusters} "
        f"(min {min(coverage)}, median {statistics.median(coverage):.0f}); "
        f"{len(by_cluster)} distinct clusters seen in all; {covered} of {clusters} sampled in the window with no gap "
        f"over {interval + TARGET_LAG_S:g} s; {stopped} stopped being sampled (none in the last "
        f"{interval + TARGET_LAG_S:g} s)",
        f"gap between successive samples of one cluster: median {percentile(gaps, 50):.2f} s  "
        f"p99 {percentile(gaps, 99):.2f} s  max {gaps[-1] if gaps else float('nan'):.2f} s",
        f"reporting process: CPU {cpu['reporting']:.0f}% of one core (window average); RSS median "
        f"{statistics.median(rss['reporting']):.0f} MB, max {max(rss['reporting']):.0f} MB",
        f"others, CPU % of one core: NATS {cpu['nats']:.0f}%, stand-in {cpu['stand-in']:.0f}%, "
        f"bench client {cpu['bench client']:.0f}% ({os.cpu_count()} cores on this machine)",
        f"reporting's own counters since start: {polls['polls']} polls, {polls['errors']} poll errors, "
        f"poll duration mean {polls['mean_ms']:.0f} ms, p50 {polls['p50']}, p99 {polls['p99']}",
        f"target 1,000 clusters at a 10 s interval with lag under 1 s (p99 lag < 1 s; every cluster sampled, "
        f"no gap over interval + 1 s): {'PASS' if ok else 'MISS'}"
        + ("" if clusters >= TARGET_CLUSTERS and interval <= TARGET_INTERVAL_S else
           f"  (this run: {clusters} clusters at {interval:g} s, smaller than the target)"),
    ]
    return lines


def log_summary(log: Path) -> list[str]:
    """What reporting complained about: counts of its warning and error events and of exceptions."""
    counts: dict[str, int] = defaultdict(int)
    for line in log.read_text(errors="replace").splitlines():
        if "[warning  ]" in line or "[error    ]" in line or "[critical ]" in line:
            counts[line.split("]", 1)[1].strip().split("  ")[0][:80]] += 1
        elif line.startswith(("Traceback", "Task exception")) or (line[:1].isalpha() and "Error" in line.split(":")[0]):
            counts[line[:100]] += 1
    return [f"reporting log: {n} x {what}" for what, n in sorted(counts.items(), key=lambda kv: -kv[1])[:8]] or [
        "reporting log: no warnings or errors"]


def run(clusters: int, interval: float, seconds: float, keep_logs: Path | None = None) -> list[str]:
    state = Path(tempfile.mkdtemp(prefix="ess-bench-reporting-")).resolve()
    logs = state / "logs"
    logs.mkdir()
    nats_url = f"nats://127.0.0.1:{free_port()}"
    reporting_port = free_port()
    stand_in_port = free_port()
    nats = NatsServer(nats_url, state / "nats", logs / "nats.log")
    processes: dict[str, subprocess.Popen] = {}
    previous_sigterm = signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        nats.start()
        with open(logs / "stand-in.log", "ab") as log:
            processes["stand-in"] = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--serve-stand-in", str(stand_in_port)], cwd=REPO,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, process_group=0)
        wait_for_port("127.0.0.1", stand_in_port, 15)
        started = time.perf_counter()
        asyncio.run(seed_clusters(nats_url, f"http://127.0.0.1:{stand_in_port}", clusters))
        print(f"  {clusters} ready cluster records written in {time.perf_counter() - started:.1f} s", flush=True)
        env = {"ESS_NATS_URL": nats_url, "ESS_REPORTING_PORT": str(reporting_port),
               "ESS_POLL_INTERVAL_S": str(interval), "ESS_LOG_LEVEL": "WARNING", "ESS_STATE_DIR": str(state)}
        reporting = ServiceProcess("services.reporting", env, reporting_port, logs)
        reporting.spawn()
        processes["reporting"] = reporting.process
        reporting.wait_ready()
        pids = {"reporting": processes["reporting"].pid, "nats": nats.process.pid,
                "stand-in": processes["stand-in"].pid}
        result = asyncio.run(measure(nats_url, interval, seconds, pids))
        polls = poll_figures(reporting_port)
        lines = report(result, clusters, interval, seconds, stand_in_port, polls)
        lines += log_summary(logs / "reporting.log")
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        stop_process(processes["stand-in"])
        lines += [line for line in (logs / "stand-in.log").read_text(errors="replace").splitlines()
                  if line.startswith("stand-in answered")]
        return lines
    finally:
        previous_sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip cleanup
        try:
            stop_all(processes.values())
            nats.stop()
            if keep_logs:
                shutil.copytree(logs, keep_logs, dirs_exist_ok=True)
            shutil.rmtree(state, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, previous_sigint)
            signal.signal(signal.SIGTERM, previous_sigterm)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-stand-in":
        serve_stand_in(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clusters", type=int, default=TARGET_CLUSTERS)
    parser.add_argument("--interval", type=float, default=TARGET_INTERVAL_S, help="poll interval, seconds")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds after the warm-up")
    parser.add_argument("--keep-logs", type=Path, metavar="DIR", help="copy the service logs here before cleanup")
    args = parser.parse_args()
    try:
        lines = run(args.clusters, args.interval, args.seconds, keep_logs=args.keep_logs)
    except KeyboardInterrupt:
        print("interrupted: everything started was stopped and the temp dir removed", file=sys.stderr)
        raise SystemExit(130)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
