"""All benchmarks: memory (idle), GET latency, ready time, snapshot and restore throughput and
clone time in one private platform, then the reporting pipeline (1,000 simulated clusters) with
its own NATS and reporting process, and shard planning.

Run: make bench   or   .venv/bin/python bench/run_all.py
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repo, not bench/

import datetime
import time

from bench import (
    clone_ready, get_latency, ready_time, reporting_pipeline, service_memory, shard_planning, snapshot_throughput,
)
from bench.private_platform import private_platform


def main() -> None:
    started = time.perf_counter()
    summary: list[str] = []
    with private_platform() as running:
        print(f"private platform up: API {running.api}, services {running.pids}", flush=True)
        for name, bench in (("service memory", service_memory), ("GET latency", get_latency),
                            ("ready time", ready_time), ("snapshot throughput", snapshot_throughput),
                            ("clone ready", clone_ready)):
            print(f"-- {name}", flush=True)
            lines = bench.run(running)
            print("\n".join(lines), flush=True)
            summary += lines
    # after the platform is gone: it brings its own NATS, reporting and stand-in engine
    print("-- reporting pipeline", flush=True)
    lines = reporting_pipeline.run(reporting_pipeline.TARGET_CLUSTERS, reporting_pipeline.TARGET_INTERVAL_S, 60.0)
    print("\n".join(lines), flush=True)
    summary += lines
    print("-- shard planning", flush=True)
    lines = [shard_planning.measure(10_000, 5)]
    print("\n".join(lines), flush=True)
    summary += lines
    print()
    print(f"== es-serverless benchmarks, {datetime.datetime.now():%Y-%m-%d %H:%M}, "
          f"{os.cpu_count()} cores, {time.perf_counter() - started:.0f} s ==")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
