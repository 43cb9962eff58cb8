"""A class-data-sharing archive per engine home, made once at setup: a training start of one node
with `-XX:ArchiveClassesAtExit`, stopped once it answers. Every local engine JVM (nodes and warm
standbys) then maps it (`local_jvm.class_archive`), which takes most of the class loading out of
a cold start. Remade when the engine's recipe or the JVM changes; a failed training only costs
speed, so it warns and setup goes on.

Java 17's dynamic archive for OpenSearch 2.19 and Elasticsearch 8.15: they install a
SecurityManager, which the JDK 24+ AOT cache's JVMs no longer allow. OpenSearch 3 installs none,
so its home gets the AOT cache (JEP 483/514: loaded and linked classes, made by one training run
with `-XX:AOTCacheOutput`), used by `-XX:AOTCache` on its Java 21+ (`local_jvm.archive_flag`).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from libs.common.settings import OPENSEARCH3_VERSION, LocalDriverSection
from services.manager.drivers import local_elasticsearch as es
from services.manager.drivers.local_launch import EngineLaunch, engine_home, engine_launch, write_node_config
from services.manager.drivers.local_jvm import AOT_CACHE, CLASS_ARCHIVE, jvm_options, node_arguments
from services.manager.drivers.local_processes import PORTS_PER_SLOT, slot_free
from services.manager.planning import EngineSize

TRAINING_PORTS = range(37000, 38000, PORTS_PER_SLOT)  # below the benches' and the platform's
TRAINING_TIMEOUT_S = 300


def _stamp(home: Path, java: str) -> str:
    version = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    return (home / ".complete").read_text() + "\n" + version


def _free_base(host: str) -> int:
    for base in TRAINING_PORTS:
        if slot_free(host, base):
            return base
    raise RuntimeError(f"no free port range in {TRAINING_PORTS} for the training start")


def ensure_class_archive(settings: LocalDriverSection, engine: str, version: str | None = None) -> bool:
    """Make the engine version's archive unless a current one is there; True when it made one."""
    aot = engine == "opensearch" and version == OPENSEARCH3_VERSION
    home = engine_home(settings, engine, version)
    name = AOT_CACHE if aot else CLASS_ARCHIVE
    launch = engine_launch(settings.model_copy(update={"local_class_archive": False}), engine, version)
    archive, stamp_file = home / name, home / f"{name}.stamp"
    stamp = _stamp(home, launch.java)
    if archive.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
        return False
    archive.unlink(missing_ok=True)
    print(f"training the {engine} {version or ''} {'AOT cache' if aot else 'class archive'} (once, about a minute)",
          file=sys.stderr)
    dump = f"-XX:AOTCacheOutput={home / f'{name}.partial'}" if aot else \
        f"-XX:ArchiveClassesAtExit={home / f'{name}.partial'}"
    try:
        _train(settings, engine, launch, dump, home / f"{name}.partial")
    except (RuntimeError, OSError) as exc:
        print(f"setup: no class archive for {engine} ({exc}); engines start without it, slower",
              file=sys.stderr)
        return False
    (home / f"{name}.partial").rename(archive)
    stamp_file.write_text(stamp)
    return True


def _train(settings: LocalDriverSection, engine: str, launch: EngineLaunch, dump: str, partial: Path) -> None:
    """One node started with the archive's dump flag, stopped (SIGTERM: the JVM exits normally,
    which writes the archive) once its health answers."""
    work = Path(tempfile.mkdtemp(prefix="ess-class-archive-"))
    host, base = settings.local_host, _free_base(settings.local_host)
    home = work / "training" / "nodes"
    if engine == "elasticsearch":
        es.write_elasticsearch_config(home, 1, host, base, [base + 11], "training", True, repos=[work / "repo"])
    else:
        write_node_config(home, 1, host, base, bootstrap=True, repos=[work / "repo"])
    size = EngineSize(nodes=1, heap_mb=settings.local_heap_max_mb, processors=1)
    command = [launch.java, dump, *jvm_options(size, None, launch.jvm_extra), "-cp", launch.classpath, launch.launcher,
               *node_arguments("training", 1, home, base, launch.launcher_extra)]
    process = None
    try:
        with open(work / "training.log", "ab") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        _wait_healthy(process, f"http://{host}:{base + 1}/_cluster/health")
        process.send_signal(signal.SIGTERM)
        process.wait(120)
        if not partial.exists():
            raise RuntimeError(f"the JVM wrote no archive; see its log in {work}")
        shutil.rmtree(work, ignore_errors=True)
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()


def _wait_healthy(process: subprocess.Popen, url: str) -> None:
    deadline = time.monotonic() + TRAINING_TIMEOUT_S
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the training node exited with {process.returncode}")
            try:
                if client.get(url).json().get("status") in ("green", "yellow"):
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
    raise RuntimeError(f"the training node did not answer within {TRAINING_TIMEOUT_S} s")
