"""Warm engines for the local driver: a pool of standby JVMs per engine and size class, each of
which has started and closed a throwaway node and waits for its node (deploy/engine/Standby.java).

A node start of the same engine and size takes one (`StandbyPool.take`), and the node starts in
that warm JVM; `refill` keeps `ESS_WARM_ENGINES` idle standbys per class. The assignment file is
the only record of which node a standby runs, and `local_processes` reads it, so a manager
restarted right after a hand-over adopts the node and never starts a twin. One file lock
serialises takes and refills of every manager sharing the state directory.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import structlog

from services.manager.drivers.local_processes import (
    ASSIGNMENT, LOG_FLAG, StandbyProcess, find_standbys, send_signal,
)
from services.manager.planning import EngineSize

SizeClass = tuple[str, int, int]  # engine, heap MiB, processors: what a standby can serve
LAST_TAKE = ".last-take"  # touched by every take: refills wait `warm_refill_delay_s` after it
StandbyCommand = Callable[[str, EngineSize, Path], list[str]]  # engine, size, directory -> JVM command


def size_class(engine: str, size: EngineSize) -> SizeClass:
    return engine, size.heap_mb, size.processors


def class_of(standby: StandbyProcess) -> SizeClass:
    return standby.engine, standby.heap_mb, standby.processors


def pick_standby(standbys: list[StandbyProcess], engine: str, size: EngineSize) -> StandbyProcess | None:
    """An idle standby whose heap and processors are exactly the node's, warmed-up ones first;
    never one of another size: its heap is fixed when the JVM starts."""
    wanted = size_class(engine, size)
    idle = [s for s in standbys if not s.assigned and class_of(s) == wanted]
    return min(idle, key=lambda s: (not s.ready, s.pid), default=None)


def plan_refill(standbys: list[StandbyProcess], classes: list[SizeClass],
                per_class: int) -> tuple[list[SizeClass], list[StandbyProcess]]:
    """(classes to start one standby of, each as often as it is short; idle standbys to retire:
    beyond `per_class` or of a class no longer wanted)."""
    idle = [s for s in standbys if not s.assigned]
    start: list[SizeClass] = []
    retire: list[StandbyProcess] = []
    for wanted in dict.fromkeys(classes):
        have = sorted((s for s in idle if class_of(s) == wanted), key=lambda s: (not s.ready, s.pid))
        start += [wanted] * max(0, per_class - len(have))
        retire += have[per_class:]
    retire += [s for s in idle if class_of(s) not in classes]
    return start, retire


class StandbyPool:
    def __init__(self, directory: Path, classes: Callable[[], list[tuple[str, EngineSize]]], per_class: int,
                 refill_delay_s: float, command: StandbyCommand):
        self._dir = directory
        self._classes = classes  # the sizes to keep warm (the driver's size of the warm spec)
        self._per_class = per_class
        self._refill_delay_s = refill_delay_s
        self._command = command
        self._children: dict[int, subprocess.Popen] = {}  # reaped so a finished standby is no zombie
        self._log = structlog.get_logger("standby-pool")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self._dir.mkdir(parents=True, exist_ok=True)
        with open(self._dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def can_serve(self, engine: str, size: EngineSize) -> bool:
        """An idle standby of this engine and size is there now (a take would likely find it)."""
        return self._per_class > 0 and pick_standby(find_standbys(self._dir), engine, size) is not None

    def take(self, engine: str, size: EngineSize, node_args: list[str], log: Path) -> int | None:
        """Hand the node given by `node_args` to an idle standby of its size: the standby's pid,
        or None (none idle: the caller starts the node cold)."""
        if self._per_class == 0:
            return None
        with self._locked():
            choice = pick_standby(find_standbys(self._dir), engine, size)
            if choice is None:
                return None
            partial = choice.directory / f"{ASSIGNMENT}.partial"
            partial.write_text("\n".join([*node_args, LOG_FLAG, str(log)]) + "\n")
            try:
                os.link(partial, choice.directory / ASSIGNMENT)  # whole when it appears, never over another
            except FileExistsError:
                return None
            finally:
                partial.unlink(missing_ok=True)
            (self._dir / LAST_TAKE).touch()
        self._log.info("standby taken", engine=engine, heap_mb=size.heap_mb, pid=choice.pid, warm=choice.ready)
        return choice.pid

    def refill(self, start: bool = True) -> list[int]:
        """Start the standbys the pool lacks (if `start`, and not within `refill_delay_s` of a
        take), retire the ones it has too many of, and remove directories no live standby uses;
        the pids started."""
        for pid, child in list(self._children.items()):
            if child.poll() is not None:
                del self._children[pid]
        classes = [size_class(engine, size) for engine, size in self._classes()] if self._per_class else []
        started = []
        with self._locked():
            standbys = find_standbys(self._dir)
            live = {s.directory for s in standbys}
            for leftover in self._dir.iterdir():
                if leftover.is_dir() and leftover not in live:
                    shutil.rmtree(leftover, ignore_errors=True)
            lacking, retire = plan_refill(standbys, classes, self._per_class)
            for standby in retire:  # its directory gone, an idle standby exits by itself
                shutil.rmtree(standby.directory, ignore_errors=True)
                send_signal(standby.pid, signal.SIGTERM)
            last_take = self._dir / LAST_TAKE
            if not start or (last_take.exists() and time.time() - last_take.stat().st_mtime < self._refill_delay_s):
                return []
            for engine, heap_mb, processors in lacking[:1]:  # one per pass: two warm-ups at once starve two cores
                started.append(self._start(engine, EngineSize(nodes=1, heap_mb=heap_mb, processors=processors)))
        return started

    def _start(self, engine: str, size: EngineSize) -> int:
        directory = self._dir / f"{engine}-{size.heap_mb}m-{size.processors}p-{uuid.uuid4().hex[:8]}"
        directory.mkdir()
        with open(directory / "standby.log", "ab") as log_file:
            child = subprocess.Popen(
                self._command(engine, size, directory), stdout=log_file, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,  # outlives a manager crash, like a node
            )
        self._children[child.pid] = child
        self._log.info("standby started", engine=engine, heap_mb=size.heap_mb, pid=child.pid)
        return child.pid
