"""The local driver's engine JVMs as processes: finding ours by their command line (a restarted
manager adopts them), signalling and stopping them, and whether a port slot is free.

A warm standby (local_standby.py) runs `-standby DIR` in place of a node's arguments; once
assigned, DIR/assignment holds them, and it counts as that node from the moment the file exists."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from services.manager.drivers import local_elasticsearch as es

LAUNCHER_CLASS = "EngineLauncher"  # OpenSearch's launcher (deploy/engine/)
PORTS_PER_SLOT = 20  # HTTP on base+1..base+9, transport on base+11..base+19
STANDBY_FLAG = "-standby"  # deploy/engine/Standby.java
ASSIGNMENT = "assignment"  # the node a standby runs: its launcher arguments, one per line
LOG_FLAG = "-logFile"  # in an assignment only: where the node's output goes


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
    home: str = ""  # the engine home its classes come from, which says its version


def _arg(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args and args.index(flag) + 1 < len(args) else None


@dataclass(frozen=True)
class StandbyProcess:
    """A warm engine JVM of the pool, waiting for its node or (assigned) running it."""

    pid: int
    engine: str
    heap_mb: int
    processors: int
    directory: Path
    assigned: bool
    ready: bool  # warmed up: an assignment starts its node at once


def assignment_args(standby: Path) -> list[str] | None:
    """The node arguments a standby was given, without its log file; None while unassigned."""
    try:
        lines = [line for line in (standby / ASSIGNMENT).read_text().splitlines() if line]
    except OSError:
        return None
    if LOG_FLAG in lines:
        at = lines.index(LOG_FLAG)
        del lines[at:at + 2]
    return lines


def _launcher_engine(args: list[str]) -> str | None:
    if LAUNCHER_CLASS in args:
        return "opensearch"
    return "elasticsearch" if es.LAUNCHER_CLASS in args else None


def _size_flags(args: list[str]) -> tuple[int, int]:
    heap = next((a for a in args if a.startswith("-Xmx")), "-Xmx0m")
    procs = next((a for a in args if a.startswith("-XX:ActiveProcessorCount=")), "=1")
    return int(heap[4:-1]), int(procs.split("=")[1])


def parse_engine_cmdline(args: list[str], clusters_dir: Path) -> NodeProcess | None:
    """The node a JVM command line runs, if it is one of ours under `clusters_dir` (pid 0)."""
    if _launcher_engine(args) is None:
        return None
    if STANDBY_FLAG in args:
        assigned = assignment_args(Path(_arg(args, STANDBY_FLAG) or "/nonexistent"))
        if assigned is None:
            return None  # warm, no node yet
        args = [*args, *assigned]  # its JVM flags from the command line, its node from the file
    base = _arg(args, "-basePath")
    if base is None or Path(base).parent.parent != clusters_dir:
        return None
    heap, processors = _size_flags(args)
    return NodeProcess(
        pid=0,
        cluster_id=Path(base).parent.name,
        node=int(_arg(args, "-nodeIndex") or 1),
        heap_mb=heap,
        processors=processors,
        http_base=int(_arg(args, "-baseHttpPort") or 0),
        engine=_launcher_engine(args) or "opensearch",
        home=str(Path((_arg(args, "-cp") or "").split(":")[0]).parent),
    )


def _live_processes() -> Iterator[tuple[int, list[str]]]:
    """(pid, command line) of every live (non-zombie) process."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            yield int(proc.name), args


def find_engines(clusters_dir: Path) -> list[NodeProcess]:
    """Live engine nodes whose data lives under `clusters_dir`, assigned standbys among them."""
    found = []
    for pid, args in _live_processes():
        node = parse_engine_cmdline(args, clusters_dir)
        if node:
            found.append(replace(node, pid=pid))
    return found


def find_standbys(standby_dir: Path) -> list[StandbyProcess]:
    """Live standby JVMs of the pool in `standby_dir`, assigned or not."""
    found = []
    for pid, args in _live_processes():
        engine, directory = _launcher_engine(args), _arg(args, STANDBY_FLAG)
        if engine is None or directory is None or Path(directory).parent != standby_dir:
            continue
        heap, processors = _size_flags(args)
        found.append(StandbyProcess(pid, engine, heap, processors, Path(directory),
                                    assigned=(Path(directory) / ASSIGNMENT).exists(),
                                    ready=(Path(directory) / "ready").exists()))
    return found


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        # as the engine binds: a port whose last connections wait out TIME_WAIT (an engine just
        # stopped, its slot given back) is free; one something listens on is not
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def listening(host: str, port: int) -> bool:
    """Something accepts connections on the port (a check that never takes the port itself)."""
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def slot_free(host: str, http_base: int) -> bool:
    """Every HTTP and transport port of the slot at `http_base` binds now."""
    return all(_port_free(host, http_base + p) for p in range(1, PORTS_PER_SLOT))


def stop_all_engines(clusters_dir: Path, timeout_s: float = 20.0) -> int:
    """Stop every engine node under `clusters_dir` and every standby of the pool beside it
    (`<state>/standby`), for `make down` and test teardown; the number of nodes stopped."""
    nodes = find_engines(clusters_dir)
    pids = [n.pid for n in nodes] + [s.pid for s in find_standbys(clusters_dir.parent / "standby")]
    for pid in pids:
        send_signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.2)
    for pid in pids:
        send_signal(pid, signal.SIGKILL)
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
