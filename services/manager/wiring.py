"""The manager's dependencies, built once NATS is connected, and only then: a frozen
`ManagerDeps` of which nothing is None. The HTTP routes reach it through FastAPI's `Depends`
(`http/deps.py`), the NATS handlers through FastStream's context (`handlers.py`)."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from faststream.nats import NatsBroker
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from libs.common import subjects
from libs.common.kv import read_model
from libs.common.leases import Leases
from libs.common.models import ClusterRecord, ControllerState
from libs.common.kv import open_bucket
from libs.common.streams import ACTIVITY, AUDIT, LIFECYCLE, bind_stream, declare_stream
from services.manager import operations
from services.manager.auth import ApiKeys, RateLimiter
from services.manager.control_plane import ControlPlaneBackups, target_for
from services.manager.drivers import Driver
from services.manager.engine_clients import EngineClients
from services.manager.fleet_runner import FleetUpgrades
from services.manager.operations import ActivityBatch
from services.manager.outbox import Outbox
from services.manager.provisioner import Provisioner
from services.manager.quotas import QuotaLedger
from services.manager.object_store import ObjectStore
from services.manager.settings import ManagerSettings
from services.manager.snapshotter import Snapshotter
from services.manager.store_index import ManagerStore
from services.manager.tenants import Tenants
from services.manager.transitions import EnginesOnOffer, NewClusterDefaults


@dataclass(frozen=True)
class ManagerDeps:
    settings: ManagerSettings
    broker: NatsBroker  # connected
    store: ManagerStore
    plans: KeyValue  # the shard controller's KV of plans, read for GET /clusters/{id}/plan
    tenants: Tenants
    quotas: QuotaLedger
    keys: ApiKeys
    limiter: RateLimiter
    driver: Driver
    provisioner: Provisioner
    backups: Snapshotter
    control: ControlPlaneBackups  # backups of the platform's own state
    fleet: FleetUpgrades  # the operator's upgrades of every cluster on a version
    engines: EngineClients
    activity: ActivityBatch
    outbox: Outbox
    offer: EnginesOnOffer  # what a create request may ask of this driver
    new_cluster_defaults: NewClusterDefaults

    async def hibernate(self, cluster_id: str, reason: str) -> ClusterRecord:
        return await operations.hibernate(self.store, self.provisioner, cluster_id, reason)

    async def wake(self, cluster_id: str, reason: str) -> ClusterRecord | None:
        return await operations.wake(self.store, self.provisioner, cluster_id, reason)

    async def shard_plan(self, cluster_id: str) -> dict | None:
        state = await read_model(self.plans, cluster_id, ControllerState)
        return state.model_dump(mode="json") if state else None

    def jetstream(self) -> JetStreamContext:
        return self.broker.connection.jetstream()

    def nats_connected(self) -> bool:
        connection = self.broker.connection
        return bool(connection and connection.is_connected)


async def connect(settings: ManagerSettings, broker: NatsBroker, driver: Driver, outbox: Outbox) -> ManagerDeps:
    """Declare the manager's streams, open its KV buckets through the connected broker, and
    build what uses them."""
    copies = settings.nats_replicas
    store = await ManagerStore.open(broker, copies, settings.idempotency_ttl_s)
    operator_key = settings.operator_key.get_secret_value() if settings.operator_key else None
    js = broker.connection.jetstream()
    # the manager owns the lifecycle and audit streams; activity is the gateway's, bound here
    # since the manager's subscriber may start first (before `broker.start` makes its consumers)
    for owned in (LIFECYCLE, AUDIT):
        await declare_stream(js, owned, copies)
    await bind_stream(js, ACTIVITY, copies)
    # a stable holder: a manager restarted in place takes its clusters back at once
    holder = settings.instance_id or f"{socket.gethostname()}:{settings.api_port}"
    leases = Leases(await open_bucket(broker, subjects.KV_PROVISIONER_LEASES, copies, ttl=settings.lease_ttl_s),
                    holder)
    engines = EngineClients()
    # kubernetes repositories are in the bucket: the snapshotter makes it and empties purged prefixes
    objects = ObjectStore(settings) if settings.driver == "kubernetes" and settings.snapshot_bucket else None
    backups = Snapshotter(settings, store, leases, engines.engine_for, objects)
    provisioner = Provisioner(settings, store, driver, outbox.lifecycle, leases,
                              final_snapshot=backups.final_snapshot)
    offer = EnginesOnOffer(settings.driver, driver.engine_versions, driver.engine_lacks)
    fleet = FleetUpgrades(await open_bucket(broker, subjects.KV_FLEET_UPGRADES, copies), store, provisioner, leases,
                          offer, settings.reconcile_interval_s)
    return ManagerDeps(
        settings=settings, broker=broker, store=store, fleet=fleet,
        plans=await open_bucket(broker, subjects.KV_SHARD_PLANS, copies),
        tenants=Tenants(await open_bucket(broker, subjects.KV_TENANTS, copies)),
        quotas=QuotaLedger(await open_bucket(broker, subjects.KV_QUOTA_CLAIMS, copies), store),
        keys=ApiKeys(await open_bucket(broker, subjects.KV_API_KEYS, copies), operator_key),
        limiter=RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst),
        driver=driver, provisioner=provisioner, backups=backups, engines=engines,
        control=ControlPlaneBackups(settings, broker, target_for(settings, objects), leases, driver),
        activity=ActivityBatch(store, settings.activity_flush_s), outbox=outbox,
        offer=offer,
        new_cluster_defaults=NewClusterDefaults.of(settings),
    )
