"""The orphan sweep destroys data, so it trusts only a direct read of the record: a short listing
(the cause of a lost index under load) must never remove a live cluster."""

from __future__ import annotations

from libs.common.models import ClusterRecord, ClusterSpec
from services.manager.provisioner import Provisioner
from services.manager.settings import ManagerSettings


def record(cluster_id: str) -> ClusterRecord:
    spec = ClusterSpec(replicas=1, cpu="500m", memory="512Mi", storage="5Gi", version="2.19.1")
    return ClusterRecord(id=cluster_id, tenant_org_id="acme", user="alice", service_name=cluster_id, spec=spec)


class ShortListingStore:
    """Lists nothing (as a racy key listing did), but a direct read finds what exists."""

    def __init__(self, *records: ClusterRecord):
        self.records = {r.id: r for r in records}

    async def list(self) -> list[ClusterRecord]:
        return []

    async def get(self, cluster_id: str):
        found = self.records.get(cluster_id)
        return (found, 1) if found else None


class DriverWithData:
    def __init__(self, *on_disk: str):
        self.on_disk, self.removed = set(on_disk), []

    async def orphans(self, known_ids: set[str]) -> set[str]:
        return self.on_disk - known_ids

    async def remove(self, cluster_id: str) -> None:
        self.removed.append(cluster_id)

    def keep_warm(self) -> None:
        pass


class AlwaysHeld:
    async def hold(self, cluster_id: str) -> bool:
        return True


async def test_a_live_cluster_missing_from_a_listing_keeps_its_data():
    driver = DriverWithData("c-live", "c-gone")
    provisioner = Provisioner(ManagerSettings(), ShortListingStore(record("c-live")), driver, publish=None,
                              leases=AlwaysHeld())
    await provisioner.reconcile_all()
    assert driver.removed == ["c-gone"]  # only what a direct read says has no record
