"""Reporting's NATS surface: gateway activity in, metered into the cluster's open period; metric
samples and usage records out, through the publishers declared here once (they also make its
AsyncAPI document). The polling loops (`polling.py`) are timers, and publish through them."""

from __future__ import annotations

from typing import Annotated

import structlog
from faststream import AckPolicy, Context
from faststream.nats import NatsRouter, PullSub

from libs.common import streams, subjects
from libs.common.events import ClusterActivity, MetricsSample, UsageRecord
from libs.common.failures import NATS_FAILURES, FailureOutcomes, try_again_later
from services.reporting.polling import Poller

POLLER = "poller"  # the context key of the running Poller (set at start-up)

router = NatsRouter(middlewares=[FailureOutcomes])
log = structlog.get_logger("reporting")

metric_samples = router.publisher(subjects.METRICS_ALL, stream=streams.METRICS, schema=MetricsSample,
                                  title="cluster metrics", description="One poll of one tenant cluster.")
usage_records = router.publisher(subjects.USAGE_ALL, stream=streams.USAGE, schema=UsageRecord, title="usage records",
                                 description="What one cluster used in one metering period.")


# each event goes to its own cluster's subject (consumers filter on it), through its publisher
async def publish_sample(sample: MetricsSample) -> None:
    await metric_samples.publish(sample, subjects.cluster_metrics(sample.tenant_org_id, sample.cluster_id))


async def publish_usage(usage: UsageRecord) -> None:
    # the same id for the same cluster and period: JetStream drops a second copy
    message_id = subjects.usage_message_id(usage.cluster_id, int(usage.period_start.timestamp()))
    await usage_records.publish(usage, subjects.cluster_usage(usage.tenant_org_id, usage.cluster_id),
                                headers={"Nats-Msg-Id": message_id})


@router.subscriber(
    subjects.ACTIVITY_ALL, stream=streams.ACTIVITY, durable=subjects.REPORTING_ACTIVITY_DURABLE,
    pull_sub=PullSub(batch_size=64, timeout=1.0), ack_policy=AckPolicy.NACK_ON_ERROR,
    title="cluster activity", description="A gateway's request and byte counts, metered per period.",
)
async def on_activity(event: ClusterActivity, poller: Annotated[Poller, Context(POLLER)]) -> None:
    try:
        await poller.add_activity(event)
    except NATS_FAILURES as exc:  # the meter is in KV: the counts come back later, none lost
        raise try_again_later(log, "activity not metered: NATS away", exc, cluster=event.cluster_id) from exc
