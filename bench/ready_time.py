"""Time to a usable cluster: POST /clusters -> status ready at the warm size (served by a standby
JVM of the pool) vs. a cold start of the engine JVM alone, with and without the class archive.

Rounds alternate cold (plain), cold (archive), platform, ... so drift on a busy machine hits all
alike; before each platform round the pool is let refill (not timed). Target (issue 21): platform
p50 < 1.5 s.
Run: .venv/bin/python bench/ready_time.py
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repo, not bench/

import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from bench.private_platform import (
    AUTH, WARM_MEMORY, Running, delete_and_wait, run_alone, seed_body, wait_for_idle_standby,
)
from libs.common.settings import LocalDriverSection
from services.manager.drivers.local_launch import engine_classpath, engine_command, write_node_config
from services.manager.drivers.local_jvm import class_archive
from services.manager.drivers.local_processes import PORTS_PER_SLOT, slot_free
from services.manager.planning import plan_engine_size

ROUNDS = 5
POLL_S = 0.05
TIMEOUT_S = 180
FLOOR_PORT_BASE = 38200  # below the private platform's 39200


def _free_http_base() -> int:
    for base in range(FLOOR_PORT_BASE, 39200 - PORTS_PER_SLOT + 1, PORTS_PER_SLOT):
        if slot_free("127.0.0.1", base):
            return base
    raise RuntimeError("no free port range for the floor engine")


def floor_once(archive: bool = True) -> float:
    """Spawn the engine JVM directly (with the class archive setup made, or without);
    seconds until _cluster/health is green or yellow."""
    settings = LocalDriverSection()
    size = plan_engine_size(1, "500m", "512Mi", 256, 512, os.cpu_count())
    work = Path(tempfile.mkdtemp(prefix="ess-bench-floor-"))
    home = work / "floor" / "nodes"
    base = _free_http_base()
    write_node_config(home, 1, "127.0.0.1", base, bootstrap=True, repos=[work / "snapshots"])
    command = engine_command(settings.java_bin, engine_classpath(settings.engine_home), "floor", 1, size, home, base,
                             archive=class_archive(settings.engine_home) if archive else None)
    url = f"http://127.0.0.1:{base + 1}/_cluster/health"
    process = None
    try:
        with open(work / "engine.log", "ab") as log:
            start = time.perf_counter()
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        with httpx.Client(timeout=1) as client:
            while time.perf_counter() - start < TIMEOUT_S:
                if process.poll() is not None:
                    raise RuntimeError(f"engine exited with {process.returncode}; see {work / 'engine.log'}")
                try:
                    if client.get(url).json().get("status") in ("green", "yellow"):
                        return time.perf_counter() - start
                except (httpx.HTTPError, ValueError):
                    pass
                time.sleep(POLL_S)
        raise RuntimeError(f"engine not healthy within {TIMEOUT_S} s")
    finally:
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(work, ignore_errors=True)


def platform_once(api: httpx.Client, round_no: int) -> float:
    """POST /clusters; seconds until GET says ready. Then DELETE and wait for 404."""
    start = time.perf_counter()
    answer = api.post("/clusters", json=seed_body(f"ready-{round_no}", WARM_MEMORY))
    answer.raise_for_status()
    cluster_id = answer.json()["id"]
    while True:
        answer = api.get(f"/clusters/{cluster_id}")
        answer.raise_for_status()
        view = answer.json()
        if view["status"] == "ready":
            elapsed = time.perf_counter() - start
            break
        if view["status"] == "failed":
            raise RuntimeError(f"cluster failed: {view['status_reason']}")
        if time.perf_counter() - start > TIMEOUT_S:
            raise RuntimeError(f"cluster not ready within {TIMEOUT_S} s (last: {view['status']})")
        time.sleep(POLL_S)
    delete_and_wait(api, cluster_id)  # on an error the platform's exit stops the engine instead
    return elapsed


def _spread(values: list[float]) -> str:
    return f"median {statistics.median(values):6.2f} s  min {min(values):6.2f} s  max {max(values):6.2f} s"


def run(running: Running, rounds: int = ROUNDS) -> list[str]:
    plain, archived, platform = [], [], []
    with httpx.Client(base_url=running.api, timeout=10, headers=AUTH) as api:
        for i in range(rounds):
            wait_for_idle_standby(running)  # the pool's refill warms up first: no round shares the cores with it
            plain.append(floor_once(archive=False))
            archived.append(floor_once())
            platform.append(platform_once(api, i))
            print(f"  ready round {i + 1}/{rounds}: cold {plain[-1]:.2f} s, cold with archive {archived[-1]:.2f} s, "
                  f"platform {platform[-1]:.2f} s", flush=True)
    median = statistics.median(platform)
    return [
        f"ready time, engine alone cold, {rounds} runs:                {_spread(plain)}",
        f"ready time, engine alone cold + class archive, {rounds} runs: {_spread(archived)}",
        f"ready time, platform POST->ready (warm standby), {rounds} runs: {_spread(platform)}",
        f"ready time, ratio of medians platform/cold {median / statistics.median(plain):.2f}, "
        f"archive/cold {statistics.median(archived) / statistics.median(plain):.2f}",
        f"ready time, platform median: {median:.2f} s   target < 1.5 s   {'PASS' if median < 1.5 else 'MISS'}",
    ]


def main() -> None:
    run_alone(run)


if __name__ == "__main__":
    main()
