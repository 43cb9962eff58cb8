"""The shard controller's handling of one metric sample: read, plan, then act or advance.

Acting means: replica changes on the engine; node counts asked of the manager over NATS, with
a reason (the manager's driver drains the nodes that go; replicas are lowered here first, to
fit); resharding through a new index generation, a copy and an alias swap. Multi-step
operations live in KV and move one step per sample, so nothing blocks and a restarted
controller picks up where it was.

It publishes nothing itself: a `Turn` carries the events of what it did, which the handler
(`handlers.py`) publishes before the state is kept, so a lost event is redone, never skipped.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field

import structlog

from libs.common.engines import ENGINE_FAILURES, SearchEngine, connect_engine
from libs.common.engines import IndexAlreadyExists
from libs.common.engines.admin import CopyFailed, next_generation
from libs.common.engines.capabilities import copies_by_reindex
from libs.common.events import (
    ClusterScaleRequested,
    Event,
    MetricsSample,
    ShardActionTaken,
    ShardPlanChanged,
)
from libs.common.leases import Leases
from libs.common.models import SERVING, ClusterRecord, ClusterStatus, ControllerState, Operation, utcnow
from services.shard_controller.planning import ShardPlan, ShardPolicy, plan_shards
from services.shard_controller.state import ControllerStates

REQUEST_ANSWERED_S = 60.0  # a node-count request not in the spec by then was refused


@dataclass
class Turn:
    """What one sample came to: the events to publish, then the state to keep (None: nothing)."""

    events: list[Event] = field(default_factory=list)
    state: ControllerState | None = None


class ShardController:
    def __init__(self, policy: ShardPolicy, states: ControllerStates, leases: Leases,
                 read_record: Callable[[str], Awaitable[ClusterRecord | None]],
                 engine_for: Callable[[ClusterRecord], SearchEngine] | None = None):
        self._policy = policy
        self._states = states
        self._leases = leases
        self._read_record = read_record
        self._engine_for = engine_for or (lambda r: connect_engine(r.spec.engine, r.endpoint))
        self._history: dict[str, deque[MetricsSample]] = defaultdict(lambda: deque(maxlen=policy.sustain_samples))
        self._log = structlog.get_logger("shard-controller")

    def _remember(self, sample: MetricsSample) -> None:
        history = self._history[sample.cluster_id]
        if not history or history[-1].event_id != sample.event_id:  # a redelivery counts once
            history.append(sample)

    async def on_sample(self, sample: MetricsSample) -> Turn:
        """Act on one sample; NATS errors propagate (the handler naks, the sample comes back)."""
        self._remember(sample)
        turn = Turn()
        record = await self._read_record(sample.cluster_id)
        if record is None or record.delete_requested:
            self._log.info("sample of a cluster that no longer exists: nothing to do", cluster=sample.cluster_id,
                           tenant=sample.tenant_org_id)
            self._history.pop(sample.cluster_id, None)
            return turn
        if record.status not in SERVING or not record.endpoint:
            return turn  # the manager is changing it; plan again once it serves
        if not await self._leases.hold(record.id):
            return turn  # another controller instance acts on this cluster
        state = turn.state = await self._states.get(record.id, record.tenant_org_id)
        engine = self._engine_for(record)
        try:
            if state.operation:
                await self._advance(record, state, engine, sample, turn)
            else:
                await self._plan_and_act(record, state, engine, turn)
        except ENGINE_FAILURES as exc:
            # the engine away or refusing: reported as a failed action, and the step is redone on
            # the cluster's next sample (a redelivery of this older one would add nothing)
            self._log.warning("shard action failed", cluster=record.id, tenant=record.tenant_org_id,
                              error=f"{type(exc).__name__}: {exc}")
            kind = state.operation.kind if state.operation else "plan"
            self._action(turn, record, kind, f"{type(exc).__name__}: {exc}", "failed")
        finally:
            await engine.close()
        return turn

    async def keep(self, turn: Turn) -> None:
        """The state after a turn, once its events are out."""
        if turn.state is not None:
            await self._states.put(turn.state)

    # -- planning ---------------------------------------------------------------------------
    async def _plan_and_act(self, record: ClusterRecord, state: ControllerState, engine: SearchEngine,
                            turn: Turn) -> None:
        if record.status != ClusterStatus.READY:
            return  # the manager is changing it; plan again once it is ready
        plan = plan_shards(record.id, record.spec.replicas, record.scaling, list(self._history[record.id]),
                           self._policy, utcnow(), state.last_action_at)
        planned = asdict(plan)
        if planned != state.plan:
            turn.events.append(ShardPlanChanged(
                cluster_id=record.id, tenant_org_id=record.tenant_org_id, nodes=plan.nodes,
                current_nodes=plan.current_nodes, replicas=plan.replicas, splits=plan.splits,
                reason=plan.reason))
        state.plan, state.planned_at = planned, utcnow()
        if not plan.changes_anything:
            return
        self._log.info("acting on plan", cluster=record.id, tenant=record.tenant_org_id, reason=plan.reason)
        admin = engine.admin()
        for index, replicas in plan.replicas.items():
            await admin.set_replicas(index, replicas)
            self._action(turn, record, "set_replicas", f"{index}: {replicas} replica(s)", "done")
        state.last_action_at = utcnow()
        if plan.nodes != plan.current_nodes:
            kind = "scale_out" if plan.nodes > plan.current_nodes else "scale_in"
            state.operation = Operation(kind=kind, phase="resizing", nodes=plan.nodes, started_at=utcnow())
            self._ask_for_nodes(turn, record, plan)
        elif plan.splits:
            await self._start_reshard(record, state, engine, plan, turn)

    def _ask_for_nodes(self, turn: Turn, record: ClusterRecord, plan: ShardPlan) -> None:
        turn.events.append(ClusterScaleRequested(cluster_id=record.id, tenant_org_id=record.tenant_org_id,
                                                 nodes=plan.nodes, reason=plan.reason))
        self._action(turn, record, "scale_requested", f"{plan.nodes} node(s) asked of the manager", "started")

    async def _start_reshard(self, record: ClusterRecord, state: ControllerState, engine: SearchEngine,
                             plan: ShardPlan, turn: Turn) -> None:
        source, primaries = next(iter(plan.splits.items()))
        state.operation = Operation(kind="reshard", phase="starting", alias=source.rpartition("-")[0],
                                    source=source, target=next_generation(source), nodes=primaries,
                                    started_at=utcnow())
        await self._states.put(state)  # recorded before the first step, so a crash resumes it
        await self._advance_reshard(record, state, engine.admin(), turn)

    async def _advance_reshard(self, record: ClusterRecord, state: ControllerState, admin, turn: Turn) -> None:
        op = state.operation
        if op.phase == "starting":
            try:
                await admin.create_index_like(op.source, op.target, op.nodes)
            except IndexAlreadyExists:
                pass  # made before a crash
            await admin.move_writes(op.alias, op.source, op.target)
            op.task_id = await admin.start_copy(op.source, op.target, paged=not copies_by_reindex(record.engine_lacks))
            op.phase = "copying"
            self._action(turn, record, "reshard", f"{op.alias}: {op.source} -> {op.target} with {op.nodes} "
                         "primaries; writes go to the new index, reads to both", "started")
            return
        try:
            done, op.task_id = await admin.copy_step(op.task_id)
        except CopyFailed as exc:
            await admin.move_writes(op.alias, op.target, op.source)  # back as it was
            await admin.delete_index(op.target)
            state.operation = None
            self._action(turn, record, "reshard", f"rolled back: {exc}", "failed")
            return
        if not done:
            return
        if op.phase == "copying":
            # a bulk that resolved the alias just before the swap may land after the copy's
            # snapshot: a second pass, which skips what is there, catches such stragglers
            await admin.refresh(op.source)
            op.task_id = await admin.start_copy(op.source, op.target, paged=not copies_by_reindex(record.engine_lacks))
            op.phase = "catching_up"
            return
        await admin.refresh(op.target)
        await admin.retire(op.alias, op.source)
        self._finish(turn, record, state, "reshard", f"{op.alias} now on {op.target}")

    # -- operations in flight ----------------------------------------------------------------
    async def _advance(self, record: ClusterRecord, state: ControllerState, engine: SearchEngine,
                       sample: MetricsSample, turn: Turn) -> None:
        op = state.operation
        admin = engine.admin()
        if op.kind in ("scale_out", "scale_in"):
            if record.spec.replicas != op.nodes:
                # the manager refuses a request the tenant's bounds or quota forbid; it stays as it was
                if (utcnow() - op.started_at).total_seconds() > REQUEST_ANSWERED_S:
                    self._finish(turn, record, state, op.kind, f"not applied: still {record.spec.replicas} node(s)")
            elif record.status == ClusterStatus.READY and sample.stats.nodes == op.nodes:
                self._finish(turn, record, state, op.kind, f"{op.nodes} node(s)")
        elif op.kind == "reshard":
            await self._advance_reshard(record, state, admin, turn)

    def _finish(self, turn: Turn, record: ClusterRecord, state: ControllerState, action: str, detail: str) -> None:
        state.operation = None
        state.last_action_at = utcnow()
        self._action(turn, record, action, detail, "done")

    @staticmethod
    def _action(turn: Turn, record: ClusterRecord, action: str, detail: str, outcome: str) -> None:
        turn.events.append(ShardActionTaken(cluster_id=record.id, tenant_org_id=record.tenant_org_id,
                                            action=action, detail=detail, outcome=outcome))
