"""Fleet upgrades, as plain decisions: the operator asks to move every cluster of one engine from
one version to another, at most `at_once` at a time. This module owns what such a request is,
which clusters the next pass starts, and what each cluster's progress reads; `fleet_runner.py`
applies it (one manager replica at a time) and `http/fleet.py` serves it.

A cluster is upgraded as `PATCH version` does it (`transitions.start_upgrade`): a ready one stops
with its requests held and starts on the new version; a hibernated one wakes on it, at its next
request, or now when the request says `wake_hibernated` (then it takes one of the places)."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field, StrictInt

from libs.common.models import ClusterRecord, ClusterStatus, EngineKind, utcnow
from services.manager.planning import RESIZE_GIVEN_UP

VERSION = r"^\d+\.\d+\.\d+$"
UPGRADE_ID = r"^up-[0-9a-f]{12}$"


class FleetUpgradeRequest(BaseModel):
    model_config = {"extra": "forbid"}

    engine: EngineKind
    from_version: Annotated[str, Field(pattern=VERSION)]
    to_version: Annotated[str, Field(pattern=VERSION)]
    at_once: Annotated[StrictInt, Field(ge=1, le=50)] = 2  # clusters stopped for their upgrade at the same time
    wake_hibernated: bool = False  # true: hibernated ones are woken for it; false: they wake on it when asked
    tenant_org_id: str | None = None  # only this tenant's clusters; None: every tenant's


class FleetUpgrade(FleetUpgradeRequest):
    model_config = {"extra": "ignore"}

    id: str
    asked_by: str
    created_at: datetime = Field(default_factory=utcnow)
    targets: list[str] = Field(default_factory=list)  # the clusters on the old version when it was asked
    started: dict[str, datetime] = Field(default_factory=dict)  # cluster id -> when this upgrade moved it
    finished_at: datetime | None = None


def new_upgrade(request: FleetUpgradeRequest, asked_by: str, records: list[ClusterRecord]) -> FleetUpgrade:
    """The upgrade of the clusters on the old version now (one made later on it is its tenant's choice)."""
    targets = [r.id for r in records if r.spec.engine == request.engine and r.spec.version == request.from_version
               and not r.delete_requested and r.status != ClusterStatus.DELETED
               and request.tenant_org_id in (None, r.tenant_org_id)]
    return FleetUpgrade(**request.model_dump(), id=f"up-{secrets.token_hex(6)}", asked_by=asked_by, targets=targets)


class Progress(StrEnum):
    WAITING = "waiting"  # on the old version, its turn to come
    UPGRADING = "upgrading"  # moving to the new version (rolling, by surge, or starting on it)
    DONE = "done"  # ready on the new version
    ASLEEP = "asleep"  # hibernated, on the new version: it wakes on it
    FAILED = "failed"  # on the new version and failed to start, or its upgrade given up: its reason says why
    BUSY = "busy"  # on the old version but scaling, waking or failed: it waits for ready or hibernated


class ClusterProgress(BaseModel):
    id: str
    tenant_org_id: str
    progress: Progress
    status: ClusterStatus
    version: str
    reason: str


class FleetUpgradeView(FleetUpgrade):
    state: str  # "running", "done"
    clusters: list[ClusterProgress]


def _progress(upgrade: FleetUpgrade, record: ClusterRecord) -> Progress:
    if record.spec.version == upgrade.from_version:
        return Progress.WAITING if record.status in (ClusterStatus.READY, ClusterStatus.HIBERNATED) else Progress.BUSY
    match record.status:
        case ClusterStatus.READY:
            return Progress.FAILED if record.status_reason.startswith(RESIZE_GIVEN_UP) else Progress.DONE
        case ClusterStatus.HIBERNATED:
            return Progress.ASLEEP
        case ClusterStatus.FAILED:
            return Progress.FAILED
    return Progress.UPGRADING


def concerned(upgrade: FleetUpgrade, records: list[ClusterRecord]) -> list[ClusterRecord]:
    """The clusters this upgrade is about, still there: those on its old version when it was asked."""
    targets = set(upgrade.targets)
    return [r for r in records if r.id in targets and not r.delete_requested and r.status != ClusterStatus.DELETED]


@dataclass(frozen=True)
class FleetStep:
    upgrade: list[str] = field(default_factory=list)  # ready (or, when asked, hibernated) ones to move now
    relabel: list[str] = field(default_factory=list)  # hibernated ones to wake on the new version later
    done: bool = False


def fleet_step(upgrade: FleetUpgrade, records: list[ClusterRecord]) -> FleetStep:
    """The next pass: fill the free places among `at_once` with waiting ready clusters (oldest
    first, so the order is stable), and mark hibernated ones. Done once no cluster is on the old
    version and none of those it moved is still on its way."""
    mine = sorted(concerned(upgrade, records), key=lambda r: (r.created_at, r.id))
    progress = {r.id: _progress(upgrade, r) for r in mine}
    if all(p in (Progress.DONE, Progress.ASLEEP, Progress.FAILED) for p in progress.values()):
        return FleetStep(done=True)
    free = upgrade.at_once - sum(p == Progress.UPGRADING for p in progress.values())
    step = FleetStep()
    for record in mine:
        if progress[record.id] != Progress.WAITING:
            continue
        asleep = record.status == ClusterStatus.HIBERNATED
        if asleep and not upgrade.wake_hibernated:
            step.relabel.append(record.id)
        elif free > 0:
            step.upgrade.append(record.id)
            free -= 1
    return step


def view(upgrade: FleetUpgrade, records: list[ClusterRecord]) -> FleetUpgradeView:
    clusters = [ClusterProgress(id=r.id, tenant_org_id=r.tenant_org_id, progress=_progress(upgrade, r),
                                status=r.status, version=r.spec.version, reason=r.status_reason)
                for r in sorted(concerned(upgrade, records), key=lambda r: (r.created_at, r.id))]
    return FleetUpgradeView(**upgrade.model_dump(), state="done" if upgrade.finished_at else "running",
                            clusters=clusters)


def valid_id(upgrade_id: str) -> bool:
    return re.match(UPGRADE_ID, upgrade_id) is not None
