"""An engine upgrade on the kubernetes driver against a real API server (kwok's pods; a fake
engine answers the manager's calls): several pods roll through the StatefulSet's partition,
highest first, the next only once the engine is green again; one pod is upgraded by surge (a
second pod on the new version takes its shards, it is replaced, the second leaves)."""

from __future__ import annotations

from libs.common.models import ClusterStatus
from libs.common.settings import ELASTICSEARCH819_VERSION
from services.manager.provisioner import Provisioner
from services.manager.transitions import start_upgrade
from tests.kube_testing import RecordsInMemory, make_driver, publish_nowhere, reconcile_until, record, until


def rolled(admin, namespace: str) -> tuple[int, int, str]:
    """The StatefulSet's (replicas, partition, image tag) as the API server holds it."""
    spec = admin.statefulset(namespace).spec
    return spec.replicas, spec.update_strategy.rolling_update.partition, \
        spec.template.spec.containers[0].image.rsplit(":", 1)[1]


async def upgraded_while_watched(provisioner, store, admin, cluster_id: str) -> list[tuple[int, int, str]]:
    """Reconcile until the cluster is ready again; each distinct StatefulSet state seen, in order."""
    seen: list[tuple[int, int, str]] = []

    async def step():
        await provisioner.reconcile(cluster_id)
        now = rolled(admin, f"ess-{cluster_id}")
        if not seen or seen[-1] != now:
            seen.append(now)
        return store.records[cluster_id].status == ClusterStatus.READY
    await until(step, "the upgrade done", timeout_s=240)
    return seen


async def upgrade_asked(control_plane, manager_token, engine, cluster_id: str, nodes: int):
    """A cluster of `nodes` on 8.15.3 reconciled to ready, then its upgrade to 8.19.21 asked as the
    API records it: (driver, store, provisioner)."""
    driver = make_driver(control_plane, manager_token, engine)
    store = RecordsInMemory(record(cluster_id, nodes))
    provisioner = Provisioner(driver._settings, store, driver, publish_nowhere, leases=None)
    await reconcile_until(provisioner, store, cluster_id, lambda r: r.status == ClusterStatus.READY,
                          f"ready at {nodes}")
    store.records[cluster_id] = start_upgrade(store.records[cluster_id], ELASTICSEARCH819_VERSION, None)
    return driver, store, provisioner


async def test_three_pods_roll_highest_first_each_only_once_the_engine_is_green(
        control_plane, manager_token, engine, admin, cluster_id):
    driver, store, provisioner = await upgrade_asked(control_plane, manager_token, engine, cluster_id, 3)
    namespace = f"ess-{cluster_id}"
    engine.status = "yellow"  # engine-2 is replaced at once; engine-1 must wait for green
    waiting = await reconcile_until(provisioner, store, cluster_id,
                                    lambda r: "waiting for green health before engine-1" in r.status_reason,
                                    "a wait for green")
    assert waiting.status == ClusterStatus.SCALING and "yellow" in waiting.status_reason
    for _ in range(3):
        await provisioner.reconcile(cluster_id)
    assert rolled(admin, namespace) == (3, 2, ELASTICSEARCH819_VERSION)  # engine-1 still waits

    engine.status = "green"
    seen = await upgraded_while_watched(provisioner, store, admin, cluster_id)
    assert [partition for _, partition, _ in seen] == [1, 0], seen  # engine-1, then engine-0, one at a time
    ready = store.records[cluster_id]
    assert (ready.status, ready.spec.version, ready.nodes) == (ClusterStatus.READY, ELASTICSEARCH819_VERSION, 3)
    observed = await driver.observe(cluster_id)
    assert observed.versions == (ELASTICSEARCH819_VERSION,) * 3
    assert "es-serverless.io/rolling-from" not in (admin.statefulset(namespace).metadata.annotations or {})


async def test_one_pod_is_upgraded_by_surge_and_the_second_pod_leaves(
        control_plane, manager_token, engine, admin, cluster_id):
    _, store, provisioner = await upgrade_asked(control_plane, manager_token, engine, cluster_id, 1)
    namespace = f"ess-{cluster_id}"
    seen = await upgraded_while_watched(provisioner, store, admin, cluster_id)
    # a second pod on the new version beside the first, the first replaced, then one pod again
    assert seen == [(2, 1, ELASTICSEARCH819_VERSION), (2, 0, ELASTICSEARCH819_VERSION),
                        (1, 0, ELASTICSEARCH819_VERSION)], seen
    assert engine.excluded.index(["engine-0"]) < engine.excluded.index(["engine-1"])  # handed over, then drained
    ready = store.records[cluster_id]
    assert (ready.status, ready.spec.replicas, ready.nodes) == (ClusterStatus.READY, 1, 1)
    await until(lambda: [p.metadata.name for p in admin.core.list_namespaced_pod(namespace).items] == ["engine-0"],
                "engine-1 gone")
