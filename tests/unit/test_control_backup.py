"""The pure side of control-plane backups: files written and read back byte for byte, a damaged
or missing file found before anything is restored, the schedule, pruning, and what a restore
reports as changed since its backup."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from services.manager import control_backup as plan

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)


def manifest(backup_id: str = "cp-20261207t120000z-abcdef", taken_at: datetime = NOW, **files: bytes):
    return plan.ControlBackupManifest(
        id=backup_id, taken_at=taken_at, reason="test", buckets={}, streams={},
        files=[plan.describe(path, data, 1) for path, data in files.items()])


def test_entries_and_messages_come_back_byte_for_byte():
    entries = [("c1", b'{"id":"c1"}'), ("k.with.dots", bytes(range(256)))]
    assert plan.decode_entries(plan.encode_entries(entries)) == entries
    messages = [("ess.usage.acme.c1", b'{"n":1}', {"Nats-Msg-Id": "usage.c1.0"}), ("ess.audit.x", b"", {})]
    assert plan.decode_messages(plan.encode_messages(messages)) == messages
    assert plan.decode_entries(b"") == []


def test_a_changed_or_missing_file_is_named_and_a_whole_backup_passes():
    written = {"kv/a.jsonl": b"one\n", "kv/b.jsonl": b"two\n"}
    whole = manifest(**{"kv/a.jsonl": b"one\n", "kv/b.jsonl": b"two\n"})
    assert plan.damaged_files(whole, written) == []
    problems = plan.damaged_files(whole, {"kv/a.jsonl": b"one!\n"})
    assert len(problems) == 2 and problems[0].startswith("kv/a.jsonl: checksum") and problems[1] == "kv/b.jsonl: missing"
    assert "format 2" in plan.damaged_files(whole.model_copy(update={"format": 2}), written)[0]


def test_a_backup_is_due_when_none_is_or_the_latest_is_old_and_never_when_off():
    assert plan.backup_due(None, NOW, 3600).due
    assert not plan.backup_due(NOW - timedelta(seconds=100), NOW, 3600).due
    assert plan.backup_due(NOW - timedelta(seconds=3600), NOW, 3600).due
    off = plan.backup_due(None, NOW, 0)
    assert not off.due and "ESS_CONTROL_BACKUP_EVERY_S" in off.reason


def test_the_oldest_beyond_keep_go():
    backups = [manifest(f"cp-20261207t12000{i}z-abcdef", NOW + timedelta(seconds=i)) for i in range(5)]
    assert plan.to_prune(backups, 3) == ["cp-20261207t120001z-abcdef", "cp-20261207t120000z-abcdef"]
    assert plan.to_prune(backups, 10) == []


def test_backup_ids_are_made_and_recognised():
    made = plan.new_backup_id(NOW)
    assert plan.is_backup_id(made) and made.startswith("cp-20261207t120000z-")
    assert not plan.is_backup_id("../cp-20261207t120000z-abcdef") and not plan.is_backup_id("x")


def test_a_restore_reports_engines_made_after_and_clusters_gone_since():
    report = plan.compare_with_engines(manifest(), live_cluster_ids={"c-kept", "c-deleted-since"},
                                       held_by_driver={"c-kept", "c-made-since"},
                                       restored_at=NOW + timedelta(minutes=5), meters=1)
    assert report.engines_unknown_to_backup == ["c-made-since"]
    assert report.clusters_without_engine == ["c-deleted-since"]
    assert report.clusters == 2 and report.since_backup[0].startswith("the backup is 300 s old")
    assert len(report.since_backup) == 4  # age, unknown engines, clusters gone, usage meters
    quiet = plan.compare_with_engines(manifest(), {"c-kept"}, {"c-kept"}, NOW, meters=0)
    assert quiet.engines_unknown_to_backup == [] and len(quiet.since_backup) == 1
