"""Backup decisions without NATS or an engine: the repository, the schedule, pruning, retention,
and which clusters have backups at all (and that every caller follows that)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi import HTTPException

from libs.common.engines.snapshots import parse_snapshot, user_indices
from libs.common.models import ClusterRecord, ClusterSpec, RestoreState, SnapshotPolicy
from services.manager import backups
from services.manager.backups import auto_name, plan_scheduled
from services.manager.http.snapshots import backups_on
from services.manager.provisioner import Provisioner
from services.manager.settings import ManagerSettings
from services.manager.snapshotter import Snapshotter

HOUR = SnapshotPolicy(every_s=3600, keep=3)
FORMED = datetime(2026, 1, 1, 9, 30, tzinfo=timezone.utc)


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 1, 1, hour, minute, tzinfo=timezone.utc)


def start_of(hour: int) -> int:
    return int(at(hour).timestamp())


def test_the_first_snapshot_is_the_first_whole_period_after_the_cluster_formed():
    assert plan_scheduled(HOUR, FORMED, at(9, 45), []).create is None
    assert plan_scheduled(HOUR, FORMED, at(10, 1), []).create == auto_name(start_of(10))


def test_a_period_with_its_snapshot_taken_gets_no_second_one_whoever_asks_again():
    taken = [(auto_name(start_of(10)), "success")]
    again = plan_scheduled(HOUR, FORMED, at(10, 59), taken)
    assert again.create is None and "taken" in again.reason
    assert plan_scheduled(HOUR, FORMED, at(11, 0), taken).create == auto_name(start_of(11))


def test_scheduled_snapshots_beyond_keep_are_pruned_oldest_first_and_manual_ones_never():
    existing = [(auto_name(start_of(h)), "success") for h in (10, 11, 12)] + [("manual-x", "success")]
    plan = plan_scheduled(HOUR, FORMED, at(13, 0), existing)
    assert plan.create == auto_name(start_of(13))
    assert plan.prune == [auto_name(start_of(10))]  # 11, 12 and the new 13 make keep=3


def test_a_running_snapshot_is_never_pruned():
    existing = [(auto_name(start_of(10)), "in_progress"), (auto_name(start_of(11)), "success")]
    plan = plan_scheduled(SnapshotPolicy(every_s=3600, keep=1), FORMED, at(12, 0), existing)
    assert plan.prune == [auto_name(start_of(11))]


def test_every_s_zero_turns_the_schedule_off():
    plan = plan_scheduled(SnapshotPolicy(every_s=0, keep=3), FORMED, at(13, 0), [])
    assert plan.create is None and plan.prune == [] and "off" in plan.reason


def test_the_local_repository_is_a_directory_of_its_own_outside_the_engine_data(tmp_path: Path):
    settings = ManagerSettings(state_dir=tmp_path, driver="local")
    body = backups.repository_body(settings, "c0123456789ab")
    assert body["type"] == "fs"
    location = Path(body["settings"]["location"])
    assert location.parent == settings.snapshots_dir and not location.is_relative_to(settings.clusters_dir)
    assert backups.repository_body(settings, "c0123456789ab", readonly=True)["settings"]["readonly"] is True


def test_a_local_clone_reads_its_source_from_a_copy_inside_its_own_incoming_directory(tmp_path: Path):
    settings = ManagerSettings(state_dir=tmp_path, driver="local")
    location = backups.incoming_location(settings, "ctarget", "csource")
    assert location == settings.restores_dir / "ctarget" / "csource"
    assert location.is_relative_to(settings.repository_dirs("ctarget")[1])  # inside the target's path.repo
    assert not location.is_relative_to(settings.snapshots_dir)
    body = backups.source_repository_body(settings, "ctarget", "csource")
    assert body == {"type": "fs", "settings": {"location": str(location), "compress": True, "readonly": True}}


def test_a_kubernetes_clone_reads_its_source_where_the_source_keeps_it():
    settings = ManagerSettings(driver="kubernetes", snapshot_bucket="backups")
    body = backups.source_repository_body(settings, "ctarget", "csource")
    assert body == backups.repository_body(settings, "csource", readonly=True)
    assert body["settings"]["base_path"] == "clusters/csource"


def test_the_incoming_copy_is_made_of_hard_links_made_afresh_and_goes_with_a_purge(tmp_path: Path):
    from services.manager.repository_links import link_repository, remove_links
    source, restores = tmp_path / "snapshots" / "csource", tmp_path / "restores"
    (source / "indices" / "abc" / "0").mkdir(parents=True)
    (source / "index-0").write_text("root")
    (source / "indices" / "abc" / "0" / "__blob").write_text("data")
    target = restores / "ctarget" / "csource"
    made = link_repository(source, target)
    assert (made.linked, made.copied) == (2, 0)
    for name in ("index-0", "indices/abc/0/__blob"):
        assert (target / name).stat().st_ino == (source / name).stat().st_ino  # a link, not a copy

    (source / "index-1").write_text("newer root")
    (source / "index-0").unlink()  # the engine's own cleanup of an old root
    assert link_repository(source, target).linked == 2
    assert sorted(p.name for p in target.iterdir()) == ["index-1", "indices"]

    (restores / "csource" / "cother").mkdir(parents=True)  # the source's own incoming copies
    remove_links(restores, "csource")
    assert not target.exists() and not (restores / "csource").exists()
    assert link_repository(tmp_path / "gone", target).linked == 0 and target.is_dir()  # a source purged first


def test_a_file_that_cannot_be_linked_is_copied(tmp_path: Path, monkeypatch):
    from services.manager import repository_links

    def cross_device(*args, **kwargs):
        raise OSError(18, "Invalid cross-device link")

    (tmp_path / "source").mkdir()
    (tmp_path / "source" / "index-0").write_text("root")
    monkeypatch.setattr(repository_links.os, "link", cross_device)
    made = repository_links.link_repository(tmp_path / "source", tmp_path / "target")
    assert (made.linked, made.copied) == (0, 1)
    assert (tmp_path / "target" / "index-0").read_text() == "root"


async def test_a_purge_removes_the_repository_and_every_incoming_copy_of_it(tmp_path: Path):
    from libs.common.models import ClusterStatus
    settings = ManagerSettings(state_dir=tmp_path, driver="local")
    record = opensearch_cluster().model_copy(update={"status": ClusterStatus.DELETED})
    for directory in (settings.snapshots_dir / record.id, settings.restores_dir / record.id / "csource",
                      settings.restores_dir / "cclone" / record.id, settings.restores_dir / "cclone" / "ckept"):
        directory.mkdir(parents=True)

    class Removed:
        async def remove(self, record):
            self.removed = record.id

    store = Removed()
    await Snapshotter(settings, store, None, None).purge(record)
    assert store.removed == record.id
    assert [p.relative_to(tmp_path) for p in sorted(tmp_path.rglob("*"))] == [
        Path("restores"), Path("restores/cclone"), Path("restores/cclone/ckept"), Path("snapshots")]


@pytest.mark.parametrize("engine", ["elasticsearch", "opensearch"])
def test_backups_are_off_on_kubernetes_until_a_bucket_is_set(engine):
    assert backups.backups_on(ManagerSettings(driver="local"), engine)
    assert backups.backups_on(ManagerSettings(driver="local", opensearch_s3_plugin=False), engine)
    off = backups.backups_off(ManagerSettings(driver="kubernetes", opensearch_s3_plugin=True), engine)
    assert off.setting == "ESS_SNAPSHOT_BUCKET" and "ESS_SNAPSHOT_BUCKET" in off.fix
    assert backups.backups_on(ManagerSettings(driver="kubernetes", snapshot_bucket="backups",
                                              opensearch_s3_plugin=True), engine)


def test_opensearch_on_kubernetes_has_backups_only_with_the_s3_plugin():
    bucket = ManagerSettings(driver="kubernetes", snapshot_bucket="backups")
    assert backups.backups_on(bucket, "elasticsearch")  # bundles repository-s3
    off = backups.backups_off(bucket, "opensearch")
    assert off.setting == "ESS_OPENSEARCH_S3_PLUGIN"
    for named in ("deploy/docker/opensearch-s3.Dockerfile", "ESS_OPENSEARCH_REPOSITORY",
                  "ESS_OPENSEARCH_IMAGE_TAG", "ESS_OPENSEARCH_S3_PLUGIN=true"):
        assert named in off.fix and named in str(off)
    with_plugin = bucket.model_copy(update={"opensearch_s3_plugin": True})
    assert backups.backups_on(with_plugin, "opensearch")
    assert backups.engines_reach_the_bucket(with_plugin, "opensearch")
    assert not backups.engines_reach_the_bucket(bucket, "opensearch")
    assert not backups.engines_reach_the_bucket(ManagerSettings(opensearch_s3_plugin=True), "opensearch")


def test_a_new_cluster_without_backups_has_no_schedule_so_no_age_alert():
    bucket = ManagerSettings(driver="kubernetes", snapshot_bucket="backups", snapshot_every_s=600, snapshot_keep=5)
    assert backups.new_policy(bucket, "opensearch") == SnapshotPolicy(every_s=0, keep=5)
    assert backups.new_policy(bucket, "elasticsearch") == SnapshotPolicy(every_s=600, keep=5)
    assert backups.new_policy(ManagerSettings(driver="local", snapshot_every_s=600), "opensearch").every_s == 600


def test_the_kubernetes_repository_is_a_prefix_of_the_bucket_with_no_secret_in_it():
    settings = ManagerSettings(driver="kubernetes", snapshot_bucket="backups")
    body = backups.repository_body(settings, "c0123456789ab")
    assert body == {"type": "s3", "settings": {"bucket": "backups", "base_path": "clusters/c0123456789ab",
                                               "client": "default", "readonly": False}}


def test_a_snapshot_entry_reads_the_same_from_either_engine():
    entry = {"snapshot": "auto-1", "state": "FAILED", "indices": ["b", "a"], "start_time_in_millis": 1_000,
             "end_time_in_millis": 2_000, "reason": "disk full", "failures": []}
    info = parse_snapshot(entry)
    assert (info.name, info.status, info.indices, info.reason) == ("auto-1", "failed", ["a", "b"], "disk full")
    assert info.finished_at - info.started_at == timedelta(seconds=1)
    running = parse_snapshot({"snapshot": "s", "state": "IN_PROGRESS", "start_time_in_millis": 1_000,
                              "end_time_in_millis": 0})
    assert running.finished_at is None
    assert user_indices([".kibana", "docs", ".opendistro-job"]) == ["docs"]


def test_a_restore_is_overdue_after_the_timeout_and_a_deleted_cluster_goes_after_the_retention():
    record = ClusterRecord(id="c0123456789ab", tenant_org_id="t", user="u", service_name="s",
                           spec=ClusterSpec(replicas=1, cpu="1", memory="1Gi", storage="1Gi", version="2.19.1"))
    record.restore = RestoreState(snapshot="s", requested_at=at(10))
    assert not backups.restore_overdue(record, at(10, 5), 600)
    assert backups.restore_overdue(record, at(10, 11), 600)
    record.restore.state = "done"
    assert not backups.restore_overdue(record, at(11), 600)
    assert not backups.purge_due(record, at(11), 60)
    record.deleted_at = at(10)
    assert not backups.purge_due(record, at(10, 0) + timedelta(seconds=59), 60)
    assert backups.purge_due(record, at(10, 1), 60)


def test_a_restore_names_a_vector_index_by_its_alias_or_its_generation():
    from libs.common.engines.snapshots import resolve
    assert resolve(["docs"], ["docs-000001", "other"]) == (["docs-000001"], [])
    assert resolve(["docs-000001", "logs"], ["docs-000001", "other"]) == (["docs-000001"], ["logs"])
    assert resolve(["other"], ["other", "other-1"]) == (["other"], [])


def test_the_provisioner_leaves_a_deleted_cluster_kept_for_undelete_alone():
    from libs.common.models import ClusterStatus, utcnow
    from services.manager.planning import EngineObservation, EngineSize, Step, plan_reconcile
    size = EngineSize(nodes=1, heap_mb=256, processors=1)
    spec = ClusterSpec(replicas=1, cpu="500m", memory="512Mi", storage="5Gi", version="2.19.1")
    kept = ClusterRecord(id="c1", tenant_org_id="acme", user="a", service_name="s", spec=spec, delete_requested=True,
                         status=ClusterStatus.DELETED, deleted_at=utcnow(), final_snapshot="final-1")
    assert plan_reconcile(kept, size, EngineObservation(running=False), utcnow(), 180).step == Step.NOTHING
    asked = kept.model_copy(update={"status": ClusterStatus.DELETING, "final_snapshot": None})
    # the final snapshot comes first, in the provisioner's REMOVE step
    assert plan_reconcile(asked, size, EngineObservation(running=True), utcnow(), 180).step == Step.REMOVE


def test_the_snapshot_routes_answer_409_naming_the_setting_for_opensearch_without_the_plugin():
    settings = ManagerSettings(driver="kubernetes", snapshot_bucket="backups")
    request = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(deps=SimpleNamespace(settings=settings))))
    backups_on(request, "elasticsearch")  # no answer: it goes on
    with pytest.raises(HTTPException) as refused:
        backups_on(request, "opensearch")
    detail = refused.value.detail
    assert refused.value.status_code == 409 and detail["error"] == "backups_off"
    [field] = detail["fields"]
    assert field["field"] == "ESS_OPENSEARCH_S3_PLUGIN" and "ESS_OPENSEARCH_S3_PLUGIN=true" in field["fix"]
    assert "opensearch-s3.Dockerfile" in detail["message"]


def opensearch_cluster() -> ClusterRecord:
    return ClusterRecord(id="c0123456789ab", tenant_org_id="acme", user="alice", service_name="search",
                         spec=ClusterSpec(replicas=1, cpu="500m", memory="1Gi", storage="5Gi",
                                          engine="opensearch", version="2.19.1"),
                         snapshot_policy=SnapshotPolicy(every_s=3600), formed_at=datetime.now(timezone.utc))


class OneRecord:
    """The store calls of the snapshotter, on one record."""

    def __init__(self, record: ClusterRecord):
        self.record = record

    async def mutate(self, cluster_id: str, change):
        self.record = change(self.record.model_copy(deep=True)) or self.record
        return self.record


async def test_the_snapshotter_turns_off_the_schedule_of_a_cluster_without_backups_and_asks_no_engine():
    def no_engine(record):
        raise AssertionError("a cluster without backups has no repository to register")

    store = OneRecord(opensearch_cluster())  # made before its backups were known to be off
    settings = ManagerSettings(driver="kubernetes", snapshot_bucket="backups")
    await Snapshotter(settings, store, None, no_engine).tend(store.record)
    assert store.record.snapshot_policy.every_s == 0


async def test_a_delete_takes_no_final_snapshot_of_a_cluster_without_backups():
    async def final_snapshot(record):
        raise AssertionError("no final snapshot without backups")

    settings = ManagerSettings(driver="kubernetes", snapshot_bucket="backups")
    provisioner = Provisioner(settings, None, None, None, None, final_snapshot=final_snapshot)
    assert await provisioner._before_remove(opensearch_cluster(), None, None) == (True, None)


async def test_a_sleeping_cluster_deleted_while_its_engine_cannot_start_waits_for_its_final_snapshot():
    """No free port slot is not data lost: the delete waits (and says why) until the snapshot
    timeout; only a cluster whose data is gone is removed without its final snapshot."""
    from services.manager.drivers import DataGone, EngineUnavailable

    async def final_snapshot(record):
        raise AssertionError("the engine never started")

    class CannotStart:
        def __init__(self, error: Exception):
            self.error = error

        async def start(self, record, desired):
            raise self.error

    asleep = SimpleNamespace(running=False)
    settings = ManagerSettings(driver="local")
    for error, want in ((EngineUnavailable("no free port slot among 3; raise ESS_LOCAL_PORT_SLOTS"), (False, None)),
                        (DataGone("the data of cluster c0123456789ab is gone"), (True, None))):
        store = OneRecord(opensearch_cluster())
        provisioner = Provisioner(settings, store, CannotStart(error), None, None, final_snapshot=final_snapshot)
        assert await provisioner._before_remove(store.record, None, asleep) == want
        if want == (False, None):
            assert "no free port slot" in store.record.status_reason
