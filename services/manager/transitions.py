"""Pure transitions of a cluster record that the API and the NATS handlers both make: asked to
hibernate, asked to wake, activity seen. Each returns the changed record, or None to leave it
(a redelivered event or a repeated call changes nothing twice)."""

from __future__ import annotations

from datetime import datetime

from libs.common.models import ClusterRecord, ClusterStatus


class NotNow(Exception):
    """The transition does not apply to the cluster as it is; the message says why."""


def request_hibernation(record: ClusterRecord, reason: str) -> ClusterRecord | None:
    if record.hibernate_requested:
        return None
    if record.delete_requested or record.status != ClusterStatus.READY:
        raise NotNow(f"cluster {record.id} is {record.status}; hibernate it once it is ready")
    record.hibernate_requested = True
    record.status_reason = f"hibernating: {reason}"
    return record


def request_wake(record: ClusterRecord, now: datetime, reason: str) -> ClusterRecord | None:
    """Wake a hibernated (or hibernating) cluster; its idle time counts from now."""
    if record.delete_requested:
        raise NotNow(f"cluster {record.id} is being deleted")
    if not record.hibernate_requested:
        return None  # awake, or already waking
    record.hibernate_requested = False
    record.last_active_at = now
    # also mid-hibernation: the stop under way completes, and `waking` makes the provisioner start
    # it again (and the gateways hold requests) rather than see an engine that exited
    record.status = ClusterStatus.WAKING
    record.status_reason = f"waking: {reason}"
    return record


def note_activity(record: ClusterRecord, last_request_at: datetime) -> ClusterRecord | None:
    if record.last_active_at is not None and record.last_active_at >= last_request_at:
        return None  # another gateway's later report is in already
    record.last_active_at = last_request_at
    return record


def idle_s(record: ClusterRecord, now: datetime) -> float | None:
    """Seconds since the cluster's last request (or since it formed); None if never formed."""
    since = record.last_active_at or record.formed_at
    return (now - since).total_seconds() if since else None
