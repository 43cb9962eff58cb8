"""The provisioner's decisions, without NATS or an engine."""

from datetime import timedelta

import pytest

from libs.common.models import ClusterRecord, ClusterSpec, ClusterStatus, utcnow
from services.manager.planning import (
    EngineObservation,
    EngineSize,
    Step,
    plan_engine_size,
    plan_given_up_resize,
    plan_reconcile,
)

SIZE = EngineSize(nodes=1, heap_mb=256, processors=1)


def record(status=ClusterStatus.REQUESTED, **fields) -> ClusterRecord:
    spec = ClusterSpec(replicas=1, cpu="500m", memory="512Mi", storage="5Gi", version="2.19.1")
    return ClusterRecord(id="c1", tenant_org_id="acme", user="alice", service_name="search", spec=spec,
                         status=status, **fields)


def plan(rec, observed, desired=SIZE, age_s=0.0):
    return plan_reconcile(rec, desired, observed, rec.updated_at + timedelta(seconds=age_s), 180)


@pytest.mark.parametrize(
    ("replicas", "cpu", "memory", "expected"),
    [
        (1, "500m", "1Gi", EngineSize(1, 512, 1)),  # half the memory
        (1, "500m", "256Mi", EngineSize(1, 256, 1)),  # never below the floor
        (3, "1", "1Gi", EngineSize(3, 512, 1)),  # per node, whatever the node count
        (2, "4", "4Gi", EngineSize(2, 512, 2)),  # capped heap and host CPUs on a small machine
        (2, "250m", "512Mi", EngineSize(2, 256, 1)),
    ],
)
def test_engine_size(replicas, cpu, memory, expected):
    assert plan_engine_size(replicas, cpu, memory, heap_min_mb=256, heap_max_mb=512, host_cpus=2) == expected


def test_new_cluster_is_started():
    result = plan(record(), EngineObservation(running=False))
    assert (result.step, result.status) == (Step.START, ClusterStatus.PROVISIONING)


def test_starting_engine_is_waited_for():
    result = plan(record(ClusterStatus.PROVISIONING), EngineObservation(True, SIZE, None, 0))
    assert result.step == Step.WAIT
    assert "0/1" in result.reason


def test_healthy_engine_makes_the_cluster_ready():
    for health in ("green", "yellow"):
        result = plan(record(ClusterStatus.PROVISIONING), EngineObservation(True, SIZE, health, 1))
        assert (result.step, result.status) == (Step.MARK_READY, ClusterStatus.READY)


def test_red_engine_does_not_make_it_ready():
    assert plan(record(ClusterStatus.PROVISIONING), EngineObservation(True, SIZE, "red", 1)).step == Step.WAIT


def test_ready_and_matching_does_nothing_and_says_why():
    rec = record(ClusterStatus.READY, observed_generation=1)
    result = plan(rec, EngineObservation(True, SIZE, "green", 1))
    assert result.step == Step.NOTHING
    assert result.reason


def test_dead_engine_of_a_ready_cluster_is_restarted():
    rec = record(ClusterStatus.READY, observed_generation=1)
    result = plan(rec, EngineObservation(running=False))
    assert (result.step, result.status) == (Step.START, ClusterStatus.PROVISIONING)
    assert "exited" in result.reason


def test_changed_size_restarts_with_scaling_status():
    rec = record(ClusterStatus.SCALING, generation=2, observed_generation=1)
    result = plan(rec, EngineObservation(True, SIZE, "green", 1), desired=EngineSize(3, 512, 2))
    assert (result.step, result.status) == (Step.RESIZE, ClusterStatus.SCALING)
    assert "nodes 1 -> 3" in result.reason


def test_a_dead_node_of_a_serving_cluster_is_restarted_in_place():
    rec = record(ClusterStatus.READY, observed_generation=1)
    result = plan(rec, EngineObservation(True, SIZE, "yellow", 1, down=1))
    assert (result.step, result.status) == (Step.RESIZE, None)  # still ready: the others serve
    assert "1 node(s) not running" in result.reason


def test_scaled_engine_needs_all_nodes_before_ready():
    rec = record(ClusterStatus.SCALING, generation=2, observed_generation=1)
    desired = EngineSize(3, 512, 2)
    assert plan(rec, EngineObservation(True, desired, "yellow", 2), desired).step == Step.WAIT
    assert plan(rec, EngineObservation(True, desired, "green", 3), desired).step == Step.MARK_READY


def test_delete_wins_over_everything():
    rec = record(ClusterStatus.READY, delete_requested=True)
    result = plan(rec, EngineObservation(True, SIZE, "green", 1))
    assert (result.step, result.status) == (Step.REMOVE, ClusterStatus.DELETING)


def test_engine_that_never_gets_healthy_fails_with_a_reason():
    result = plan(record(ClusterStatus.PROVISIONING), EngineObservation(True, SIZE, None, 0), age_s=181)
    assert (result.step, result.status) == (Step.FAIL, ClusterStatus.FAILED)
    assert "engine.log" in result.reason


def test_failed_cluster_stays_failed_until_its_spec_changes():
    failed = record(ClusterStatus.FAILED, observed_generation=1, status_reason="no java")
    assert plan(failed, EngineObservation(running=False)).step == Step.NOTHING
    changed = record(ClusterStatus.FAILED, generation=2, observed_generation=1)
    assert plan(changed, EngineObservation(running=False)).step == Step.START


def test_timestamps_are_recent():
    assert utcnow() - record().updated_at < timedelta(seconds=5)


def test_an_engine_that_does_not_answer_is_never_ready_and_its_note_is_the_reason():
    silent = EngineObservation(True, SIZE, None, 1, note="1 pod(s) ready, but the engine does not answer")
    waiting = plan(record(ClusterStatus.PROVISIONING), silent)
    assert (waiting.step, waiting.reason) == (Step.WAIT, silent.note)
    failed = plan(record(ClusterStatus.PROVISIONING), silent, age_s=181)
    assert failed.status == ClusterStatus.FAILED and silent.note in failed.reason


def test_pods_ready_where_the_engine_cannot_be_asked_make_it_ready_without_a_colour():
    probed = EngineObservation(True, SIZE, None, 1, note="1 pod(s) ready by their readiness probes", probes_only=True)
    result = plan(record(ClusterStatus.PROVISIONING), probed)
    assert (result.step, result.reason) == (Step.MARK_READY, probed.note)


def test_a_given_up_change_of_nodes_keeps_its_reason_until_the_next_change():
    reverted, reason = plan_given_up_resize(record(ClusterStatus.SCALING), EngineSize(3, 256, 1), "drain stalled")
    assert reverted.spec.replicas == 3 and reason.startswith("change of nodes given up: 1 node(s) asked, 3 kept")
    rec = record(ClusterStatus.READY, observed_generation=1, status_reason=reason)
    assert plan(rec, EngineObservation(True, SIZE, "green", 1)).reason == reason


def test_nodes_on_another_version_than_the_spec_are_restarted_and_the_cluster_says_so():
    rec = record(ClusterStatus.SCALING)
    rec.spec = rec.spec.model_copy(update={"version": "3.5.0"})
    result = plan(rec, EngineObservation(True, SIZE, "green", 3, versions=("2.19.1", "3.5.0", "2.19.1")))
    assert result.step == Step.RESIZE and result.status == ClusterStatus.SCALING
    assert "upgrading to opensearch 3.5.0 node by node: 2 of 3 still on 2.19.1" in result.reason
    done = plan(rec, EngineObservation(True, SIZE, "green", 1, versions=("3.5.0",)))
    assert done.step == Step.MARK_READY
    unknown = plan(rec, EngineObservation(True, SIZE, "green", 1))  # a driver that does not say
    assert unknown.step == Step.MARK_READY
