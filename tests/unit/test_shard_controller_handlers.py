"""The shard controller's handler on FastStream's in-memory broker: a metric sample in, the plan,
action and node-count events out; NATS away naks with a delay, a malformed or orphan sample does not."""

from __future__ import annotations

from unittest.mock import AsyncMock

import nats.errors
import pytest
from faststream.nats import NatsBroker, TestNatsBroker

from libs.common import subjects
from libs.common.events import MetricsSample, OperationRates
from libs.common.failures import RETRY_DELAY_S
from libs.common.metrics import ClusterStats
from libs.common.models import ClusterRecord, ClusterSpec, ClusterStatus, ControllerState, ScalingPolicy, utcnow
from services.shard_controller import handlers
from services.shard_controller.controller import ShardController
from services.shard_controller.planning import ShardPolicy
from tests.broker_testing import settled_messages

TENANT, CLUSTER = "acme", "c1"


class MemoryStates:
    def __init__(self, fail_put: bool = False):
        self.kept: dict[str, ControllerState] = {}
        self.fail_put = fail_put

    async def get(self, cluster_id: str, tenant_org_id: str) -> ControllerState:
        return self.kept.get(cluster_id) or ControllerState(cluster_id=cluster_id, tenant_org_id=tenant_org_id)

    async def put(self, state: ControllerState) -> None:
        if self.fail_put:
            raise nats.errors.TimeoutError
        self.kept[state.cluster_id] = state


class HeldLeases:
    async def hold(self, cluster_id: str) -> bool:
        return True


class IdleEngine:
    def admin(self):
        return AsyncMock()  # no index to change replicas of in these samples

    async def close(self) -> None:
        pass


def record(nodes: int = 1, min_nodes: int = 1) -> ClusterRecord:
    return ClusterRecord(id=CLUSTER, tenant_org_id=TENANT, user="u", service_name="s",
                         spec=ClusterSpec(replicas=nodes, cpu="1", memory="1Gi", storage="1Gi", version="2.19.1"),
                         scaling=ScalingPolicy(min_nodes=min_nodes), status=ClusterStatus.READY,
                         endpoint="http://127.0.0.1:1", nodes=nodes)


def sample(nodes: int = 1) -> MetricsSample:
    return MetricsSample(cluster_id=CLUSTER, tenant_org_id=TENANT, taken_at=utcnow(),
                         stats=ClusterStats(health="green", nodes=nodes, heap_max_bytes=2**30), rates=OperationRates())


@pytest.fixture
def acks(monkeypatch) -> list[tuple[str, dict]]:
    """What became of the sample (ack, nak with its delay, term); not of the events sent on."""
    return settled_messages(monkeypatch, "ess.metrics.")


async def deliver(message, found: ClusterRecord | None | Exception, states: MemoryStates):
    async def read_record(cluster_id: str) -> ClusterRecord | None:
        if isinstance(found, Exception):
            raise found
        return found

    broker = NatsBroker()
    broker.include_router(handlers.router)
    broker.include_router(handlers.sample_router("test:1"))
    broker.context.set_global(handlers.CONTROLLER, ShardController(
        ShardPolicy(sustain_samples=1), states, HeldLeases(), read_record, engine_for=lambda r: IdleEngine()))
    async with TestNatsBroker(broker) as test_broker:
        await test_broker.publish(message, subjects.cluster_metrics(TENANT, CLUSTER), stream=subjects.METRICS_STREAM)
        # the bodies each declared publisher sent (its mock is reset when the test broker closes)
        return [[c.args[0] for c in publisher.mock.call_args_list]
                for publisher in (handlers.plan_changes, handlers.shard_actions, handlers.scale_requests)]


async def test_a_sample_below_the_tenants_minimum_asks_the_manager_for_nodes(acks):
    states = MemoryStates()
    plans, actions, scales = await deliver(sample(nodes=1), record(nodes=1, min_nodes=2), states)
    [plan] = plans
    assert (plan["nodes"], plan["current_nodes"]) == (2, 1)
    assert "below the tenant's minimum" in plan["reason"]
    assert [s["nodes"] for s in scales] == [2]
    assert [(a["action"], a["outcome"]) for a in actions] == [("scale_requested", "started")]
    assert states.kept[CLUSTER].operation.kind == "scale_out"  # kept once the events were out
    assert acks == [("ack", {})]


async def test_nothing_to_change_publishes_the_first_plan_only(acks):
    plans, actions, scales = await deliver(sample(), record(), MemoryStates())
    # the sample shows no request: the plan says why nothing changes, once
    assert [p["reason"] for p in plans] == ["no searches or writes in the last 1 sample: nothing to scale out for"]
    assert actions == scales == []


async def test_nats_away_naks_with_a_delay_and_keeps_no_state(acks):
    states = MemoryStates(fail_put=True)
    await deliver(sample(), record(nodes=1, min_nodes=2), states)
    assert acks == [("nak", {"delay": RETRY_DELAY_S})]
    assert states.kept == {}


async def test_a_malformed_sample_is_terminated_not_redelivered(acks):
    published = await deliver({"cluster_id": CLUSTER}, record(), MemoryStates())
    assert acks == [("term", {})]
    assert published == [[], [], []]


async def test_a_sample_of_a_deleted_cluster_is_acked_and_does_nothing(acks):
    published = await deliver(sample(), None, MemoryStates())
    assert acks == [("ack", {})]
    assert published == [[], [], []]


async def test_a_bug_is_raised_not_swallowed_and_the_sample_not_redelivered(acks):
    with pytest.raises(ZeroDivisionError):
        await deliver(sample(), ZeroDivisionError("a bug"), MemoryStates())
    assert acks == [("ack", {})]  # AckPolicy.ACK: the next sample comes anyway
