"""Cold start of each local engine and version, in the same run, with and without what setup
made to speed it (the class-data-sharing archive; OpenSearch 3: the JDK's AOT cache): a one-node
cluster started by the local driver (as `make up` starts it, 512 MiB heap) until
`/_cluster/health` is green, then the node's RSS. Each round starts every engine, version and
way once, so load on the machine falls on all alike. Each start has a fresh state directory (no
data). Only measures and prints: median and spread.

Run: .venv/bin/python bench/engine_cold_start.py [--rounds 5]
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repo, not bench/

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from libs.common.models import ClusterRecord, ClusterSpec
from libs.common.settings import (
    ELASTICSEARCH819_VERSION, ELASTICSEARCH_VERSION, ENGINE_VERSION, OPENSEARCH3_VERSION, LocalDriverSection,
)
from devrun.engine_setup import install_elasticsearch, install_elasticsearch819, install_engine, install_opensearch3
from services.manager.drivers.local import LocalDriver
from services.manager.drivers.local_launch import opensearch3_java
from services.manager.planning import EngineSize

VERSIONS = [("opensearch", ENGINE_VERSION), ("opensearch", OPENSEARCH3_VERSION), ("elasticsearch", ELASTICSEARCH_VERSION),
            ("elasticsearch", ELASTICSEARCH819_VERSION)]
SIZE = EngineSize(nodes=1, heap_mb=512, processors=1)


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _one(engine: str, version: str, base: LocalDriverSection) -> tuple[float, float]:
    """Seconds from start to green, and the node's RSS then (MiB)."""
    settings = base.model_copy(update={"state_dir": Path(tempfile.mkdtemp(prefix="ess-cold-")),
                                       "local_port_base": 33200, "warm_engines": 0})
    driver = LocalDriver(settings)
    record = ClusterRecord(id=f"cold{engine[:2]}", tenant_org_id="bench", user="bench", service_name="cold",
                           spec=ClusterSpec(replicas=1, cpu="1", memory="1Gi", storage="1Gi", engine=engine,
                                            version=version))
    started = time.perf_counter()
    await driver.start(record, SIZE)
    try:
        while (await driver.observe(record.id)).health != "green":
            if time.perf_counter() - started > 300:
                raise RuntimeError(f"{engine} not green within 300 s; see {settings.clusters_dir}")
            await asyncio.sleep(0.1)
        elapsed = time.perf_counter() - started
        [node] = driver._running(record.id).values()
        return elapsed, _rss_mib(node.pid)
    finally:
        await driver.remove(record.id)
        shutil.rmtree(settings.state_dir, ignore_errors=True)


def _summary(name: str, values: list[float], unit: str) -> str:
    spread = f"min {min(values):.1f}, max {max(values):.1f}"
    return f"{name}: median {statistics.median(values):.1f} {unit} ({spread}, n={len(values)})"


def run(rounds: int) -> list[str]:
    settings = LocalDriverSection()
    install_engine(settings.engine_home, settings.java_bin)
    install_elasticsearch(settings.elasticsearch_home, settings.java_bin)
    install_elasticsearch819(settings.elasticsearch819_home, settings.java_bin)
    java21 = opensearch3_java(settings)
    if java21 is None:
        raise SystemExit(f"OpenSearch {OPENSEARCH3_VERSION} needs Java 21 or later (ESS_JAVA21_BIN)")
    install_opensearch3(settings.engine3_home, java21)
    ways = {"with": settings, "without": settings.model_copy(update={"local_class_archive": False})}
    results: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for _ in range(rounds):
        for engine, version in VERSIONS:
            for way, configured in ways.items():
                results.setdefault((engine, version, way), []).append(asyncio.run(_one(engine, version, configured)))
    lines = []
    for (engine, version, way), runs in results.items():
        kept = "AOT cache" if version == OPENSEARCH3_VERSION else "class archive"
        lines.append(_summary(f"{engine} {version} {way} its {kept}: cold start to green", [r[0] for r in runs], "s"))
        lines.append(_summary(f"{engine} {version} {way} its {kept}: node RSS at green", [r[1] for r in runs], "MiB"))
    return lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    print("\n".join(run(parser.parse_args().rounds)))
