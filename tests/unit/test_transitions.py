"""The manager's cluster transitions as plain functions: a new record from a request (one
default-engine rule for the API and `render`), a PATCH, and a node count the shard controller asks for."""

import pytest

from libs.common.models import ClusterStatus, ScalingPolicy, SnapshotPolicy
from services.manager.settings import ManagerSettings
from services.manager.schemas import CreateClusterRequest, UpdateClusterRequest
from services.manager.transitions import (
    EnginesOnOffer, Invalid, NewClusterDefaults, NotNow, accept_scale, change_spec, check_upgrade, new_record,
    pick_engine, scale_wanted, start_upgrade,
)
from tests.unit.test_planning import record

BOTH = EnginesOnOffer("local", {"opensearch": ["2.19.1"], "elasticsearch": ["8.15.3"]},
                      {"elasticsearch": frozenset({"knn"})})
DEFAULTS = NewClusterDefaults(None, 600, {"opensearch": SnapshotPolicy(every_s=3600, keep=24),
                                          "elasticsearch": SnapshotPolicy(every_s=3600, keep=24)})
BODY = {"tenant_org_id": "acme", "user": "alice", "service_name": "search", "replicas": 2, "cpu": "500m",
        "memory": "1Gi", "storage": "5Gi"}


def create(**fields) -> CreateClusterRequest:
    return CreateClusterRequest.model_validate({**BODY, **fields})


# -- a new record ------------------------------------------------------------------------
def test_a_new_record_carries_the_request_and_the_platform_defaults():
    made = new_record(create(engine="elasticsearch"), "c0a1b2c3d4e5f", BOTH, DEFAULTS, request_id="r1")
    assert (made.id, made.tenant_org_id, made.service_name, made.request_id) == ("c0a1b2c3d4e5f", "acme",
                                                                                 "search", "r1")
    assert (made.spec.replicas, made.spec.engine, made.spec.version) == (2, "elasticsearch", "8.15.3")
    assert made.engine_lacks == ["knn"]
    assert made.hibernate_after_s == 600 and made.snapshot_policy == SnapshotPolicy(every_s=3600, keep=24)
    assert made.status == ClusterStatus.REQUESTED and made.generation == 1


def test_the_requests_idle_time_wins_over_the_default():
    assert new_record(create(hibernate_after_s=0), "c1", BOTH, DEFAULTS).hibernate_after_s == 0


@pytest.mark.parametrize("default, expected", [(None, "opensearch"), ("elasticsearch", "elasticsearch"),
                                               ("missing", "opensearch")])
def test_one_default_engine_rule_the_default_if_the_driver_runs_it_else_its_first(default, expected):
    assert pick_engine(None, None, BOTH, default) == (expected, BOTH.versions[expected][0])


def test_an_engine_or_version_the_driver_lacks_is_invalid_with_a_fix():
    only_opensearch = EnginesOnOffer("kubernetes", {"opensearch": ["2.19.1"]})
    with pytest.raises(Invalid) as refused:
        new_record(create(engine="elasticsearch"), "c1", only_opensearch, DEFAULTS)
    assert refused.value.field == "engine" and "kubernetes driver" in refused.value.message
    with pytest.raises(Invalid) as refused:
        pick_engine("opensearch", "1.0.0", only_opensearch, None)
    assert refused.value.field == "version" and "2.19.1" in refused.value.fix


def test_defaults_come_from_settings():
    settings = ManagerSettings(hibernate_after_s=120, snapshot_every_s=0, snapshot_keep=3, default_engine="elasticsearch")
    off = SnapshotPolicy(every_s=0, keep=3)
    assert NewClusterDefaults.of(settings) == NewClusterDefaults("elasticsearch", 120,
                                                                 {"opensearch": off, "elasticsearch": off})


# -- change spec (PATCH) -------------------------------------------------------------------
def test_a_new_node_count_is_a_new_generation_for_the_provisioner():
    before = record(ClusterStatus.READY)
    changed = change_spec(before.model_copy(deep=True), UpdateClusterRequest(replicas=3), "r2")
    assert (changed.spec.replicas, changed.generation, changed.status) == (3, 2, ClusterStatus.SCALING)
    assert changed.request_id == "r2"


def test_bounds_and_idle_time_change_in_place_without_a_new_generation():
    changed = change_spec(record(ClusterStatus.READY), UpdateClusterRequest(max_nodes=4, hibernate_after_s=60), None)
    assert changed.scaling.max_nodes == 4 and changed.hibernate_after_s == 60
    assert (changed.generation, changed.status) == (1, ClusterStatus.READY)


def test_nothing_different_or_being_deleted_changes_nothing():
    assert change_spec(record(ClusterStatus.READY), UpdateClusterRequest(replicas=1), "r3") is None
    assert change_spec(record(ClusterStatus.DELETING, delete_requested=True), UpdateClusterRequest(replicas=3),
                       "r3") is None


def test_one_bound_past_the_stored_other_is_invalid():
    with pytest.raises(Invalid) as refused:
        change_spec(record(ClusterStatus.READY, scaling=ScalingPolicy(max_nodes=3)),
                    UpdateClusterRequest(min_nodes=5), None)
    assert refused.value.field == "min_nodes"


# -- accept a scale request ----------------------------------------------------------------
def test_the_controllers_node_count_becomes_the_spec():
    accepted = accept_scale(record(ClusterStatus.READY), 3, "search load")
    assert (accepted.spec.replicas, accepted.generation, accepted.status) == (3, 2, ClusterStatus.SCALING)
    assert accepted.status_reason == "shard controller: search load"


@pytest.mark.parametrize("fields, nodes", [
    ({"scaling": ScalingPolicy(autoscaling=False)}, 3),  # pinned by the tenant
    ({"scaling": ScalingPolicy(max_nodes=2)}, 3),  # above the tenant's bound
    ({"hibernate_requested": True}, 3),  # asleep
    ({"status": ClusterStatus.WAKING}, 3),
    ({"delete_requested": True}, 3),
    ({}, 1),  # has that many already
])
def test_a_scale_request_that_no_longer_applies_changes_nothing(fields, nodes):
    current = record(**{"status": ClusterStatus.READY, **fields})
    assert not scale_wanted(current, nodes)
    assert accept_scale(current, nodes, "why") is None


# -- an engine upgrade -------------------------------------------------------------------
TWO = EnginesOnOffer("local", {"opensearch": ["2.19.1", "3.5.0"], "elasticsearch": ["8.15.3"]})
BEYOND = EnginesOnOffer("local", {"opensearch": ["2.17.0", "2.19.1", "3.5.0", "4.0.0"]})


def test_an_upgrade_goes_up_to_a_version_the_driver_runs_and_a_major_only_from_its_last_minor_line():
    check_upgrade("opensearch", "2.19.1", "3.5.0", TWO)  # no error
    refused = [
        ("2.19.1", "3.9.0", TWO, "not available on this platform"),
        ("3.5.0", "2.19.1", TWO, "cannot go down"),
        ("2.17.0", "3.5.0", BEYOND, "reached from 2.19 or later"),
        ("2.19.1", "4.0.0", BEYOND, "in one step"),
    ]
    for current, wanted, offer, said in refused:
        with pytest.raises(Invalid) as caught:
            check_upgrade("opensearch", current, wanted, offer)
        assert caught.value.field == "version" and said in caught.value.message, caught.value.message
    with pytest.raises(Invalid, match="8.15.3 cannot go down"):
        check_upgrade("elasticsearch", "8.15.3", "8.15.0", EnginesOnOffer("local", {"elasticsearch": ["8.15.3", "8.15.0"]}))


def test_a_ready_cluster_upgrades_while_it_serves_and_an_asleep_one_wakes_on_it():
    ready = record(status=ClusterStatus.READY)
    upgraded = start_upgrade(ready.model_copy(deep=True), "3.5.0", "r9")
    assert upgraded.spec.version == "3.5.0" and upgraded.generation == ready.generation + 1
    assert upgraded.status == ClusterStatus.SCALING and not upgraded.hibernate_requested  # never stopped
    assert "by surge" in upgraded.status_reason and upgraded.request_id == "r9"
    several = record(status=ClusterStatus.READY)
    several.spec = several.spec.model_copy(update={"replicas": 3})
    rolling = start_upgrade(several, "3.5.0", None)
    assert (rolling.status, rolling.spec.version, rolling.hibernate_requested) == (ClusterStatus.SCALING, "3.5.0",
                                                                                   False)
    assert "node by node" in rolling.status_reason
    asleep = start_upgrade(record(status=ClusterStatus.HIBERNATED, hibernate_requested=True), "3.5.0", None)
    assert asleep.spec.version == "3.5.0" and asleep.status == ClusterStatus.HIBERNATED and asleep.hibernate_requested
    assert start_upgrade(record(status=ClusterStatus.READY), "2.19.1", None) is None  # there already
    for busy in (ClusterStatus.SCALING, ClusterStatus.WAKING, ClusterStatus.HIBERNATING, ClusterStatus.PROVISIONING):
        with pytest.raises(NotNow, match="once it is ready or hibernated"):
            start_upgrade(record(status=busy), "3.5.0", None)


def test_a_version_is_changed_in_a_request_of_its_own():
    with pytest.raises(ValueError, match="version is changed alone"):
        UpdateClusterRequest.model_validate({"version": "3.5.0", "replicas": 2})
    assert UpdateClusterRequest.model_validate({"version": "3.5.0"}).version == "3.5.0"
