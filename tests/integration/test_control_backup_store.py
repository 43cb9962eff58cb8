"""Control-plane backups in the S3 bucket (the Kubernetes platform's store), against a real S3 API
(moto's server) and real NATS servers: a backup taken from one NATS is listed and restored into
another, empty one with every bucket entry and stream message as it was; a restore into a NATS
that holds state, or of a backup with a changed object, writes nothing."""

from __future__ import annotations

from pathlib import Path

from faststream.nats import NatsBroker

from devrun.nats_server import NatsServer
from devrun.supervisor import free_port
from libs.common import streams, subjects
from libs.common.kv import open_bucket, read_value
from libs.common.streams import read_subject
from services.manager import control_backup as plan
from services.manager.control_plane import BackupDamaged, ControlPlaneBackups, ControlPlaneNotEmpty
from services.manager.object_store import ObjectStore

STATE = {
    subjects.KV_TENANTS: {"acme": b'{"tenant_org_id":"acme"}'},
    subjects.KV_API_KEYS: {"0123456789abcdef": b'{"key_id":"0123456789abcdef","secret_hash":"x"}'},
    subjects.KV_QUOTA_CLAIMS: {"acme": b'{"claims":{}}'},
}


class NoEngines:
    async def orphans(self, known_ids: set[str]) -> set[str]:
        return set()


async def started(tmp: Path, name: str) -> tuple[NatsServer, NatsBroker]:
    server = NatsServer(f"nats://127.0.0.1:{free_port()}", tmp / name, tmp / f"{name}.log")
    server.start()
    broker = NatsBroker(f"nats://127.0.0.1:{server.port}")
    await broker.connect()
    return server, broker


async def test_a_backup_in_the_bucket_comes_back_into_an_empty_nats(s3, bucket, tmp_path):
    settings = s3.settings(bucket)
    store = ObjectStore(settings)
    await store.ensure_bucket()
    first, broker = await started(tmp_path, "first")
    try:
        for name, entries in STATE.items():
            kv = await open_bucket(broker, name, 1)
            for key, value in entries.items():
                await kv.put(key, value)
        js = broker.connection.jetstream()
        await streams.declare_stream(js, streams.USAGE, 1)
        await js.publish("ess.usage.acme.c1", b'{"n":1}', stream=subjects.USAGE_STREAM,
                         headers={"Nats-Msg-Id": "usage.c1.0"})
        manifest = await ControlPlaneBackups(settings, broker, store, None, NoEngines()).take("test")
        assert manifest.buckets[subjects.KV_API_KEYS] == 1 and manifest.streams[subjects.USAGE_STREAM] == 1
        assert f"control-plane/{manifest.id}/manifest.json" in s3.keys_in(bucket, "control-plane/")
        with_state = ControlPlaneBackups(settings, broker, store, None, NoEngines())
        try:
            await with_state.restore(manifest.id)
            raise AssertionError("restored into a NATS that holds state")
        except ControlPlaneNotEmpty as exc:
            assert subjects.KV_TENANTS in exc.buckets
    finally:
        await broker.stop()
        first.stop()

    second, broker = await started(tmp_path, "second")
    try:
        backups = ControlPlaneBackups(settings, broker, store, None, NoEngines())
        assert [m.id for m in await backups.list()] == [manifest.id]
        key = f"control-plane/{manifest.id}/{plan.kv_file(subjects.KV_TENANTS)}"
        original = s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()
        s3.client().put_object(Bucket=bucket, Key=key, Body=original.replace(b"a", b"b", 1))
        try:
            await backups.restore(manifest.id)
            raise AssertionError("a changed object was restored")
        except BackupDamaged as exc:
            assert exc.problems[0].startswith(plan.kv_file(subjects.KV_TENANTS))
        tenants = await open_bucket(broker, subjects.KV_TENANTS, 1)
        assert await read_value(tenants, "acme") is None  # nothing written
        s3.client().put_object(Bucket=bucket, Key=key, Body=original)

        # a restore that failed half-way (NATS away) left its mark and part of its writes: redone
        await (await open_bucket(broker, subjects.KV_PLATFORM, 1)).put("restore", plan.restore_mark(manifest.id, False))
        await tenants.put("acme", STATE[subjects.KV_TENANTS]["acme"])
        await streams.declare_stream(broker.connection.jetstream(), streams.USAGE, 1)
        await broker.connection.jetstream().publish(
            "ess.usage.acme.c1", b'{"n":1}', stream=subjects.USAGE_STREAM, headers={"Nats-Msg-Id": "usage.c1.0"})
        report = await backups.restore(manifest.id)
        assert report.buckets == manifest.buckets and report.clusters == 0
        for name, entries in STATE.items():
            kv = await open_bucket(broker, name, 1)
            for entry_key, value in entries.items():
                assert await read_value(kv, entry_key) == value
        usage = await read_subject(broker.connection.jetstream(), subjects.USAGE_STREAM, "ess.usage.>")
        assert [(m.subject, m.data, m.headers["Nats-Msg-Id"]) for m in usage] == [
            ("ess.usage.acme.c1", b'{"n":1}', "usage.c1.0")]  # once, though published twice
        try:  # done now: a second restore would mix two pasts
            await backups.restore(manifest.id)
            raise AssertionError("restored twice")
        except ControlPlaneNotEmpty:
            pass
    finally:
        await broker.stop()
        second.stop()
