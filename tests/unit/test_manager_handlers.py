"""The manager's NATS handlers on FastStream's in-memory broker (the real-NATS runs are in
tests/integration): a node-count request becomes the spec, a quota refusal or a gone cluster
is acked with a reason, and NATS away naks the event with a delay."""

from contextlib import asynccontextmanager
from types import SimpleNamespace

import nats.errors
import pytest
from faststream.exceptions import NackMessage
from faststream.nats import NatsBroker, TestNatsBroker

from libs.common import subjects
from libs.common.events import ClusterScaleRequested, ClusterWakeRequested
from libs.common.models import ClusterStatus, TenantRecord
from services.manager import handlers
from services.manager.quotas import QuotaExceeded, QuotaRefused
from tests.kube_testing import RecordsInMemory
from tests.unit.test_planning import record


class Quotas:
    def __init__(self, refuse: bool = False):
        self.refuse = refuse

    @asynccontextmanager
    async def resizing(self, tenant, current, nodes):
        if self.refuse:
            raise QuotaRefused(QuotaExceeded("max_nodes", 2, 3))
        yield


class Tenants:
    async def ensure(self, tenant_org_id):
        return TenantRecord(tenant_org_id=tenant_org_id)


class Provisioner:
    def __init__(self):
        self.kicked: list[str] = []

    def kick(self, cluster_id):
        self.kicked.append(cluster_id)


def deps(store, refuse=False):
    return SimpleNamespace(store=store, tenants=Tenants(), quotas=Quotas(refuse), provisioner=Provisioner())


def scale(nodes=3) -> ClusterScaleRequested:
    return ClusterScaleRequested(cluster_id="c1", tenant_org_id="acme", nodes=nodes, reason="search load")


async def test_a_scale_request_through_the_in_memory_broker_becomes_the_spec():
    store = RecordsInMemory(record(ClusterStatus.READY))
    wired = deps(store)
    broker = NatsBroker()
    handlers.subscribe(broker)
    broker.context.set_global(handlers.CONTEXT_KEY, wired)
    async with TestNatsBroker(broker) as test_broker:
        await test_broker.publish(scale(), subjects.cluster_scale("acme", "c1"), stream=subjects.LIFECYCLE_STREAM)
    changed = store.records["c1"]
    assert (changed.spec.replicas, changed.status) == (3, ClusterStatus.SCALING)
    assert wired.provisioner.kicked == ["c1"]


async def test_a_refused_quota_acks_and_leaves_the_record():
    store = RecordsInMemory(record(ClusterStatus.READY))
    wired = deps(store, refuse=True)
    await handlers.on_scale_requested(scale(), wired)  # returns: the event is acked
    assert store.records["c1"].spec.replicas == 1 and wired.provisioner.kicked == []


async def test_a_request_for_a_gone_or_pinned_cluster_changes_nothing():
    empty = deps(RecordsInMemory())
    await handlers.on_scale_requested(scale(), empty)
    assert empty.provisioner.kicked == []
    same = deps(RecordsInMemory(record(ClusterStatus.READY)))
    await handlers.on_scale_requested(scale(nodes=1), same)
    assert same.provisioner.kicked == []


async def test_nats_away_naks_with_a_delay():
    class Away(RecordsInMemory):
        async def get(self, cluster_id):
            raise nats.errors.TimeoutError()

    with pytest.raises(NackMessage) as nak:
        await handlers.on_scale_requested(scale(), deps(Away()))
    assert nak.value.extra_options == {"delay": handlers.RETRY_DELAY_S}

    class Wakes:
        async def wake(self, cluster_id, reason):
            raise nats.errors.NoServersError()

    with pytest.raises(NackMessage):
        await handlers.on_wake_requested(ClusterWakeRequested(cluster_id="c1", tenant_org_id="acme",
                                                              reason="a request"), Wakes())


async def test_a_bug_is_not_swallowed():
    class Broken(RecordsInMemory):
        async def get(self, cluster_id):
            raise KeyError("a bug")

    with pytest.raises(KeyError):
        await handlers.on_scale_requested(scale(), deps(Broken()))
