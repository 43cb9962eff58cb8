"""Backups on Kubernetes against a real API server and a real S3 server (moto_server): a cluster
created with a bucket set has its keys Secret and its keystore init container, admitted under
the namespace's restricted profile (an OpenSearch one only when its image has repository-s3); and the manager's purge of a deleted cluster, once its
retention is over, empties its prefix of the bucket and nothing else.

No engine runs (none here has the S3 plugin): the objects a repository would hold are written to
the store by the test, as the engine would."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from kubernetes import client

from libs.common.models import ClusterStatus, utcnow
from services.manager.object_store import ObjectStore
from services.manager.provisioner import Provisioner
from services.manager.snapshotter import Snapshotter
from tests.kube_testing import (
    RecordsInMemory,
    make_driver,
    publish_nowhere,
    ready_observation,
    reconcile_until,
    record,
    requests_of,
    until,
)

TOOLS = {"elasticsearch": "bin/elasticsearch-keystore", "opensearch": "bin/opensearch-keystore"}


@pytest.mark.parametrize("engine_name", ["elasticsearch", "opensearch"])
async def test_a_cluster_with_a_bucket_has_its_keys_secret_and_keystore_init_container(
        control_plane, manager_token, engine, admin, cluster_id, s3, bucket, engine_name):
    driver = make_driver(control_plane, manager_token, engine, **s3.overrides(bucket), opensearch_s3_plugin=True)
    cluster = record(cluster_id, engine=engine_name)
    await driver.start(cluster, driver.size_for(cluster.spec))
    await ready_observation(driver, cluster_id, 1)  # the pod passed admission and runs
    namespace = f"ess-{cluster_id}"

    secret = admin.core.read_namespaced_secret("engine-s3-keys", namespace)
    assert {k: base64.b64decode(v).decode() for k, v in secret.data.items()} == {
        "access_key": s3.access_key, "secret_key": s3.secret_key}
    assert {f.manager for f in secret.metadata.managed_fields} == {"es-serverless"}
    [pod] = admin.core.list_namespaced_pod(namespace).items
    [init] = pod.spec.init_containers
    assert init.name == "keystore"
    assert f"{TOOLS[engine_name]} add -x -f s3.client.default.secret_key" in init.command[-1]
    assert {e.name: e.value_from.secret_key_ref.name for e in init.env if e.value_from} == {
        "S3_ACCESS_KEY": "engine-s3-keys", "S3_SECRET_KEY": "engine-s3-keys"}
    engine_env = {e.name: e.value for e in pod.spec.containers[0].env}
    assert engine_env["s3.client.default.endpoint"] == s3.url.removeprefix("http://")
    assert engine_env["s3.client.default.protocol"] == "http"
    # the keys are in the Secret alone: not in the StatefulSet or the pod an operator reads
    api = client.ApiClient()
    shown = json.dumps(api.sanitize_for_serialization(admin.statefulset(namespace))) + json.dumps(
        api.sanitize_for_serialization(pod))
    assert s3.access_key not in shown and s3.secret_key not in shown

    sent = requests_of(driver)
    await driver.start(cluster, driver.size_for(cluster.spec))
    assert sent and {method for method, _ in sent} == {"GET"}  # the unchanged Secret is not sent again
    await driver.remove(cluster_id)


async def test_an_opensearch_cluster_without_the_s3_plugin_gets_nothing_of_s3(
        control_plane, manager_token, engine, admin, cluster_id, s3, bucket):
    driver = make_driver(control_plane, manager_token, engine, **s3.overrides(bucket))  # the official image
    cluster = record(cluster_id, engine="opensearch")
    await driver.start(cluster, driver.size_for(cluster.spec))
    await ready_observation(driver, cluster_id, 1)
    namespace = f"ess-{cluster_id}"
    assert "engine-s3-keys" not in {s.metadata.name for s in admin.core.list_namespaced_secret(namespace).items}
    [pod] = admin.core.list_namespaced_pod(namespace).items
    assert not pod.spec.init_containers
    assert not [e.name for e in pod.spec.containers[0].env if e.name.startswith("s3.")]
    await driver.remove(cluster_id)


async def test_the_purge_of_a_deleted_cluster_empties_its_prefix_after_the_retention(
        control_plane, manager_token, engine, admin, cluster_id, s3, bucket):
    driver = make_driver(control_plane, manager_token, engine, **s3.overrides(bucket))
    settings = driver._settings
    cluster = record(cluster_id)
    store = RecordsInMemory(cluster)
    snapshotter = Snapshotter(settings, store, None, None, ObjectStore(settings))
    await snapshotter.ensure_bucket()  # what the manager does when it starts

    async def final_snapshot(current):
        return True, "final-1"  # the engine took it: its files are the ones written below

    provisioner = Provisioner(settings, store, driver, publish_nowhere, leases=None, final_snapshot=final_snapshot)
    await reconcile_until(provisioner, store, cluster_id, lambda r: r.status == ClusterStatus.READY, "ready")
    ours = [f"clusters/{cluster_id}/index-0", f"clusters/{cluster_id}/indices/x/0/__a",
            f"clusters/{cluster_id}/snap-final-1.dat"]
    others = [f"clusters/{cluster_id}0/index-0", "clusters/cother/index-0"]
    keeper = s3.client()
    for key in ours + others:
        keeper.put_object(Bucket=bucket, Key=key, Body=b"x")

    def delete(current):
        current.delete_requested, current.deleted_at, current.status = True, utcnow(), ClusterStatus.DELETING
        return current

    await store.mutate(cluster_id, delete)
    await reconcile_until(provisioner, store, cluster_id, lambda r: r.status == ClusterStatus.DELETED, "deleted")
    assert not admin.namespace_exists(f"ess-{cluster_id}")
    assert s3.keys_in(bucket) == sorted(ours + others)  # within the retention: kept for undelete

    def retention_over(current):
        current.deleted_at -= timedelta(seconds=settings.deleted_retention_s + 1)
        return current

    await store.mutate(cluster_id, retention_over)
    await snapshotter.pass_all()
    await until(lambda: cluster_id not in store.records, "the purged cluster's record removed")
    assert s3.keys_in(bucket) == sorted(others)
