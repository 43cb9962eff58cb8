"""The orphan sweep destroys data, so it trusts only a direct read of the record: a short listing
(the cause of a lost index under load) must never remove a live cluster; and it removes only what
the store itself deleted, never a cluster it never knew (NATS's data lost, a restore to come)."""

from __future__ import annotations

from libs.common.models import ClusterRecord, ClusterSpec
from services.manager.provisioner import Provisioner
from services.manager.settings import ManagerSettings


def record(cluster_id: str) -> ClusterRecord:
    spec = ClusterSpec(replicas=1, cpu="500m", memory="512Mi", storage="5Gi", version="2.19.1")
    return ClusterRecord(id=cluster_id, tenant_org_id="acme", user="alice", service_name=cluster_id, spec=spec)


class ShortListingStore:
    """Lists nothing (as a racy key listing did), but a direct read finds what exists."""

    def __init__(self, *records: ClusterRecord, deleted: tuple[str, ...] = ()):
        self.records = {r.id: r for r in records}
        self.deleted = set(deleted)

    async def list(self) -> list[ClusterRecord]:
        return []

    async def get(self, cluster_id: str):
        found = self.records.get(cluster_id)
        return (found, 1) if found else None

    async def forgotten(self, cluster_id: str) -> bool:
        return cluster_id in self.deleted


class DriverWithData:
    def __init__(self, *on_disk: str):
        self.on_disk, self.removed = set(on_disk), []

    async def orphans(self, known_ids: set[str]) -> set[str]:
        return self.on_disk - known_ids

    async def remove(self, cluster_id: str) -> None:
        self.removed.append(cluster_id)
        self.on_disk.discard(cluster_id)

    def keep_warm(self) -> None:
        pass


class AlwaysHeld:
    async def hold(self, cluster_id: str) -> bool:
        return True


async def test_a_live_cluster_missing_from_a_listing_keeps_its_data():
    driver = DriverWithData("c-live", "c-gone")
    provisioner = Provisioner(ManagerSettings(), ShortListingStore(record("c-live"), deleted=("c-gone",)), driver,
                              publish=None, leases=AlwaysHeld())
    await provisioner.reconcile_all()
    assert driver.removed == ["c-gone"]  # only what a direct read says has no record


async def test_an_engine_no_record_ever_knew_keeps_its_data():
    driver = DriverWithData("c-after-backup", "c-deleted")
    provisioner = Provisioner(ManagerSettings(), ShortListingStore(deleted=("c-deleted",)), driver, publish=None,
                              leases=AlwaysHeld())
    await provisioner.reconcile_all()
    await provisioner.reconcile_all()
    assert driver.removed == ["c-deleted"]  # the never-known one waits for a restore or a person
