"""The local driver's engine JVMs as processes: finding ours by their command line (a restarted
manager adopts them), signalling and stopping them, and whether a port slot is free."""

from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from services.manager.drivers import local_elasticsearch as es

LAUNCHER_CLASS = "EngineLauncher"  # OpenSearch's launcher (deploy/engine/)
PORTS_PER_SLOT = 20  # HTTP on base+1..base+9, transport on base+11..base+19


@dataclass(frozen=True)
class NodeProcess:
    """One running engine node: a JVM of ours."""

    pid: int
    cluster_id: str
    node: int
    heap_mb: int
    processors: int
    http_base: int
    engine: str = "opensearch"


def _arg(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args and args.index(flag) + 1 < len(args) else None


def parse_engine_cmdline(args: list[str], clusters_dir: Path) -> NodeProcess | None:
    """The node a JVM command line runs, if it is one of ours under `clusters_dir` (pid 0)."""
    if LAUNCHER_CLASS not in args and es.LAUNCHER_CLASS not in args:
        return None
    base = _arg(args, "-basePath")
    if base is None or Path(base).parent.parent != clusters_dir:
        return None
    heap = next((a for a in args if a.startswith("-Xmx")), "-Xmx0m")
    procs = next((a for a in args if a.startswith("-XX:ActiveProcessorCount=")), "=1")
    return NodeProcess(
        pid=0,
        cluster_id=Path(base).parent.name,
        node=int(_arg(args, "-nodeIndex") or 1),
        heap_mb=int(heap[4:-1]),
        processors=int(procs.split("=")[1]),
        http_base=int(_arg(args, "-baseHttpPort") or 0),
        engine="elasticsearch" if es.LAUNCHER_CLASS in args else "opensearch",
    )


def find_engines(clusters_dir: Path) -> list[NodeProcess]:
    """Live (non-zombie) engine nodes whose data lives under `clusters_dir`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        node = parse_engine_cmdline(args, clusters_dir)
        if node and state != "Z":
            found.append(NodeProcess(int(proc.name), node.cluster_id, node.node, node.heap_mb, node.processors,
                                     node.http_base, node.engine))
    return found


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def slot_free(host: str, http_base: int) -> bool:
    """Every HTTP and transport port of the slot at `http_base` binds now."""
    return all(_port_free(host, http_base + p) for p in range(1, PORTS_PER_SLOT))


def stop_all_engines(clusters_dir: Path, timeout_s: float = 20.0) -> int:
    """Stop every engine node under `clusters_dir` (for `make down` and test teardown)."""
    nodes = find_engines(clusters_dir)
    for node in nodes:
        send_signal(node.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(alive(n.pid) for n in nodes):
        time.sleep(0.2)
    for node in nodes:
        send_signal(node.pid, signal.SIGKILL)
    return len(nodes)


def send_signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
