"""The local driver's next node step toward a cluster's size and version, decided from what runs
(a plain function: the driver acts on it), and the clock that gives up a step without progress.

Order: add a missing node, drain the nodes above the wanted count, then restart nodes of another
size or version one at a time, the endpoint's node (1) last. A one-node cluster is moved to
another version or size by surge, as restarting its only node would leave nobody serving: a
node of the new kind joins (2), node 1 hands its shards over and restarts as it, then node 2 is
drained back onto it and leaves.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class NodeState:
    fits: bool  # runs at the wanted heap, processors and version


class StepKind(str, Enum):
    ADD = "add"  # start nodes[0], which joins
    SURGE = "surge"  # start nodes[0] on the new version beside the only node
    HAND_OVER = "hand_over"  # drain nodes[0] onto the surge node, then restart it on the new version
    DRAIN = "drain"  # drain `nodes` (all leaving), then remove the highest
    RESTART = "restart"  # restart nodes[0] at the wanted size and version
    NONE = "none"


@dataclass(frozen=True)
class NodeStep:
    kind: StepKind
    nodes: tuple[int, ...] = ()


def next_node_step(members: set[int], running: dict[int, NodeState], wanted_nodes: int) -> NodeStep:
    """`members`: nodes running or with data on disk; `running`: the live ones (all members run
    when this is asked: the driver starts a down node first)."""
    surging = set(running) == {1, 2} and not running[1].fits and running[2].fits
    if wanted_nodes == 1 and surging:
        return NodeStep(StepKind.HAND_OVER, (1,))
    missing = [n for n in range(1, wanted_nodes + 1) if n not in members]
    if missing:
        return NodeStep(StepKind.ADD, (missing[0],))
    leaving = sorted(n for n in members if n > wanted_nodes)
    if leaving:
        return NodeStep(StepKind.DRAIN, tuple(leaving))
    wrong = sorted((n for n in running if not running[n].fits), key=lambda n: (n == 1, -n))
    if not wrong:
        return NodeStep(StepKind.NONE)
    if len(running) == 1:
        return NodeStep(StepKind.SURGE, (2,))  # restarted in place it would serve nobody meanwhile
    return NodeStep(StepKind.RESTART, (wrong[0],))


class StallClock:
    """How long each cluster's current step has made no progress: its count of shard copies still
    to move (or short of their place) has not gone below its lowest since the step began."""

    def __init__(self) -> None:
        self._best: dict[str, tuple[int, float]] = {}  # cluster -> (lowest pending, since when)

    def waited(self, cluster_id: str, pending: int, now: float) -> float:
        best = self._best.get(cluster_id)
        if best is None or pending < best[0]:
            self._best[cluster_id] = (pending, now)
            return 0.0
        return now - best[1]

    def done(self, cluster_id: str) -> None:
        self._best.pop(cluster_id, None)
