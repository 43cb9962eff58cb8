"""The kubernetes driver's upgrade decisions (kubernetes_upgrade.py): which pod rolls next, and
each pod's version read back from a StatefulSet mid-upgrade."""

from services.manager.drivers import kubernetes_manifests as manifests
from services.manager.drivers import kubernetes_rules as rules
from services.manager.drivers.kubernetes_upgrade import RollKind, RollStep, RollView, next_roll_step, pod_versions
from tests.unit.test_kubernetes_manifests import cluster, engine_container, settings


def test_an_upgrade_rolls_pods_from_the_highest_partition_down_and_one_node_surges():
    def view(wanted, replicas, partition, template, updated, ready, current=True):
        return RollView(wanted, replicas, partition, template, updated, ready, current)
    cases = [
        (view(3, 3, 0, "2.19.1", 3, 3), RollStep(RollKind.START, 2, 3)),  # the highest pod first
        (view(3, 3, 2, "3.5.0", 0, 3), RollStep(RollKind.WAIT, 2, 3)),  # being replaced
        (view(3, 3, 2, "3.5.0", 1, 2), RollStep(RollKind.WAIT, 2, 3)),  # back, not ready yet
        (view(3, 3, 2, "3.5.0", 1, 3, current=False), RollStep(RollKind.WAIT, 2, 3)),
        (view(3, 3, 2, "3.5.0", 1, 3), RollStep(RollKind.STEP, 1, 3)),  # then the next, once green
        (view(3, 3, 0, "3.5.0", 3, 3), RollStep(RollKind.NONE)),
        (view(1, 1, 0, "2.19.1", 1, 1), RollStep(RollKind.SURGE, 1, 2)),  # one node: a second one joins
        (view(1, 2, 1, "3.5.0", 0, 1), RollStep(RollKind.WAIT, 1, 2)),
        (view(1, 2, 1, "3.5.0", 1, 2), RollStep(RollKind.HAND_OVER, 0, 2)),  # pod 0 drained, then replaced
        (view(1, 2, 0, "3.5.0", 1, 2), RollStep(RollKind.WAIT, 0, 2)),
        (view(1, 2, 0, "3.5.0", 2, 2), RollStep(RollKind.NONE)),  # then a plain scale-in removes pod 1
        (view(2, 3, 0, "3.5.0", 3, 3), RollStep(RollKind.NONE)),  # a scale-in, no upgrade
    ]
    for seen, expected in cases:
        assert next_roll_step(seen, "3.5.0") == expected, seen


def test_each_pods_version_is_read_from_the_statefulset_mid_upgrade():
    three = cluster("opensearch", replicas=3, version="3.5.0")
    statefulset = rules.stamp(manifests.render_statefulset(three, settings(), partition=1, rolling_from="2.19.1"))
    assert statefulset["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}
    assert engine_container(statefulset)["image"].endswith("/opensearchproject/opensearch:3.5.0")
    statefulset["metadata"]["generation"] = 4
    statefulset["status"] = {"observedGeneration": 4, "updatedReplicas": 2, "readyReplicas": 3}
    assert pod_versions(statefulset, "opensearch", settings()) == ("3.5.0", "3.5.0", "2.19.1")
    statefulset["metadata"]["generation"] = 5  # not yet seen by the controller: none counts as moved
    assert pod_versions(statefulset, "opensearch", settings()) == ("2.19.1",) * 3
    default = manifests.render_statefulset(cluster("opensearch"), settings())
    default["status"] = {"updatedReplicas": 1}
    assert pod_versions(default, "opensearch", settings()) == ("2.19.1",)
    assert rules.version_of_image("opensearch", engine_container(default)["image"], settings()) == "2.19.1"
