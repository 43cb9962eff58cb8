"""Turns for cold engine starts on this machine (`ESS_LOCAL_CONCURRENT_STARTS`): the local
driver's admission of a start, held from the moment it is granted, in the order clusters asked.

A cluster's reconcile asks (`ask`), awaits a record write, then starts its node: a turn counts
from the grant, not from the JVM's spawn, or every cluster asking in between would be let in
(20 wakes once started 16 JVMs at the same moment). A waiting cluster asks again every half
second; one that stops asking (deleted, its lease gone) leaves the line after `FORGET_S`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

COLD_START_S = 120.0  # a cold JVM not answering after this no longer holds back others' starts
GRANT_S = 30.0  # a granted turn whose JVM never came (the start failed) is given back after this
FORGET_S = 5.0  # a waiting cluster that has not asked again for this long has left the line


def may_start(cluster_id: str, waiting: dict[str, float], free: int) -> bool:
    """Whether `cluster_id` starts now: it is among the `free` longest-waiting clusters (one not
    yet waiting queues behind all that are). `waiting`: cluster -> when it first asked."""
    if free <= 0:
        return False
    line = sorted(waiting, key=lambda c: (waiting[c], c))
    return cluster_id in line[:free] if cluster_id in waiting else len(line) < free


@dataclass
class StartTurns:
    limit: int
    answering: Callable[[int], bool]  # an HTTP port accepts connections: its node has started
    alive: Callable[[int], bool]
    clock: Callable[[], float] = time.monotonic
    _jvms: dict[int, tuple[int, float]] = field(default_factory=dict)  # pid -> (HTTP port, spawned)
    _granted: dict[str, float] = field(default_factory=dict)  # cluster -> when its turn was granted
    _waiting: dict[str, tuple[float, float]] = field(default_factory=dict)  # cluster -> (first, last asked)

    def starting(self) -> int:
        """Turns in use: cold JVMs not answering yet, and turns granted whose JVM is not spawned."""
        now = self.clock()
        for pid, (port, spawned) in list(self._jvms.items()):
            if not self.alive(pid) or now - spawned > COLD_START_S or self.answering(port):
                del self._jvms[pid]  # gone, given up on, or answering: no longer starting
        for cluster, granted in list(self._granted.items()):
            if now - granted > GRANT_S:
                del self._granted[cluster]
        return len(self._jvms) + len(self._granted)

    def ask(self, cluster_id: str) -> int | None:
        """None: the cluster's turn is granted (start it now); else how many engines start."""
        now = self.clock()
        for cluster, (_, last) in list(self._waiting.items()):
            if now - last > FORGET_S:
                del self._waiting[cluster]
        if cluster_id in self._granted:
            return None  # asked again before its JVM spawned: the same turn
        busy = self.starting()
        first = {c: asked for c, (asked, _) in self._waiting.items()}
        if may_start(cluster_id, first, self.limit - busy):
            self._waiting.pop(cluster_id, None)
            self._granted[cluster_id] = now
            return None
        self._waiting[cluster_id] = (first.get(cluster_id, now), now)
        return busy

    def spawned(self, cluster_id: str, pid: int, port: int) -> None:
        """A cold JVM of the cluster is running: it holds the turn until it answers."""
        self._granted.pop(cluster_id, None)
        self._jvms[pid] = (port, self.clock())

    def served_warm(self, cluster_id: str) -> None:
        """The cluster's node went to a standby: no cold JVM, the turn goes back."""
        self._granted.pop(cluster_id, None)
