"""What the late C2 thresholds of the local engines' JVMs (`local_jvm.LATE_C2`) buy and cost, in
the same run: an OpenSearch node (256 MiB heap, class archive, as a 512Mi cluster's) started cold
with and without them, rounds alternating. Per start: seconds to a healthy cluster and the CPU
seconds the JVM spent by then (what many wakes at once on two cores are short of); then, once warm
(two 8 s wrk runs first), `GET _doc` and `_search` throughput at 20 connections (what serving costs).
Run: .venv/bin/python bench/jit_thresholds.py [--rounds 3]   (needs wrk: apt install wrk)
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repo, not bench/

import argparse
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from bench.ready_time import _free_http_base
from bench.reporting_pipeline import cpu_seconds
from devrun.supervisor import stop_process
from libs.common.settings import LocalDriverSection
from services.manager.drivers import local_jvm
from services.manager.drivers.local_launch import KNN_PLUGIN, engine_classpath, write_node_config
from services.manager.drivers.local_processes import LAUNCHER_CLASS
from services.manager.planning import plan_engine_size

DOCS = 1000


def _wrk(url: str) -> float:
    out = subprocess.run(["wrk", "-t2", "-c20", "-d8s", url], capture_output=True, text=True, check=True).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def one(late_c2: bool) -> tuple[float, float, float, float]:
    """(seconds to healthy, CPU seconds then, GET _doc/s, _search/s) of one cold node."""
    settings = LocalDriverSection()
    size = plan_engine_size(1, "500m", "512Mi", 256, 512, os.cpu_count())
    work = Path(tempfile.mkdtemp(prefix="ess-bench-jit-"))
    home, base = work / "jit" / "nodes", _free_http_base()
    write_node_config(home, 1, "127.0.0.1", base, bootstrap=True, repos=[work / "snapshots"])
    kept = local_jvm.LATE_C2
    local_jvm.LATE_C2 = kept if late_c2 else ()
    try:
        command = local_jvm.jvm_command(settings.java_bin, engine_classpath(settings.engine_home), LAUNCHER_CLASS,
                                        "jit", 1, size, home, base, launcher_extra=("-pluginTypes", KNN_PLUGIN),
                                        archive=local_jvm.class_archive(settings.engine_home))
    finally:
        local_jvm.LATE_C2 = kept
    url = f"http://127.0.0.1:{base + 1}"
    with open(work / "engine.log", "ab") as log:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    try:
        with httpx.Client(base_url=url, timeout=5) as client:
            while True:
                if process.poll() is not None or time.perf_counter() - started > 180:
                    raise RuntimeError(f"the node did not start; see {work / 'engine.log'}")
                try:
                    if client.get("/_cluster/health").json().get("status") in ("green", "yellow"):
                        break
                except (httpx.HTTPError, ValueError):
                    pass
                time.sleep(0.05)
            healthy, cpu = time.perf_counter() - started, cpu_seconds(process.pid)
            bulk = "".join(f'{{"index":{{"_index":"t","_id":"d{i}"}}}}\n{{"n":{i},"s":"w{i % 50}"}}\n'
                           for i in range(DOCS))
            client.post("/_bulk?refresh=true", content=bulk, timeout=60,
                        headers={"content-type": "application/x-ndjson"}).raise_for_status()
        _wrk(f"{url}/t/_doc/d5")  # warm-up runs: the JIT has its hot paths by the measured ones
        _wrk(f"{url}/t/_search?q=s:w7")
        return healthy, cpu, _wrk(f"{url}/t/_doc/d5"), _wrk(f"{url}/t/_search?q=s:w7")
    finally:
        stop_process(process, 20)
        shutil.rmtree(work, ignore_errors=True)


def _spread(values: list[float], unit: str, digits: int = 2) -> str:
    return f"median {statistics.median(values):.{digits}f}{unit} ({min(values):.{digits}f}..{max(values):.{digits}f})"


def run(rounds: int) -> list[str]:
    results: dict[bool, list[tuple[float, float, float, float]]] = {True: [], False: []}
    for i in range(rounds):
        for late in (i % 2 == 0, i % 2 != 0):  # each goes first in half the rounds
            results[late].append(one(late))
            print(f"  round {i + 1}: late C2 {late}: {results[late][-1]}", flush=True)
    lines = []
    for late, name in ((False, "default thresholds"), (True, "late C2 (LATE_C2)")):
        got = results[late]
        lines.append(f"{name:<20} healthy {_spread([g[0] for g in got], ' s')}, CPU {_spread([g[1] for g in got], ' s')}, "
                     f"GET _doc {_spread([g[2] for g in got], '/s', 0)}, _search {_spread([g[3] for g in got], '/s', 0)}")
    ratio = [statistics.median(g[n] for g in results[True]) / statistics.median(g[n] for g in results[False])
             for n in range(4)]
    lines.append(f"late/default ratios of medians: healthy {ratio[0]:.2f}, CPU {ratio[1]:.2f}, GET _doc {ratio[2]:.2f}, "
                 f"_search {ratio[3]:.2f}")
    return lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    print("\n".join(run(parser.parse_args().rounds)))
