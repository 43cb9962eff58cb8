"""The manager's S3 code (services/manager/object_store.py, and the snapshotter's purge through it)
against a real S3 server: moto_server as its own process, checking keys as S3 does.

What an operator sees in the store is read back with a client of their own."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from devrun.supervisor import free_port
from libs.common.models import ClusterStatus, utcnow
from services.manager.object_store import ObjectStore, ObjectStoreError
from services.manager import snapshotter as snapshotter_module
from services.manager.snapshotter import Snapshotter
from tests.kube_testing import RecordsInMemory, record, until
from tests.s3_testing import S3Server


def put(s3: S3Server, bucket: str, keys: list[str]) -> None:
    client = s3.client()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: client.put_object(Bucket=bucket, Key=key, Body=b"x"), keys))


def deleted(cluster_id: str):
    gone = record(cluster_id)
    gone.status, gone.deleted_at, gone.final_snapshot = ClusterStatus.DELETED, utcnow(), "final-1"
    return gone


async def test_the_bucket_is_made_once_and_then_found(s3, bucket):
    store = ObjectStore(s3.settings(bucket))

    assert await store.ensure_bucket() is True
    assert await store.ensure_bucket() is False  # a restarted manager finds it
    assert await ObjectStore(s3.settings(bucket)).ensure_bucket() is False  # and so does another replica
    assert bucket in [b["Name"] for b in s3.client().list_buckets()["Buckets"]]


async def test_the_snapshotter_makes_the_bucket_when_it_starts_and_says_so(s3, bucket):
    settings = s3.settings(bucket, reconcile_interval_s=0.1)
    snapshotter = Snapshotter(settings, RecordsInMemory(), None, None, ObjectStore(settings))
    with capture_logs() as logs:
        passes = asyncio.create_task(snapshotter.run_periodic())  # as the manager's start-up does
        try:
            await until(lambda: any(e["event"] == "snapshot bucket ready" for e in logs), "bucket ready")
            await asyncio.sleep(0.5)  # a few more passes
        finally:
            passes.cancel()
    assert [(e["event"], e["created"]) for e in logs] == [("snapshot bucket ready", True)]  # made once
    assert bucket in [b["Name"] for b in s3.client().list_buckets()["Buckets"]]


async def test_purge_removes_exactly_the_clusters_prefix_and_its_record(s3, bucket):
    settings = s3.settings(bucket)
    store = ObjectStore(settings)
    await store.ensure_bucket()
    # more than one DeleteObjects batch under the purged cluster; c1 is a prefix of c10's id
    purged = [f"clusters/c1/indices/{i:04d}/__data" for i in range(1100)] + ["clusters/c1/index-0"]
    kept = ["clusters/c10/index-0", "clusters/c10/indices/a/__data", "clusters/c2/index-0", "clusters/c1-other"]
    put(s3, bucket, purged + kept)
    records = RecordsInMemory(deleted("c1"), record("c2"))
    snapshotter = Snapshotter(settings, records, None, None, store)

    await snapshotter.pass_all()
    await until(lambda: "c1" not in records.records, "the purged cluster's record removed")

    assert s3.keys_in(bucket) == sorted(kept)
    assert "c2" in records.records


async def test_a_purge_the_store_refuses_keeps_the_record_and_succeeds_on_a_later_pass(s3, bucket):
    await ObjectStore(s3.settings(bucket)).ensure_bucket()
    put(s3, bucket, ["clusters/c3/index-0", "clusters/c4/index-0"])
    records = RecordsInMemory(deleted("c3"))
    wrong = s3.settings(bucket, snapshot_secret_key=SecretStr("not-the-secret"))
    refused = Snapshotter(wrong, records, None, None, ObjectStore(wrong))

    with capture_logs() as logs:
        await refused.pass_all()
        failure = await until(lambda: next((e for e in logs if e["event"].startswith("backup step failed")), None),
                              "the refused purge logged")
    assert "refused the keys (SignatureDoesNotMatch" in failure["error"]
    assert "not-the-secret" not in str(logs)
    assert "c3" in records.records and s3.keys_in(bucket) == ["clusters/c3/index-0", "clusters/c4/index-0"]

    fixed = Snapshotter(s3.settings(bucket), records, None, None, ObjectStore(s3.settings(bucket)))
    await fixed.pass_all()
    await until(lambda: "c3" not in records.records, "the record removed once the purge succeeds")
    assert s3.keys_in(bucket) == ["clusters/c4/index-0"]


async def test_unknown_keys_are_refused_with_the_settings_to_check(s3, bucket):
    store = ObjectStore(s3.settings(bucket, snapshot_access_key=SecretStr("AKIANOSUCHKEY0000000"),
                                    snapshot_secret_key=SecretStr("nope-secret")))
    with pytest.raises(ObjectStoreError) as refused:
        await store.ensure_bucket()
    message = str(refused.value)
    assert f"cannot make bucket '{bucket}'" in message and "refused the keys" in message
    assert "ESS_SNAPSHOT_ACCESS_KEY and ESS_SNAPSHOT_SECRET_KEY" in message
    assert "nope-secret" not in message


async def test_an_unreachable_store_is_logged_with_its_reason_once_per_reason(s3, bucket, monkeypatch):
    monkeypatch.setattr(snapshotter_module, "BUCKET_RETRY_S", 0.0)  # no wait between tries here
    closed = f"http://127.0.0.1:{free_port()}"  # bound and released: nothing listens
    settings = s3.settings(bucket, snapshot_endpoint=closed, snapshot_store_timeout_s=2.0)
    snapshotter = Snapshotter(settings, RecordsInMemory(), None, None, ObjectStore(settings))

    with capture_logs() as logs:
        await snapshotter.ensure_bucket()
        await snapshotter.ensure_bucket()  # tried again: the same reason is not logged twice
    assert len(logs) == 1 and logs[0]["log_level"] == "error"
    assert f"the store at {closed} is unreachable" in logs[0]["reason"]
    assert "ESS_SNAPSHOT_ENDPOINT" in logs[0]["reason"]
