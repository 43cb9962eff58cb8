"""Fleet upgrades as plain decisions: at most `at_once` clusters stopped for their upgrade, oldest
first; hibernated ones marked to wake on the new version (or woken for it when asked, taking a
place); clusters busy on the old version wait; done once none is left on the old version or on
its way."""

from datetime import timedelta

from libs.common.models import ClusterStatus, utcnow
from services.manager.fleet import FleetUpgradeRequest, Progress, fleet_step, new_upgrade, view
from services.manager.planning import RESIZE_GIVEN_UP
from tests.unit.test_planning import record


def upgrade(clusters, **fields):
    asked = {"engine": "opensearch", "from_version": "2.19.1", "to_version": "3.5.0", "at_once": 2, **fields}
    return new_upgrade(FleetUpgradeRequest(**asked), "operator", clusters)


def cluster(cluster_id: str, status: ClusterStatus, version: str = "2.19.1", age_s: int = 0, **fields):
    made = record(status=status, **fields).model_copy(update={"id": cluster_id, "created_at": utcnow()
                                                              - timedelta(seconds=1000 - age_s)})
    made.spec = made.spec.model_copy(update={"version": version})
    return made


def test_at_most_at_once_clusters_are_moved_oldest_first_and_the_asleep_are_marked():
    clusters = [cluster("c3", ClusterStatus.READY, age_s=3), cluster("c1", ClusterStatus.READY, age_s=1),
                cluster("c2", ClusterStatus.READY, age_s=2), cluster("c4", ClusterStatus.HIBERNATED),
                cluster("c5", ClusterStatus.SCALING), cluster("c6", ClusterStatus.READY, version="3.5.0"),
                cluster("c7", ClusterStatus.READY).model_copy(update={"delete_requested": True})]
    asked = upgrade(clusters)
    assert sorted(asked.targets) == ["c1", "c2", "c3", "c4", "c5"]  # not c6 (there already), not c7 (going)
    step = fleet_step(asked, clusters)
    assert step.upgrade == ["c1", "c2"] and step.relabel == ["c4"] and not step.done
    later = [*clusters, cluster("c0", ClusterStatus.READY, age_s=0)]  # made after the ask: not this upgrade's
    assert fleet_step(asked, later).upgrade == ["c1", "c2"]
    theirs = upgrade(clusters[:3], tenant_org_id="other")
    assert theirs.targets == [] and fleet_step(theirs, clusters).done


def test_clusters_on_their_way_take_places_and_the_upgrade_ends_when_none_is_left():
    clusters = [cluster("c1", ClusterStatus.WAKING, version="3.5.0"), cluster("c2", ClusterStatus.READY, "3.5.0"),
                cluster("c3", ClusterStatus.READY)]
    moving = upgrade(clusters, at_once=2)
    moving.targets = ["c1", "c2", "c3"]
    moving.started = {"c1": utcnow(), "c2": utcnow()}
    assert fleet_step(moving, clusters).upgrade == ["c3"]  # one place left
    clusters[0] = cluster("c1", ClusterStatus.HIBERNATING, version="3.5.0")
    moving.at_once = 1
    assert fleet_step(moving, clusters).upgrade == []  # the one place is taken
    done = [cluster("c1", ClusterStatus.READY, "3.5.0"), cluster("c2", ClusterStatus.FAILED, "3.5.0"),
            cluster("c3", ClusterStatus.HIBERNATED, "3.5.0")]
    moving.started["c3"] = utcnow()
    assert fleet_step(moving, done).done
    progress = {c.id: c.progress for c in view(moving, done).clusters}
    assert progress == {"c1": Progress.DONE, "c2": Progress.FAILED, "c3": Progress.ASLEEP}
    stalled = cluster("c1", ClusterStatus.READY, "3.5.0", status_reason=f"{RESIZE_GIVEN_UP}: 1 node(s) asked")
    assert view(moving, [stalled]).clusters[0].progress == Progress.FAILED  # ready, but its upgrade given up


def test_woken_for_it_a_hibernated_cluster_takes_a_place_and_a_busy_one_waits():
    clusters = [cluster("c1", ClusterStatus.HIBERNATED, age_s=1), cluster("c2", ClusterStatus.HIBERNATED, age_s=2),
                cluster("c3", ClusterStatus.PROVISIONING, age_s=3)]
    step = fleet_step(upgrade(clusters, at_once=1, wake_hibernated=True), clusters)
    assert step.upgrade == ["c1"] and step.relabel == [] and not step.done
    assert [c.progress for c in view(upgrade(clusters), clusters).clusters] == [Progress.WAITING, Progress.WAITING,
                                                                        Progress.BUSY]
