"""The manager's NATS handlers: each a typed subscriber of one lifecycle event, given the wiring
through FastStream's context. None has a next event of its own to return (status events go to
each cluster's subject, through the provisioner); what they change, they change in KV.

Failures: a temporary one (NATS away, see `failures.py`) naks the event with a delay, and it
comes again; a permanent one (a quota refuses, the cluster is gone) acks it and logs why."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Annotated, ParamSpec, TypeVar

import structlog
from faststream import AckPolicy, Context
from faststream.nats import NatsBroker, NatsRouter, PullSub

from libs.common import subjects
from libs.common.events import ClusterActivity, ClusterDesiredStateChanged, ClusterScaleRequested, ClusterWakeRequested
from libs.common.store import RecordGone
from libs.common.streams import ACTIVITY, LIFECYCLE
from libs.common.failures import NATS_FAILURES, FailureOutcomes, try_again_later
from services.manager.quotas import QuotaRefused
from services.manager.transitions import accept_scale, note_activity, scale_wanted
from services.manager.wiring import ManagerDeps

CONTEXT_KEY = "manager"  # where `app.py` puts the ManagerDeps in the broker's context
Deps = Annotated[ManagerDeps, Context(CONTEXT_KEY)]
log = structlog.get_logger("manager")
RETRY_DELAY_S = 2.0  # shorter than the shared 5 s: a request held at a gateway waits on a wake

P = ParamSpec("P")
R = TypeVar("R")


def nak_temporary(handler: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """A temporary failure naks the event with a delay (at once would spin while NATS is away)."""

    @functools.wraps(handler)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await handler(*args, **kwargs)
        except NATS_FAILURES as exc:
            raise try_again_later(log, "NATS away", exc, RETRY_DELAY_S, handler=handler.__name__) from exc

    return guarded


@nak_temporary
async def on_desired_state(event: ClusterDesiredStateChanged, deps: Deps) -> None:
    # reconcile is idempotent: a redelivered event only looks again
    deps.provisioner.kick(event.cluster_id)


@nak_temporary
async def on_scale_requested(event: ClusterScaleRequested, deps: Deps) -> None:
    found = await deps.store.get(event.cluster_id)
    if found is None or not scale_wanted(found[0], event.nodes):
        return  # gone, or pinned, bounded, asleep or that size meanwhile: nothing to do
    tenant = await deps.tenants.ensure(found[0].tenant_org_id)
    try:
        async with deps.quotas.resizing(tenant, found[0], event.nodes):
            await deps.store.mutate(event.cluster_id, lambda r: accept_scale(r, event.nodes, event.reason))
    except QuotaRefused as refused:
        log.warning("node count request ignored", cluster=event.cluster_id, nodes=event.nodes,
                    reason=refused.exceeded.message)
        return
    except RecordGone:
        log.info("node count request ignored", cluster=event.cluster_id, reason="the cluster is gone")
        return
    deps.provisioner.kick(event.cluster_id)


@nak_temporary
async def on_wake_requested(event: ClusterWakeRequested, deps: Deps) -> None:
    await deps.wake(event.cluster_id, event.reason)


@nak_temporary
async def on_activity(event: ClusterActivity, deps: Deps) -> None:
    try:
        await deps.store.mutate(event.cluster_id, lambda r: note_activity(r, event.last_request_at))
    except RecordGone:
        pass  # activity of a deleted cluster counts for nothing


def subscribe(broker: NatsBroker) -> None:
    """Declare the manager's subscribers on `broker` (before it starts; AsyncAPI lists them)."""
    # a malformed event is terminated with its reason, a bug logged (as in every service)
    router = NatsRouter(middlewares=[FailureOutcomes])

    def durable(subject: str, stream, name: str, batch: int, timeout: float, title: str, description: str):
        return router.subscriber(subject, stream=stream, durable=name, pull_sub=PullSub(batch_size=batch,
                                 timeout=timeout), ack_policy=AckPolicy.NACK_ON_ERROR, title=title,
                                 description=description)

    durable(subjects.DESIRED_ALL, LIFECYCLE, subjects.PROVISIONER_DURABLE, 16, 1.0, "cluster desired state",
            "The API changed a cluster's desired state.")(on_desired_state)
    durable(subjects.SCALE_ALL, LIFECYCLE, subjects.MANAGER_SCALE_DURABLE, 16, 1.0, "node count requests",
            "The shard controller asks for a cluster's node count.")(on_scale_requested)
    durable(subjects.WAKE_ALL, LIFECYCLE, subjects.MANAGER_WAKE_DURABLE, 16, 0.2, "wake requests",
            "A request reached a hibernated cluster at a gateway.")(on_wake_requested)
    durable(subjects.ACTIVITY_ALL, ACTIVITY, subjects.MANAGER_ACTIVITY_DURABLE, 64, 1.0, "cluster activity",
            "A gateway's request counts for a cluster; they keep it awake.")(on_activity)
    broker.include_router(router)
