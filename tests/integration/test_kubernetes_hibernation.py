"""Hibernation on the kubernetes driver, against the real control plane: the StatefulSet goes to
0 replicas, no pod runs and the volume claim stays bound; a wake brings the pod back on it."""

from __future__ import annotations

from libs.common.models import ClusterStatus, utcnow
from services.manager.provisioner import Provisioner
from services.manager.transitions import request_hibernation, request_wake
from tests.kube_testing import RecordsInMemory, publish_nowhere, reconcile_until, record, until


async def test_a_hibernated_cluster_runs_no_pod_keeps_its_claim_and_wakes_on_it(driver, admin, engine, cluster_id):
    namespace = f"ess-{cluster_id}"
    store = RecordsInMemory(record(cluster_id))
    provisioner = Provisioner(driver._settings.model_copy(update={"hibernate_grace_s": 0}), store, driver,
                              publish_nowhere, leases=None)
    await reconcile_until(provisioner, store, cluster_id, lambda r: r.status == ClusterStatus.READY, "ready")
    claim = admin.core.read_namespaced_persistent_volume_claim("data-engine-0", namespace)

    await store.mutate(cluster_id, lambda r: request_hibernation(r, "asked by the test"))
    asleep = await reconcile_until(provisioner, store, cluster_id, lambda r: r.status == ClusterStatus.HIBERNATED,
                                   "hibernated")
    assert asleep.nodes == 0 and admin.statefulset(namespace).spec.replicas == 0
    # flushed first (the wake replays no translog), and its store's size kept to meter it asleep
    assert engine.flushed >= 1 and asleep.stored_bytes == engine.store_bytes  # a pass may see the pod still
    await until(lambda: not admin.core.list_namespaced_pod(namespace).items, "no pod left")
    kept = admin.core.read_namespaced_persistent_volume_claim("data-engine-0", namespace)
    assert (kept.metadata.uid, kept.status.phase) == (claim.metadata.uid, "Bound")

    await store.mutate(cluster_id, lambda r: request_wake(r, utcnow(), "asked by the test"))
    awake = await reconcile_until(provisioner, store, cluster_id, lambda r: r.status == ClusterStatus.READY,
                                  "awake again")
    assert awake.nodes == 1 and admin.statefulset(namespace).spec.replicas == 1
    pod = admin.core.list_namespaced_pod(namespace).items[0]
    assert "data-engine-0" in {v.persistent_volume_claim.claim_name for v in pod.spec.volumes
                               if v.persistent_volume_claim}
    await driver.remove(cluster_id)
