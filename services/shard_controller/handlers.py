"""The shard controller's NATS surface: metric samples in; shard plans, actions and node-count
requests out, through the publishers declared here once (they also make its AsyncAPI document).

The handler only carries: `ShardController.on_sample` decides and acts and returns its events,
the handler publishes them, then keeps the controller's state. Each instance has its own consumer
(`sample_router`), so with two instances both see every sample and the lease holder acts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

import structlog
from faststream import AckPolicy, Context
from faststream.nats import NatsRouter, PullSub
from nats.js.api import ConsumerConfig, DeliverPolicy

from libs.common import streams, subjects
from libs.common.events import ClusterScaleRequested, Event, MetricsSample, ShardActionTaken, ShardPlanChanged
from libs.common.failures import NATS_FAILURES, FailureOutcomes, try_again_later
from services.shard_controller.controller import ShardController

CONTROLLER = "shard_controller"  # the context key of the running ShardController (set at start-up)

router = NatsRouter(middlewares=[FailureOutcomes])
log = structlog.get_logger("shard-controller")

plan_changes = router.publisher(subjects.cluster_plan("*", "*"), stream=streams.LIFECYCLE, schema=ShardPlanChanged,
                                title="shard plans", description="The controller's plan for a cluster changed.")
shard_actions = router.publisher(subjects.cluster_action("*", "*"), stream=streams.LIFECYCLE, schema=ShardActionTaken,
                                 title="shard actions", description="The controller acted, or an operation moved on.")
scale_requests = router.publisher(subjects.SCALE_ALL, stream=streams.LIFECYCLE, schema=ClusterScaleRequested,
                                  title="node count requests", description="A node count asked of the manager.")

# each event goes to its own cluster's subject, which consumers filter on: so it is published
# through its declared publisher with that subject, not returned to one fixed subject
_ROUTES = {
    ShardPlanChanged: (plan_changes, subjects.cluster_plan),
    ShardActionTaken: (shard_actions, subjects.cluster_action),
    ClusterScaleRequested: (scale_requests, subjects.cluster_scale),
}


async def publish_events(events: Iterable[Event]) -> None:
    for event in events:
        publisher, subject_of = _ROUTES[type(event)]
        # Nats-Msg-Id: a publish re-sent after a lost acknowledgement is stored once
        await publisher.publish(event, subject_of(event.tenant_org_id, event.cluster_id),
                                headers={"Nats-Msg-Id": event.event_id})


def sample_router(instance: str) -> NatsRouter:
    """The samples in, on this instance's own durable consumer (`subjects.controller_durable`)."""
    samples = NatsRouter(middlewares=[FailureOutcomes])
    samples.subscriber(
        subjects.METRICS_ALL, stream=streams.METRICS, durable=subjects.controller_durable(instance),
        pull_sub=PullSub(batch_size=32, timeout=1.0),
        config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW, inactive_threshold=subjects.CONTROLLER_DURABLE_IDLE_S),
        ack_policy=AckPolicy.ACK, title="cluster metrics", description="Samples the shard controller plans from.",
    )(on_sample)
    return samples


async def on_sample(sample: MetricsSample, controller: Annotated[ShardController, Context(CONTROLLER)]) -> None:
    try:
        turn = await controller.on_sample(sample)
        await publish_events(turn.events)
        await controller.keep(turn)
    except NATS_FAILURES as exc:
        # KV or a publish failed: the sample comes back, its steps are idempotent, and the
        # state is kept only after its events are out, so none of them is skipped
        raise try_again_later(log, "NATS away while handling a sample", exc, cluster=sample.cluster_id) from exc
