"""The command line of a local engine node's JVM, shared by the OpenSearch and Elasticsearch
launchers (deploy/engine/): heap, processors, GC and the launcher's node arguments.

`local_processes.parse_engine_cmdline` reads these flags back to adopt running nodes, so both
engines must keep writing them alike. This module imports nothing of the driver's: the
OpenSearch side (local.py) and the Elasticsearch side (local_elasticsearch.py) both use it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from services.manager.planning import EngineSize

LAUNCHER_JAR = "launcher.jar"  # our launcher classes in an engine's home (devrun/engine_setup.py)
CLASS_ARCHIVE = "classes.jsa"  # the home's class-data-sharing archive (devrun/class_archive.py)
AOT_CACHE = "engine.aot"  # the JDK 24+ AOT cache instead, for an engine without a SecurityManager (OpenSearch 3)
JDKS = Path("/usr/lib/jvm")
# C2 compiles a method only once it is hotter than a node's start-up makes it: a cold start then
# costs about 20 % less CPU (bench/jit_thresholds.py), which is what many wakes at once on two
# cores are short of, and serving is as fast once warm (its hot paths pass these at once)
LATE_C2 = (
    "-XX:Tier4InvocationThreshold=40000",
    "-XX:Tier4MinInvocationThreshold=20000",
    "-XX:Tier4CompileThreshold=50000",
    "-XX:Tier4BackEdgeThreshold=400000",
)


def class_archive(home: Path) -> Path | None:
    """The engine home's AOT cache or class-data-sharing archive, if setup made one (else a plain cold start)."""
    for archive in (home / AOT_CACHE, home / CLASS_ARCHIVE):
        if archive.exists():
            return archive
    return None


def java_major(java: str) -> int | None:
    """The feature version of a `java` binary (17, 21, 25), or None if it does not run."""
    try:
        said = subprocess.run([java, "-XshowSettings:properties", "-version"], capture_output=True, text=True,
                              timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"java\.specification\.version = (\d+)", said)
    return int(found.group(1)) if found else None


def find_java(minimum: int, configured: str | None, jdks: Path = JDKS) -> str | None:
    """`configured` if set (whatever it is: the operator chose it), else the newest JDK under `jdks`
    of at least `minimum`, else None."""
    if configured:
        return configured
    found = [(major, str(java)) for java in jdks.glob("*/bin/java") if (major := java_major(str(java))) is not None]
    newest = max(found, default=None)
    return newest[1] if newest and newest[0] >= minimum else None


def jvm_options(size: EngineSize, archive: Path | None, jvm_extra: tuple[str, ...] = ()) -> list[str]:
    """The JVM's own options: heap, processors, GC, the class archive; a standby has the same."""
    return [
        f"-Xms{size.heap_mb}m",
        f"-Xmx{size.heap_mb}m",
        f"-XX:ActiveProcessorCount={size.processors}",
        "-XX:+UseSerialGC",  # a small heap on two cores: the least overhead
        *LATE_C2,
        *([archive_flag(archive)] if archive else []),
        "-Djava.awt.headless=true",
        "-Dlog4j2.disable.jmx=true",
        *jvm_extra,
    ]


def archive_flag(archive: Path) -> str:
    return f"-XX:AOTCache={archive}" if archive.name == AOT_CACHE else f"-XX:SharedArchiveFile={archive}"


def node_arguments(cluster_id: str, node: int, home: Path, http_base: int,
                   launcher_extra: tuple[str, ...] = ()) -> list[str]:
    """The launcher's arguments for one node; a standby reads the same from its assignment."""
    return [
        "-basePath", str(home),
        "-nodeIndex", str(node),
        "-baseHttpPort", str(http_base),
        "-clusterName", cluster_id,
        *launcher_extra,
    ]


def jvm_command(java: str, classpath: str, launcher: str, cluster_id: str, node: int, size: EngineSize,
                home: Path, http_base: int, jvm_extra: tuple[str, ...] = (),
                launcher_extra: tuple[str, ...] = (), archive: Path | None = None) -> list[str]:
    """One node's JVM: `jvm_extra` goes after the shared JVM options, `launcher_extra` after the
    launcher's node arguments."""
    return [java, *jvm_options(size, archive, jvm_extra), "-cp", classpath, launcher,
            *node_arguments(cluster_id, node, home, http_base, launcher_extra)]
