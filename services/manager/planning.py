"""Pure decisions of the provisioner: how big an engine is, and what to do next.

No I/O here: every function takes values and returns a value with a `reason`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from libs.common.models import ASLEEP, ClusterRecord, ClusterStatus, EngineCredentials
from libs.common.quantities import parse_bytes, parse_cpu_millis
from services.manager.transitions import idle_s

HEALTHY = ("green", "yellow")
# the reason of a ready cluster whose last change of nodes was given up: kept until the next change
RESIZE_GIVEN_UP = "change of nodes given up"


@dataclass(frozen=True)
class EngineSize:
    """How many engine nodes, and each node's heap and processors."""

    nodes: int
    heap_mb: int
    processors: int


def plan_engine_size(
    nodes: int, cpu: str, memory: str, heap_min_mb: int, heap_max_mb: int, host_cpus: int
) -> EngineSize:
    """Each node's heap is half its memory and its processors its CPU, clamped for a small machine."""
    heap = max(heap_min_mb, min(heap_max_mb, parse_bytes(memory) // 2**20 // 2))
    processors = max(1, min(host_cpus, math.ceil(parse_cpu_millis(cpu) / 1000)))
    return EngineSize(nodes=nodes, heap_mb=heap, processors=processors)


@dataclass(frozen=True)
class EngineObservation:
    running: bool
    size: EngineSize | None = None  # what the running JVM was started with
    health: str | None = None  # None: not answering
    nodes: int = 0
    endpoint: str | None = None
    credentials: EngineCredentials | None = None  # None: the engine asks for none
    down: int = 0  # nodes of the cluster whose process is not running (the rest serve)
    note: str | None = None  # what the driver saw that the status reason should tell a person
    # ready rests on the pods' readiness probes: the manager cannot ask the engine (health stays None)
    probes_only: bool = False
    versions: tuple[str, ...] = ()  # the engine version of each running node; empty: the driver does not say


class Step(StrEnum):
    START = "start"
    HIBERNATE = "hibernate"
    MARK_HIBERNATED = "mark_hibernated"
    RESIZE = "resize"
    REMOVE = "remove"
    MARK_READY = "mark_ready"
    FAIL = "fail"
    WAIT = "wait"
    NOTHING = "nothing"


@dataclass(frozen=True)
class ReconcilePlan:
    step: Step
    reason: str
    status: ClusterStatus | None = None  # the status to record; None keeps it


def plan_reconcile(
    record: ClusterRecord,
    desired: EngineSize,
    observed: EngineObservation,
    now: datetime,
    provision_timeout_s: float,
) -> ReconcilePlan:
    """The next step that moves the running engine toward the record's desired state."""
    if record.status == ClusterStatus.DELETED:
        return ReconcilePlan(Step.NOTHING, "deleted; its final snapshot is kept for undelete")
    if record.delete_requested:
        return ReconcilePlan(Step.REMOVE, "delete requested", ClusterStatus.DELETING)
    if record.status == ClusterStatus.FAILED and record.observed_generation == record.generation:
        return ReconcilePlan(Step.NOTHING, f"failed: {record.status_reason}; change the spec to retry")
    # a begun stop completes, even when a wake came meanwhile (then the engine starts below)
    stopping = record.status == ClusterStatus.HIBERNATING and observed.running
    if record.hibernate_requested or stopping:
        if observed.running:
            return ReconcilePlan(Step.HIBERNATE, record.status_reason)
        if record.status != ClusterStatus.HIBERNATED:
            return ReconcilePlan(Step.MARK_HIBERNATED, "engine stopped, data kept; the next request wakes it",
                                 ClusterStatus.HIBERNATED)
        return ReconcilePlan(Step.NOTHING, "hibernated")
    idle = idle_s(record, now)
    if (record.status == ClusterStatus.READY and observed.running and record.hibernate_after_s
            and idle is not None and idle >= record.hibernate_after_s):
        return ReconcilePlan(Step.HIBERNATE, f"no request for {idle:.0f} s (hibernate_after_s "
                                             f"{record.hibernate_after_s})")
    settling = record.status in (ClusterStatus.REQUESTED, ClusterStatus.PROVISIONING, ClusterStatus.SCALING,
                                 ClusterStatus.WAKING)
    answered = observed.health in HEALTHY or observed.probes_only
    if settling and now - record.updated_at > timedelta(seconds=provision_timeout_s) and not answered:
        return ReconcilePlan(
            Step.FAIL,
            f"engine not healthy within {provision_timeout_s:.0f} s; {observed.note or 'see its engine.log'}",
            ClusterStatus.FAILED,
        )
    if not observed.running:
        if record.status in ASLEEP:
            return ReconcilePlan(Step.START, "waking: starting the engine on its data", ClusterStatus.WAKING)
        if record.status == ClusterStatus.READY:
            return ReconcilePlan(Step.START, "engine exited; restarting it", ClusterStatus.PROVISIONING)
        status = ClusterStatus.SCALING if record.status == ClusterStatus.SCALING else ClusterStatus.PROVISIONING
        return ReconcilePlan(Step.START, "engine not running; starting it", status)
    if observed.size != desired:
        change = _describe_change(observed.size, desired)
        return ReconcilePlan(Step.RESIZE, f"spec changed: {change}", ClusterStatus.SCALING)
    if observed.down:
        # the others keep serving: heal in place, the status stays what it is
        return ReconcilePlan(Step.RESIZE, f"{observed.down} node(s) not running; restarting them")
    if (record.status == ClusterStatus.READY and record.observed_generation == record.generation
            and record.status_reason.startswith(RESIZE_GIVEN_UP)):
        return ReconcilePlan(Step.NOTHING, record.status_reason)
    behind = [v for v in observed.versions if v != record.spec.version]
    if behind:
        return ReconcilePlan(Step.RESIZE, f"upgrading to {record.spec.engine} {record.spec.version} node by node: "
                             f"{len(behind)} of {len(observed.versions)} still on {', '.join(sorted(set(behind)))}",
                             ClusterStatus.SCALING)
    if answered and observed.nodes >= desired.nodes:
        if record.status != ClusterStatus.READY or record.observed_generation != record.generation:
            reason = observed.note or f"engine healthy with {observed.nodes} node(s)"
            return ReconcilePlan(Step.MARK_READY, reason, ClusterStatus.READY)
        return ReconcilePlan(Step.NOTHING, observed.note or "ready and matching its spec")
    if record.status == ClusterStatus.READY:
        return ReconcilePlan(Step.NOTHING, observed.note or f"ready, engine health {observed.health or 'not answering'}")
    return ReconcilePlan(Step.WAIT, observed.note or f"engine starting ({observed.nodes}/{desired.nodes} nodes)")


def plan_given_up_resize(record: ClusterRecord, running: EngineSize, why: str) -> tuple[ClusterRecord, str]:
    """The record back at the node count its engine still runs at, and a reason saying why."""
    reason = f"{RESIZE_GIVEN_UP}: {record.spec.replicas} node(s) asked, {running.nodes} kept; {why}"
    reverted = record.model_copy(deep=True)
    reverted.spec = reverted.spec.model_copy(update={"replicas": running.nodes})
    return reverted, reason


def _describe_change(old: EngineSize | None, new: EngineSize) -> str:
    if old is None:
        return "unknown running size"
    parts = []
    if old.nodes != new.nodes:
        parts.append(f"nodes {old.nodes} -> {new.nodes}")
    if old.heap_mb != new.heap_mb:
        parts.append(f"heap {old.heap_mb} MiB -> {new.heap_mb} MiB")
    if old.processors != new.processors:
        parts.append(f"processors {old.processors} -> {new.processors}")
    return ", ".join(parts)
