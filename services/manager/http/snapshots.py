"""Backup routes: take, list and delete a cluster's snapshots, and restore one in place.

A snapshot or a restore starts and the route answers 202 at once; the snapshot's status shows
on the list, the restore's on the cluster (`restore.state`). A hibernated cluster is not woken
for a backup: its data has not changed since it went to sleep, so the answer is 409 saying so.
A cluster without backups (`backups.backups_off`) gets 409 `backups_off` naming the setting the
operator changes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import HTTPException, Path, Request
from pydantic import BaseModel, Field

from libs.common.engines import EngineError
from libs.common.engines.snapshots import SnapshotExists, SnapshotMissing, Snapshots, resolve
from libs.common.models import SERVING, ClusterRecord, ClusterStatus, RestoreState, utcnow
from libs.common.store import RecordGone
from services.manager import backups
from services.manager.http.deps import (
    ClusterId, Deps, announce, caller, keyed_router, load_cluster, log, manager, problem,
)
from services.manager.quotas import QuotaRefused
from services.manager.schemas import INDEX_NAME, SNAPSHOT_NAME, CloneSource, ClusterView, Strict
from services.manager.store_index import AlreadyExists

router = keyed_router()


def view(request: Request, record: ClusterRecord) -> ClusterView:
    return ClusterView.of(record, manager(request).settings.public_gateway_url, caller(request).is_operator)
SnapshotName = Annotated[str, Path(max_length=200, pattern=SNAPSHOT_NAME)]


class SnapshotView(BaseModel):
    name: str
    status: str  # in_progress, success, partial, failed
    started_at: str | None = None
    finished_at: str | None = None
    indices: list[str] = []
    size_bytes: int = 0
    reason: str | None = None  # why a snapshot failed


class SnapshotList(BaseModel):
    snapshots: list[SnapshotView]


class RestoreRequest(Strict):
    snapshot: Annotated[str, Field(max_length=200, pattern=SNAPSHOT_NAME)]
    indices: list[Annotated[str, Field(max_length=200, pattern=INDEX_NAME)]] = []  # empty: every index


def _engine_problem(exc: EngineError, what: str) -> HTTPException:
    if isinstance(exc, SnapshotMissing):
        return problem(404, "not_found", str(exc))
    return problem(503, "engine_unavailable", f"{what}: the cluster's engine did not answer ({exc}); retry shortly")


def backups_on(request: Request, engine: str) -> None:
    """409 `backups_off` for a cluster of `engine` without backups; the fix names the setting."""
    off = backups.backups_off(manager(request).settings, engine)
    if off is not None:
        raise problem(409, "backups_off", f"{off}; ask the operator", off.setting, off.fix)


async def _serving(request: Request, cluster_id: str) -> tuple[ClusterRecord, Snapshots]:
    """The cluster and its registered repository; 409 with the reason when it cannot snapshot now."""
    record = await load_cluster(request, cluster_id)
    backups_on(request, record.spec.engine)
    if record.asleep:
        raise problem(409, "hibernated", f"cluster {cluster_id} is hibernated: its data has not changed since "
                      "it went to sleep, so its latest snapshot still holds it; wake it (POST "
                      f"/clusters/{cluster_id}/wake) to snapshot or restore")
    if record.delete_requested or record.status not in SERVING or not record.endpoint:
        raise problem(409, "not_ready", f"cluster {cluster_id} is {record.status}; retry once it is ready")
    backup = manager(request).backups
    try:
        await backup.ensure_repository(record)
    except EngineError as exc:
        raise _engine_problem(exc, "repository not registered")
    return record, backup.snapshots(record)


@router.post("/clusters/{cluster_id}/snapshots", status_code=202, tags=["backups"])
async def take_snapshot(cluster_id: ClusterId, request: Request):
    """Start a snapshot of every index of the cluster; its status shows on the list."""
    record, snapshots = await _serving(request, cluster_id)
    name = backups.manual_name(utcnow())
    try:
        await snapshots.create(backups.REPOSITORY, name)
    except SnapshotExists:
        raise problem(409, "conflict", f"snapshot {name} exists already; retry")
    except EngineError as exc:
        raise _engine_problem(exc, "snapshot not started")
    log.info("snapshot started", cluster=record.id, snapshot=name)
    return {"name": name, "status": "in_progress"}


@router.get("/clusters/{cluster_id}/snapshots", response_model=SnapshotList, tags=["backups"])
async def list_snapshots(cluster_id: ClusterId, request: Request):
    """The cluster's snapshots, oldest first, each with its status, indices and size."""
    _, snapshots = await _serving(request, cluster_id)
    try:
        found = await snapshots.list(backups.REPOSITORY)
    except EngineError as exc:
        raise _engine_problem(exc, "snapshots not listed")
    return SnapshotList(snapshots=[SnapshotView(
        name=s.name, status=s.status, indices=s.indices, size_bytes=s.size_bytes, reason=s.reason,
        started_at=s.started_at.isoformat() if s.started_at else None,
        finished_at=s.finished_at.isoformat() if s.finished_at else None,
    ) for s in found])


@router.delete("/clusters/{cluster_id}/snapshots/{name}", tags=["backups"])
async def delete_snapshot(cluster_id: ClusterId, name: SnapshotName, request: Request):
    _, snapshots = await _serving(request, cluster_id)
    try:
        await snapshots.get(backups.REPOSITORY, name)
        await snapshots.delete(backups.REPOSITORY, name)
    except EngineError as exc:
        raise _engine_problem(exc, "snapshot not deleted")
    return {"name": name, "status": "deleted"}


@router.post("/clusters/{cluster_id}/restore", status_code=202, response_model=ClusterView, tags=["backups"])
async def restore(cluster_id: ClusterId, body: RestoreRequest, request: Request, deps: Deps):
    """Replace the named indices (none named: every index in the snapshot) with their copies in
    the snapshot; the cluster's `restore.state` turns `done` (or `failed`, with a reason)."""
    record, snapshots = await _serving(request, cluster_id)
    try:
        found = await snapshots.get(backups.REPOSITORY, body.snapshot)
    except EngineError as exc:
        raise _engine_problem(exc, "restore not started")
    if found.status not in ("success", "partial"):
        raise problem(409, "not_ready", f"snapshot {body.snapshot} is {found.status}; restore a successful one",
                      "snapshot", "pick one whose status is success on GET .../snapshots")
    missing = resolve(body.indices, found.indices)[1]
    if missing:
        raise problem(422, "invalid_request", f"snapshot {body.snapshot} holds no index {', '.join(missing)}",
                      "indices", f"name some of {found.indices}, or leave indices out for all")

    def change(current: ClusterRecord) -> ClusterRecord | None:
        if current.restore and current.restore.state in ("requested", "running"):
            raise problem(409, "conflict", f"a restore of {current.restore.snapshot} is under way; wait for it")
        current.restore = RestoreState(snapshot=body.snapshot, indices=body.indices)
        current.request_id = request.state.request_id
        return current

    try:
        record = await deps.store.mutate(cluster_id, change)
    except RecordGone:
        raise problem(404, "not_found", f"no cluster {cluster_id}")
    deps.backups.kick(record)  # start now rather than at the next pass
    await announce(request, record, "updated")
    log.info("restore requested", cluster=record.id, snapshot=body.snapshot, indices=body.indices)
    return view(request, record)


@router.post("/clusters/{cluster_id}/undelete", status_code=202, response_model=ClusterView, tags=["backups"])
async def undelete(cluster_id: ClusterId, request: Request, deps: Deps):
    """Bring a deleted cluster back within its retention: a new engine with its final snapshot
    restored; the status turns ready, then `restore.state` done."""
    found = await deps.store.read(cluster_id)
    if found is not None and found.status != ClusterStatus.DELETED:
        await load_cluster(request, cluster_id)  # 404 unless the caller may see it
        raise problem(409, "conflict", f"cluster {cluster_id} is {found.status}, not deleted"
                      + ("; wait until its final snapshot is taken" if found.delete_requested else ""))
    record = await load_cluster(request, cluster_id, deleted=True)
    if record.final_snapshot:
        backups_on(request, record.spec.engine)  # its final snapshot could not be restored
    tenant = await deps.tenants.ensure(record.tenant_org_id)
    try:
        await deps.store.reserve_name(record)
    except AlreadyExists:
        raise problem(409, "conflict", f"service name {record.service_name!r} belongs to another cluster now",
                      "service_name", "delete or rename that cluster, or clone this one's snapshot into a new one")

    def change(current: ClusterRecord) -> ClusterRecord | None:
        if current.status != ClusterStatus.DELETED:
            return None  # undeleted twice is undeleted once
        snapshot = current.final_snapshot
        fresh = current.model_copy(update={
            "delete_requested": False, "deleted_at": None, "final_snapshot": None, "formed_at": None,
            "status": ClusterStatus.REQUESTED, "status_reason": f"undeleted; its final snapshot {snapshot} is "
            "restored once the engine is ready", "observed_generation": 0, "endpoint": None, "credentials": None,
            "hibernate_requested": False, "nodes": 0, "health": None, "last_active_at": None,
            "restore": RestoreState(snapshot=snapshot) if snapshot else None,
            "request_id": request.state.request_id,
        })
        return fresh

    try:
        async with deps.quotas.creating(tenant, record):
            record = await deps.store.mutate(cluster_id, change)
    except QuotaRefused as refused:
        await deps.store.release_name(record)
        raise problem(403, "quota_exceeded", refused.exceeded.message)
    except RecordGone:
        raise problem(404, "not_found", f"no cluster {cluster_id}: its retention is over")
    await announce(request, record, "created")
    log.info("cluster undeleted", cluster=cluster_id, snapshot=record.restore.snapshot if record.restore else None)
    return view(request, record)


async def clone_restore(request: Request, source: CloneSource | None, tenant_org_id: str,
                        engine: str) -> RestoreState | None:
    """The restore a new cluster of `engine` starts with when it is a clone (`from`); 4xx if it
    may not be (both it and its source need backups)."""
    if source is None:
        return None
    backups_on(request, engine)
    origin = await load_cluster(request, source.cluster_id)  # another tenant's looks absent to a tenant key
    backups_on(request, origin.spec.engine)
    if origin.tenant_org_id != tenant_org_id and not caller(request).is_operator:
        raise problem(403, "forbidden", "only the operator clones across tenants", "from.cluster_id",
                      "clone a cluster of the new cluster's tenant")
    if origin.status in SERVING and origin.endpoint and not origin.delete_requested:
        snapshots = await _serving(request, origin.id)
        try:
            found = await snapshots[1].get(backups.REPOSITORY, source.snapshot)
        except EngineError as exc:
            raise _engine_problem(exc, "snapshot not checked")
        if found.status not in ("success", "partial"):
            raise problem(409, "not_ready", f"snapshot {source.snapshot} is {found.status}", "from.snapshot",
                          "clone a snapshot whose status is success")
    return RestoreState(snapshot=source.snapshot, source_cluster_id=origin.id)
