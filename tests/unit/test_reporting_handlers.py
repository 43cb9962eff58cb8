"""Reporting's handlers on FastStream's in-memory broker: gateway activity in, metered into the
open period; samples and usage records out through the declared publishers, on their cluster's
subject; NATS away naks with a delay, a malformed event is terminated."""

from __future__ import annotations

import time

import nats.errors
import pytest
from faststream.nats import NatsBroker, TestNatsBroker
from faststream.nats.annotations import NatsMessage
from prometheus_client import CollectorRegistry

from libs.common import subjects
from libs.common.events import ClusterActivity, MetricsSample, OperationRates, UsageRecord
from libs.common.failures import RETRY_DELAY_S
from libs.common.metrics import ClusterStats, OperationTotals
from libs.common.models import utcnow
from services.reporting.settings import ReportingSettings
from services.reporting import handlers
from services.reporting.exposition import ServiceMetrics
from services.reporting.metering import UsageMeter
from services.reporting.polling import Poller
from tests.broker_testing import settled_messages

TENANT, CLUSTER = "acme", "c1"


class MemoryMeters:
    def __init__(self, fail: bool = False):
        self.meters: dict[str, UsageMeter] = {}
        self.fail = fail

    async def get(self, cluster_id: str) -> UsageMeter | None:
        if self.fail:
            raise nats.errors.TimeoutError
        return self.meters.get(cluster_id)

    async def change(self, cluster_id: str, fold) -> None:
        self.meters[cluster_id] = await fold(await self.get(cluster_id))

    async def delete(self, cluster_id: str) -> None:
        self.meters.pop(cluster_id, None)

    async def all(self) -> list[UsageMeter]:
        return list(self.meters.values())


@pytest.fixture
def acks(monkeypatch) -> list[tuple[str, dict]]:
    """What became of the activity message: ack, nak (with its delay) or term."""
    return settled_messages(monkeypatch, "ess.activity.")


def activity(requests: int = 3) -> ClusterActivity:
    return ClusterActivity(cluster_id=CLUSTER, tenant_org_id=TENANT, gateway="g1", requests=requests,
                           bytes_in=100, bytes_out=2000, last_request_at=utcnow())


def poller_with(meters: MemoryMeters) -> Poller:
    # explicit, not from the environment: the suite's platform fixture exports ESS_METERING_PERIOD_S=8
    return Poller(ReportingSettings(metering_period_s=3600), handlers.publish_sample, handlers.publish_usage, meters,
                  ServiceMetrics(CollectorRegistry()))


def broker_with(poller: Poller, seen: list) -> NatsBroker:
    broker = NatsBroker()
    broker.include_router(handlers.router)
    broker.context.set_global(handlers.POLLER, poller)

    @broker.subscriber(subjects.USAGE_ALL, stream=subjects.USAGE_STREAM)
    async def usage_seen(record: UsageRecord, message: NatsMessage) -> None:
        seen.append((message.raw_message.subject, message.headers.get("Nats-Msg-Id"), record))

    return broker


async def test_gateway_activity_goes_into_the_open_period(acks):
    meters = MemoryMeters()
    async with TestNatsBroker(broker_with(poller_with(meters), [])) as broker:
        await broker.publish(activity(3), subjects.cluster_activity(TENANT, CLUSTER), stream=subjects.ACTIVITY_STREAM)
        await broker.publish(activity(2), subjects.cluster_activity(TENANT, CLUSTER), stream=subjects.ACTIVITY_STREAM)
    meter = meters.meters[CLUSTER]
    assert (meter.requests, meter.bytes_in, meter.bytes_out) == (5, 200, 4000)
    assert acks == [("ack", {}), ("ack", {})]


async def test_nats_away_naks_the_activity_with_a_delay(acks):
    async with TestNatsBroker(broker_with(poller_with(MemoryMeters(fail=True)), [])) as broker:
        await broker.publish(activity(), subjects.cluster_activity(TENANT, CLUSTER), stream=subjects.ACTIVITY_STREAM)
    assert acks == [("nak", {"delay": RETRY_DELAY_S})]


async def test_a_malformed_activity_is_terminated(acks):
    meters = MemoryMeters()
    async with TestNatsBroker(broker_with(poller_with(meters), [])) as broker:
        await broker.publish({"cluster_id": CLUSTER, "requests": "many"}, subjects.cluster_activity(TENANT, CLUSTER),
                             stream=subjects.ACTIVITY_STREAM)
    assert acks == [("term", {})]
    assert meters.meters == {}


async def test_a_closed_period_is_published_on_its_cluster_with_its_message_id():
    meters, seen = MemoryMeters(), []
    hours_ago = int(time.time()) // 3600 * 3600 - 3 * 3600
    meters.meters[CLUSTER] = UsageMeter(cluster_id=CLUSTER, tenant_org_id=TENANT, period_start=hours_ago,
                                        last_sample_at=hours_ago + 60, last_totals=OperationTotals(), requests=7)
    async with TestNatsBroker(broker_with(poller_with(meters), seen)):
        await poller_with(meters).close_stale_periods()
    [(subject, message_id, record)] = seen
    assert subject == subjects.cluster_usage(TENANT, CLUSTER)
    assert message_id == subjects.usage_message_id(CLUSTER, hours_ago)
    assert record.requests == 7
    assert meters.meters == {}


async def test_a_sample_goes_out_on_its_clusters_metrics_subject():
    sample = MetricsSample(cluster_id=CLUSTER, tenant_org_id=TENANT, taken_at=utcnow(),
                           stats=ClusterStats(health="green", nodes=1), rates=OperationRates())
    async with TestNatsBroker(broker_with(poller_with(MemoryMeters()), [])):
        await handlers.publish_sample(sample)
        [call] = handlers.metric_samples.mock.call_args_list
    assert MetricsSample.model_validate(call.args[0]) == sample
