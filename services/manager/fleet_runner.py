"""Runs the operator's fleet upgrades (`fleet.py` decides): keeps each in the fleet bucket, and on
every pass of one manager replica (the `fleet-upgrades` lease) starts the clusters `fleet_step`
names, with `operations.upgrade`, as a `PATCH version` would."""

from __future__ import annotations

import asyncio

import structlog
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from libs.common.failures import NATS_FAILURES
from libs.common.kv import all_keys, read_model
from libs.common.leases import Leases
from libs.common.models import utcnow
from libs.common.store import ClusterStore, RecordGone
from services.manager import fleet, operations
from services.manager.provisioner import Provisioner
from services.manager.transitions import EnginesOnOffer, NotNow, check_upgrade

LEASE = "fleet-upgrades"  # in the provisioner's lease bucket: one replica moves clusters


class FleetUpgrades:
    def __init__(self, bucket: KeyValue, store: ClusterStore, provisioner: Provisioner, leases: Leases,
                 offer: EnginesOnOffer, every_s: float):
        self._kv, self._store, self._provisioner = bucket, store, provisioner
        self._leases, self._offer, self._every_s = leases, offer, every_s
        self._wake = asyncio.Event()
        self._log = structlog.get_logger("fleet")

    async def ask(self, request: fleet.FleetUpgradeRequest, asked_by: str) -> fleet.FleetUpgradeView:
        """Raises transitions.Invalid (field `to_version`) for a path the driver does not take."""
        check_upgrade(request.engine, request.from_version, request.to_version, self._offer)
        records = await self._store.read_all()
        upgrade = fleet.new_upgrade(request, asked_by, records)
        await self._kv.create(upgrade.id, upgrade.model_dump_json().encode())
        self._log.info("fleet upgrade asked", upgrade=upgrade.id, engine=upgrade.engine,
                       from_version=upgrade.from_version, to_version=upgrade.to_version, at_once=upgrade.at_once,
                       clusters=len(upgrade.targets))
        self._wake.set()
        return fleet.view(upgrade, records)

    async def list(self) -> list[fleet.FleetUpgradeView]:
        records = await self._store.read_all()
        found = [await read_model(self._kv, key, fleet.FleetUpgrade) for key in await all_keys(self._kv)]
        return sorted((fleet.view(u, records) for u in found if u), key=lambda v: v.created_at, reverse=True)

    async def get(self, upgrade_id: str) -> fleet.FleetUpgradeView | None:
        upgrade = await read_model(self._kv, upgrade_id, fleet.FleetUpgrade)
        return fleet.view(upgrade, await self._store.read_all()) if upgrade else None

    async def run_periodic(self) -> None:
        while True:
            try:
                if await self._leases.hold(LEASE):
                    await self.pass_once()
            except (*NATS_FAILURES, KeyWrongLastSequenceError):  # the next pass tries again
                self._log.exception("fleet upgrade pass failed; trying again at the next one")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self._every_s)
            except asyncio.TimeoutError:
                pass

    async def pass_once(self) -> None:
        for key in await all_keys(self._kv):
            try:
                entry = await self._kv.get(key)
            except KeyNotFoundError:
                continue
            upgrade = fleet.FleetUpgrade.model_validate_json(entry.value)
            if upgrade.finished_at is None:
                await self._step(upgrade, entry.revision)

    async def _step(self, upgrade: fleet.FleetUpgrade, revision: int) -> None:
        step = fleet.fleet_step(upgrade, await self._store.read_all())
        for cluster_id in [*step.relabel, *step.upgrade]:
            try:
                await operations.upgrade(self._store, self._provisioner, cluster_id, upgrade.to_version,
                                         request_id=upgrade.id, wake_now=cluster_id in step.upgrade)
            except (NotNow, RecordGone) as exc:  # it changed since the read: the next pass sees it
                self._log.info("cluster not moved this pass", upgrade=upgrade.id, cluster=cluster_id, why=str(exc))
                continue
            upgrade.started[cluster_id] = utcnow()
            self._log.info("cluster upgrade started", upgrade=upgrade.id, cluster=cluster_id,
                           to_version=upgrade.to_version, now=cluster_id in step.upgrade)
        if step.done:
            upgrade.finished_at = utcnow()
            self._log.info("fleet upgrade done", upgrade=upgrade.id, moved=len(upgrade.started))
        if step.done or step.relabel or step.upgrade:
            # one writer (the lease holder); a conflict means a lost lease: the holder's pass redoes it
            await self._kv.update(upgrade.id, upgrade.model_dump_json().encode(), last=revision)
