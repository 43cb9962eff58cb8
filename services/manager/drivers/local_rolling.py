"""How the local driver moves a serving cluster one node step at a time (local_steps.py decides
which): a node added, drained and removed, restarted at a new size or version, or a one-node
cluster's surge. Each step raises ResizeInProgress (or ResizeAbandoned, given up with a reason)."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

from libs.common.engines import ENGINE_NO_ANSWER, SearchEngine, connect_engine
from libs.common.models import ClusterRecord
from libs.common.settings import LocalDriverSection
from services.manager.drivers import ResizeAbandoned, ResizeInProgress
from services.manager.drivers.local_launch import node_name
from services.manager.drivers.local_processes import NodeProcess
from services.manager.drivers.local_steps import NodeState, StallClock, StepKind, next_node_step
from services.manager.planning import EngineSize

ENDPOINT_MOVE_GRACE_S = 1.0  # the endpoint moved off a node about to stop: gateways follow, its in-flight calls finish


class NodeSteps:
    """The node steps of LocalDriver, which provides the state below and starts and stops nodes."""

    _settings: LocalDriverSection
    _excluded: dict[str, list[str]]  # cluster -> node names excluded by this process
    _restarted: dict[tuple[str, int], tuple]  # (cluster, node) -> what it was last restarted for
    _stalls: StallClock  # a wait's time without progress, per cluster; done once the step acts

    def _start_node(self, cluster: ClusterRecord, node: int, size: EngineSize) -> None:
        raise NotImplementedError

    async def _stop_nodes(self, nodes: list[NodeProcess]) -> None:
        raise NotImplementedError

    def _version_of(self, node: NodeProcess) -> str:
        raise NotImplementedError

    def _home(self, cluster_id: str) -> Path:
        raise NotImplementedError

    def endpoint(self, http_base: int, node: int = 1) -> str:
        raise NotImplementedError

    async def _step(self, cluster: ClusterRecord, engine: SearchEngine, running: dict[int, NodeProcess],
                    members: set[int], new: EngineSize) -> None:
        try:
            health = await asyncio.wait_for(engine.health(), timeout=5.0)
        except ENGINE_NO_ANSWER as exc:
            raise ResizeInProgress(f"waiting for the engine to answer ({type(exc).__name__})") from exc
        if health.nodes < len(running):
            raise ResizeInProgress(f"waiting for {len(running)} nodes to form the cluster ({health.nodes} joined)")
        admin = engine.admin()
        target = (new.heap_mb, new.processors, cluster.spec.version)
        states = {n: NodeState(fits=(p.heap_mb, p.processors, self._version_of(p)) == target)
                  for n, p in running.items()}
        step = next_node_step(members, states, new.nodes)
        match step.kind:
            case StepKind.ADD:
                await admin.clear_exclusions()  # a name drained by an earlier shrink holds shards again
                self._excluded.pop(cluster.id, None)
                self._start_node(cluster, step.nodes[0], new)
                raise ResizeInProgress(f"{node_name(step.nodes[0])} joining ({len(members) + 1} of {new.nodes} nodes)")
            case StepKind.SURGE:
                what = self._kind_of_change(cluster, running[1], new)
                self._start_node(cluster, step.nodes[0], new)
                raise ResizeInProgress(f"by surge: {node_name(step.nodes[0])} joining on {what} to take "
                                       f"{node_name(1)}'s shards")
            case StepKind.HAND_OVER:
                await self._hand_over(cluster, admin, running, new)
            case StepKind.DRAIN:
                await self._drain_one(cluster, admin, running, list(step.nodes), new.nodes)
            case StepKind.RESTART:
                await self._restart_one(cluster, admin, running, step.nodes[0], new)
        self._stalls.done(cluster.id)
        for key in [k for k in self._restarted if k[0] == cluster.id]:  # all in place: nothing to remember
            del self._restarted[key]

    def _kind_of_change(self, cluster: ClusterRecord, node: NodeProcess, new: EngineSize) -> str:
        """What a node is moved to, for the status reason: the new version, else the new heap."""
        if self._version_of(node) != cluster.spec.version:
            return f"{cluster.spec.engine} {cluster.spec.version}"
        return f"{new.heap_mb} MiB heap"

    def _stalled(self, cluster: ClusterRecord, pending: int) -> float | None:
        """Seconds without progress, once beyond `local_restart_stall_s`; None while within it."""
        waited = self._stalls.waited(cluster.id, pending, time.monotonic())
        if waited <= self._settings.local_restart_stall_s:
            return None
        self._stalls.done(cluster.id)
        return waited

    async def _leave_endpoint(self, cluster: ClusterRecord, running: dict[int, NodeProcess], node: int,
                              why: str) -> None:
        """Before `node` stops: the cluster's endpoint moves to the lowest other node (one step, so
        gateways see it), then in-flight calls to `node` finish."""
        base = running[node].http_base
        if cluster.endpoint == self.endpoint(base, node):
            other = min(n for n in running if n != node)
            raise ResizeInProgress(f"moving the endpoint to {node_name(other)} before {node_name(node)} {why}",
                                   endpoint=self.endpoint(base, other))
        await asyncio.sleep(ENDPOINT_MOVE_GRACE_S)

    async def _restart_one(self, cluster: ClusterRecord, admin, running: dict[int, NodeProcess], node: int,
                           new: EngineSize) -> None:
        """Restart one node at the new size and the cluster's version once every shard has all the
        copies its nodes can hold (a replica with no node left to go to does not hold it up); a
        wait without progress beyond `local_restart_stall_s` is given up. Before the endpoint's own
        node goes, the cluster's endpoint moves to another node and in-flight calls finish."""
        what = self._kind_of_change(cluster, running[node], new)
        if len(running) > 1 and (short := await admin.drain_pending([], len(running))):
            if (waited := self._stalled(cluster, short)) is not None:
                raise ResizeAbandoned(
                    f"restarting {node_name(node)} on {what} stalled: {short} shard copies unassigned for "
                    f"{waited:.0f} s (a newer node's copies never go to an older one); the cluster serves as it is; "
                    "the engine's allocation explain says which copy; any change of the spec tries again")
            raise ResizeInProgress(f"waiting for {short} shard copies to be assigned before restarting "
                                   f"{node_name(node)} on {what}")
        self._stalls.done(cluster.id)
        target = (new.heap_mb, new.processors, cluster.spec.version)
        if self._restarted.get((cluster.id, node)) == target:  # restarted for it once, and still not so
            del self._restarted[(cluster.id, node)]  # a later attempt restarts it once more
            raise ResizeAbandoned(f"{node_name(node)} was restarted on {what} and does not run it; "
                                  "its engine.log says why; any change of the spec tries again")
        if node == 1 and len(running) > 1:
            await self._leave_endpoint(cluster, running, node, f"restarts on {what}")
        await self._stop_nodes([running[node]])
        self._start_node(cluster, node, new)
        self._restarted[(cluster.id, node)] = target
        raise ResizeInProgress(f"restarting {node_name(node)} on {what}")

    async def _exclude(self, cluster: ClusterRecord, admin, names: list[str]) -> None:
        """Exactly `names` drained: an exclusion left by a step before (or another process) is lifted
        first, since a voting exclusion of every node would leave the cluster no voter."""
        if self._excluded.get(cluster.id) != names:
            await admin.clear_exclusions()
            await admin.exclude_nodes(names)
            self._excluded[cluster.id] = names

    async def _given_up_drain(self, cluster: ClusterRecord, admin, pending: int, what: str) -> None:
        """Raises ResizeAbandoned once a drain made no progress beyond `local_restart_stall_s`, its
        exclusions lifted so the nodes hold shards again."""
        if (waited := self._stalled(cluster, pending)) is None:
            return
        await admin.clear_exclusions()
        self._excluded.pop(cluster.id, None)
        raise ResizeAbandoned(
            f"{what} stalled: {pending} shard copies could not move for {waited:.0f} s (an allocation filter, or a "
            "newer node's copy that never goes to an older one); the cluster serves on the nodes it has; the "
            "engine's allocation explain says which copy; any change of the spec tries again")

    async def _hand_over(self, cluster: ClusterRecord, admin, running: dict[int, NodeProcess],
                         new: EngineSize) -> None:
        """The surge's middle: node 1 hands its shards to node 2 (already of the new version or
        size), the endpoint moves there, node 1 stops, its exclusions are lifted (by node 2) and it
        starts as node 2 runs."""
        version = self._kind_of_change(cluster, running[1], new)
        await self._exclude(cluster, admin, [node_name(1)])
        if pending := await admin.drain_pending([node_name(1)], 1):
            await self._given_up_drain(cluster, admin, pending, f"moving to {version} by surge")
            raise ResizeInProgress(f"by surge: {pending} shard copies still to move from {node_name(1)} "
                                   f"to {node_name(2)} on {version}")
        self._stalls.done(cluster.id)
        await self._leave_endpoint(cluster, running, 1, f"restarts on {version}")
        await self._stop_nodes([running[1]])
        survivor = connect_engine(cluster.spec.engine, self.endpoint(running[2].http_base, 2))
        try:
            await survivor.admin().clear_exclusions(wait_for_removal=True)
        finally:
            await survivor.close()
        self._excluded.pop(cluster.id, None)
        self._start_node(cluster, 1, new)
        raise ResizeInProgress(f"by surge: {node_name(1)} restarting on {version}; {node_name(2)} serves")

    async def _drain_one(self, cluster: ClusterRecord, admin, running: dict[int, NodeProcess],
                         leaving: list[int], remaining: int) -> None:
        """Exclude every leaving node; once no shard copy has to move off them, stop and remove
        the highest one. The last one gone, the exclusions are lifted."""
        names = [node_name(n) for n in leaving]
        await self._exclude(cluster, admin, names)
        pending = await admin.drain_pending(names, remaining)
        if pending:
            await self._given_up_drain(cluster, admin, pending, f"draining {', '.join(names)}")
            raise ResizeInProgress(f"draining {', '.join(names)}: {pending} shard copies still to move")
        self._stalls.done(cluster.id)
        last = leaving[-1]
        await self._leave_endpoint(cluster, running, last, "leaves")
        await self._stop_nodes([running[last]])
        shutil.rmtree(self._home(cluster.id) / f"node_{last}", ignore_errors=True)
        if len(leaving) == 1:
            await admin.clear_exclusions(wait_for_removal=True)
            self._excluded.pop(cluster.id, None)
        raise ResizeInProgress(f"{node_name(last)} drained and removed")
