"""The local driver's Elasticsearch nodes: the core server of 8.15.3 under our launcher
(deploy/engine/elasticsearch/), one JVM per node like the OpenSearch nodes.

This module owns what differs from OpenSearch: the install home and class path, the node's
`elasticsearch.yml`, and what its command line adds to the shared one (local_jvm.py). Ports,
names ("Node N") and the home layout (`<cluster>/nodes/node_N/`) are the local driver's, so
scaling and draining work unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

from libs.common.engines.capabilities import CORE_SERVER_LACKS
from libs.common.settings import LocalDriverSection
from services.manager.drivers import EngineUnavailable
from services.manager.drivers.local_jvm import LAUNCHER_JAR, jvm_command
from services.manager.planning import EngineSize

LAUNCHER_CLASS = "ElasticsearchLauncher"
__all__ = ["CORE_SERVER_LACKS", "JVM_EXTRA", "LAUNCHER_CLASS", "write_node_config"]
JVM_EXTRA = ("-Dfile.encoding=UTF-8",)
# INFO and above to the console, which the driver sends to the cluster's engine.log
LOGGING = """status = error
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d{ISO8601}][%-5p][%-25c{1.}] %m%n
rootLogger.level = info
rootLogger.appenderRef.console.ref = console
"""
MAX_NODES = 9  # the local driver's port slot: HTTP base+1..9, transport base+11..19


def write_node_config(settings: LocalDriverSection, cluster_id: str, node: int, home: Path, http_base: int,
                      bootstrap: bool) -> None:
    """Write node N's configuration in the local driver's layout."""
    transport = [http_base + 10 + i for i in range(1, MAX_NODES + 1)]
    write_elasticsearch_config(home, node, settings.local_host, http_base, transport, cluster_id, bootstrap,
                               repos=settings.repository_dirs(cluster_id))


def elasticsearch_classpath(home: Path) -> str:
    if not (home / ".complete").exists():
        raise EngineUnavailable(
            f"Elasticsearch engine not installed in {home}; run `make setup` (needs Java 17 and Maven)"
        )
    return f"{home / LAUNCHER_JAR}:{home / 'lib'}/*"


def write_elasticsearch_config(home: Path, node: int, host: str, http_base: int, transport_ports: list[int],
                               cluster_id: str, bootstrap: bool, repos: list[Path]) -> None:
    """elasticsearch.yml of node N: loopback only, its ports, the slot's transport ports as seeds,
    `fs` repositories only under `repos` (`LocalDriverSection.repository_dirs`), made here."""
    node_home = home / f"node_{node}"
    (node_home / "config").mkdir(parents=True, exist_ok=True)
    for repo in repos:
        repo.mkdir(parents=True, exist_ok=True)
    lines = [
        f"cluster.name: {cluster_id}",
        f'node.name: "Node {node}"',
        f"network.host: {host}",
        f"http.port: {http_base + node}",
        f"transport.port: {http_base + 10 + node}",
        # never single-node discovery: a cluster of one must still let a second node join
        "discovery.seed_hosts: [" + ", ".join(f'"{host}:{p}"' for p in transport_ports) + "]",
        f"path.data: {node_home / 'data'}",
        f"path.logs: {node_home / 'logs'}",
        # only this cluster's own and incoming directories: a tenant's `fs` repository must not reach another's
        "path.repo: " + json.dumps([str(repo) for repo in repos]),
        # a laptop's full disk must not turn tenant indices read-only
        "cluster.routing.allocation.disk.threshold_enabled: false",
    ]
    if bootstrap:
        # only node 1 of a cluster that never formed, as on the OpenSearch path
        lines.append('cluster.initial_master_nodes: ["Node 1"]')
    (node_home / "config" / "elasticsearch.yml").write_text("\n".join(lines) + "\n")
    (node_home / "config" / "log4j2.properties").write_text(LOGGING)


def elasticsearch_command(java: str, classpath: str, cluster_id: str, node: int, size: EngineSize, home: Path,
                          http_base: int, archive: Path | None = None) -> list[str]:
    """The JVM command line of one node; the local driver's `parse_engine_cmdline` reads it back."""
    return jvm_command(java, classpath, LAUNCHER_CLASS, cluster_id, node, size, home, http_base,
                       jvm_extra=JVM_EXTRA, archive=archive)
