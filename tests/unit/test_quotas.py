"""Quota claims: the pure decisions, and the ledger's read-decide-update loop against a KV fake."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from types import SimpleNamespace

import pytest
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from libs.common.models import ClusterRecord, ClusterSpec, TenantQuotas, TenantRecord, utcnow
from services.manager.quotas import (
    GiB,
    Claim,
    QuotaExceeded,
    QuotaLedger,
    QuotaRefused,
    TenantClaims,
    check_claims,
    settled,
    untouched,
    with_resize,
)

NOW = utcnow()
QUOTAS = TenantQuotas(max_clusters=2, max_nodes=3, max_storage_gb=10)


def claim(nodes=1, storage_gb=5, age_s=0, **resizing) -> Claim:
    return Claim(nodes=nodes, storage_bytes=storage_gb * GiB, changed_at=NOW - timedelta(seconds=age_s),
                 resizing=resizing)


def record(cluster_id="c1", replicas=1, tenant="acme", **fields) -> ClusterRecord:
    spec = ClusterSpec(replicas=replicas, cpu="500m", memory="512Mi", storage="5Gi", version="2.19.1")
    return ClusterRecord(id=cluster_id, tenant_org_id=tenant, user="alice", service_name=cluster_id, spec=spec,
                         **fields)


def test_a_new_cluster_at_the_limit_is_allowed_and_one_past_is_refused():
    one = {"c1": claim()}
    assert check_claims(QUOTAS, one, {**one, "c2": claim(nodes=2)}) is None
    two = {**one, "c2": claim()}
    assert check_claims(QUOTAS, two, {**two, "c3": claim()}) == QuotaExceeded("max_clusters", 2, 3)
    assert check_claims(QUOTAS, one, {**one, "c2": claim(nodes=3)}) == QuotaExceeded("max_nodes", 3, 4)
    assert check_claims(QUOTAS, one, {**one, "c2": claim(storage_gb=6)}) == QuotaExceeded("max_storage_gb", 10, 11)


def test_scaling_up_is_held_to_max_nodes_and_scaling_down_always_passes():
    two = {"c1": claim(), "c2": claim()}
    assert check_claims(QUOTAS, two, with_resize(two, record("c1"), "x", 2, NOW)) is None
    assert check_claims(QUOTAS, two, with_resize(two, record("c1"), "x", 3, NOW)) == QuotaExceeded("max_nodes", 3, 4)
    # the operator lowered the quota below what the tenant has: getting smaller is still allowed
    over = {"c1": claim(nodes=3), "c2": claim(nodes=2)}
    assert check_claims(QUOTAS, over, with_resize(over, record("c1", 3), "x", 2, NOW)) is None
    assert check_claims(QUOTAS, over, with_resize(over, record("c1", 3), "x", 4, NOW)).quota == "max_nodes"


def test_a_resize_holds_the_larger_count_until_it_settles_to_the_record():
    claims = with_resize({"c1": claim(nodes=3)}, record("c1", 3), "down", 1, NOW)
    assert claims["c1"].held_nodes == 3  # the record may still say 3
    claims = settled(claims, "c1", record("c1", 1), NOW, ["down"])
    assert (claims["c1"].nodes, claims["c1"].held_nodes) == (1, 1)


def test_a_concurrent_raise_of_the_same_cluster_stays_held_when_a_lower_settles_first():
    claims = with_resize({"c1": claim()}, record("c1"), "up", 3, NOW)
    claims = with_resize(claims, record("c1"), "down", 2, NOW)
    # "down" wrote the record and settles before "up" writes its record
    claims = settled(claims, "c1", record("c1", 2), NOW, ["down"])
    assert claims["c1"].held_nodes == 3
    claims = settled(claims, "c1", record("c1", 3), NOW, ["up"])
    assert (claims["c1"].held_nodes, claims["c1"].resizing) == (3, {})


def test_a_cluster_without_a_record_or_being_deleted_claims_nothing():
    claims = {"c1": claim(), "c2": claim()}
    assert settled(claims, "c1", None, NOW, []) == {"c2": claims["c2"]}
    assert settled(claims, "c1", record("c1", delete_requested=True), NOW, []) == {"c2": claims["c2"]}
    assert settled(claims, "gone", None, NOW, []) == claims


def test_only_claims_untouched_for_a_minute_are_checked_against_their_records():
    claims = {"fresh": claim(age_s=5), "old": claim(age_s=61)}
    assert untouched(claims, NOW) == ["old"]


class FakeKeyValue:
    """The three calls the ledger makes, with JetStream's revision checks; each call yields the loop."""

    def __init__(self):
        self.entries: dict[str, tuple[bytes, int]] = {}
        self.revision = 0

    async def get(self, key):
        await asyncio.sleep(0)
        if key not in self.entries:
            raise KeyNotFoundError()
        value, revision = self.entries[key]
        return SimpleNamespace(value=value, revision=revision)

    async def create(self, key, value):
        return await self.update(key, value, last=0)

    async def update(self, key, value, last):
        await asyncio.sleep(0)
        if self.entries.get(key, (b"", 0))[1] != last:
            raise KeyWrongLastSequenceError()
        self.revision += 1
        self.entries[key] = (value, self.revision)
        return self.revision


class FakeClusters:
    def __init__(self, *records: ClusterRecord):
        self.records = {r.id: r for r in records}

    async def get(self, cluster_id):
        return (self.records[cluster_id], 1) if cluster_id in self.records else None

    async def read_all(self):
        return list(self.records.values())


TENANT = TenantRecord(tenant_org_id="acme", quotas=TenantQuotas(max_clusters=1, max_nodes=3, max_storage_gb=100))


async def create(ledger: QuotaLedger, new: ClusterRecord) -> str:
    try:
        async with ledger.creating(TENANT, new):
            await asyncio.sleep(0)  # the record is written here
    except QuotaRefused as refused:
        return refused.exceeded.quota
    return "created"


async def test_concurrent_creates_take_the_last_cluster_once():
    ledger = QuotaLedger(FakeKeyValue(), FakeClusters())
    results = await asyncio.gather(*[create(ledger, record(f"c{i}")) for i in range(4)])
    assert sorted(results) == ["created"] + ["max_clusters"] * 3


async def test_clusters_from_before_claims_count_and_a_failed_create_gives_its_claim_back():
    ledger = QuotaLedger(FakeKeyValue(), FakeClusters(record("old")))
    assert await create(ledger, record("new")) == "max_clusters"
    await ledger.release("acme", "old")
    with pytest.raises(RuntimeError):
        async with ledger.creating(TENANT, record("broken")):
            raise RuntimeError("the record could not be written")
    assert await create(ledger, record("new")) == "created"


async def test_a_claim_whose_record_never_appeared_stops_counting_after_a_minute():
    kv = FakeKeyValue()
    ledger = QuotaLedger(kv, FakeClusters())
    assert await create(ledger, record("died")) == "created"  # ... and the manager died before the record
    assert await create(ledger, record("next")) == "max_clusters"
    value, revision = kv.entries["acme"]
    held = TenantClaims.model_validate_json(value)
    held.claims["died"].changed_at -= timedelta(minutes=2)
    kv.entries["acme"] = (held.model_dump_json().encode(), revision)
    assert await create(ledger, record("next")) == "created"
