"""The command line of a local engine node's JVM, shared by the OpenSearch and Elasticsearch
launchers (deploy/engine/): heap, processors, GC and the launcher's node arguments.

`local_processes.parse_engine_cmdline` reads these flags back to adopt running nodes, so both
engines must keep writing them alike. This module imports nothing of the driver's: the
OpenSearch side (local.py) and the Elasticsearch side (local_elasticsearch.py) both use it.
"""

from __future__ import annotations

from pathlib import Path

from services.manager.planning import EngineSize


def jvm_command(java: str, classpath: str, launcher: str, cluster_id: str, node: int, size: EngineSize,
                home: Path, http_base: int, jvm_extra: tuple[str, ...] = (),
                launcher_extra: tuple[str, ...] = ()) -> list[str]:
    """One node's JVM: `jvm_extra` goes after the shared JVM options, `launcher_extra` after the
    launcher's node arguments."""
    return [
        java,
        f"-Xms{size.heap_mb}m",
        f"-Xmx{size.heap_mb}m",
        f"-XX:ActiveProcessorCount={size.processors}",
        "-XX:+UseSerialGC",  # a small heap on two cores: the least overhead
        "-Djava.awt.headless=true",
        "-Dlog4j2.disable.jmx=true",
        *jvm_extra,
        "-cp", classpath,
        launcher,
        "-basePath", str(home),
        "-nodeIndex", str(node),
        "-baseHttpPort", str(http_base),
        "-clusterName", cluster_id,
        *launcher_extra,
    ]
