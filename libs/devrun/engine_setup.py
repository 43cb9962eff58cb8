"""Fetch the local engine once: jars from Maven Central, the k-NN plugin, the launcher class."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

RECIPE = Path(__file__).resolve().parents[2] / "deploy" / "engine"


class SetupError(Exception):
    """Something this machine lacks; the message says what to install."""


def _recipe_hash() -> str:
    digest = hashlib.sha256()
    for name in ("pom.xml", "EngineLauncher.java"):
        digest.update((RECIPE / name).read_bytes())
    return digest.hexdigest()


def _require_tools(java: str) -> None:
    for tool, why in ((java, "Java 17 or newer (e.g. apt install openjdk-17-jdk)"),
                      ("javac", "a JDK, not only a JRE (e.g. apt install openjdk-17-jdk)"),
                      ("mvn", "Maven (e.g. apt install maven)")):
        if shutil.which(tool) is None:
            raise SetupError(f"`{tool}` not found: the local engine needs {why}")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)', out)
    if not match or int(match.group(1)) < 17:
        raise SetupError(f"Java 17 or newer is needed, found: {out.splitlines()[0] if out else 'nothing'}")


def install_engine(home: Path, java: str = "java") -> bool:
    """Install into `home` unless the same recipe is already there; True when it installed."""
    marker = home / ".complete"
    if marker.exists() and marker.read_text() == _recipe_hash():
        return False
    _require_tools(java)
    staging = home.with_name(home.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "classes").mkdir(parents=True)
    print(f"fetching the OpenSearch engine into {home} (once)", file=sys.stderr)
    subprocess.run(
        ["mvn", "-q", "-B", "-f", str(RECIPE / "pom.xml"), "dependency:copy-dependencies",
         f"-DoutputDirectory={staging / 'lib'}"],
        check=True,
    )
    for plugin in (staging / "lib").glob("opensearch-knn-*.zip"):
        with zipfile.ZipFile(plugin) as archive:
            for member in archive.namelist():
                if member.endswith(".jar"):
                    archive.extract(member, staging / "knn")
        plugin.unlink()
    subprocess.run(
        ["javac", "-cp", f"{staging / 'lib'}/*", "-d", str(staging / "classes"), str(RECIPE / "EngineLauncher.java")],
        check=True,
    )
    (staging / ".complete").write_text(_recipe_hash())
    shutil.rmtree(home, ignore_errors=True)
    staging.rename(home)
    return True
