"""The operator's routes for backups of the platform's own state: take one now, list them, read
one, and restore one into an empty NATS (after NATS lost its data). Tenants get 403."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Request

from services.manager.control_backup import BACKUP_ID, ControlBackupManifest, ControlRestoreReport
from services.manager.control_plane import (
    BackupDamaged, BackupNotFound, BackupsUnavailable, ControlPlaneNotEmpty,
)
from services.manager.http.deps import Deps, caller, keyed_router, operator_only, problem
from services.manager.object_store import ObjectStoreError

router = keyed_router(tags=["platform"])
BackupId = Annotated[str, Path(pattern=BACKUP_ID, description="a control-plane backup's id, e.g. "
                                                              "cp-20261207t120000z-a1b2c3")]


def _unavailable(exc: Exception):
    if isinstance(exc, BackupsUnavailable):
        return problem(409, "backups_off", str(exc))
    return problem(503, "store_unavailable", f"the snapshot store did not do it: {exc}")


@router.post("/platform/backups", status_code=201, response_model=ControlBackupManifest)
async def take_backup(request: Request, deps: Deps):
    """A backup of the platform's state now: clusters, names, tenants, keys (hashes only), quota
    claims, open usage meters, and the usage and audit streams, with a manifest of checksums."""
    operator_only(request)
    try:
        return await deps.control.take(f"asked by {caller(request).actor}")
    except (BackupsUnavailable, ObjectStoreError) as exc:
        raise _unavailable(exc) from exc


@router.get("/platform/backups", response_model=list[ControlBackupManifest])
async def list_backups(request: Request, deps: Deps):
    """Every whole control-plane backup, newest first."""
    operator_only(request)
    try:
        return await deps.control.list()
    except (BackupsUnavailable, ObjectStoreError) as exc:
        raise _unavailable(exc) from exc


@router.get("/platform/backups/{backup_id}", response_model=ControlBackupManifest)
async def get_backup(backup_id: BackupId, request: Request, deps: Deps):
    operator_only(request)
    try:
        manifest = await deps.control.manifest(backup_id)
    except (BackupsUnavailable, ObjectStoreError) as exc:
        raise _unavailable(exc) from exc
    if manifest is None:
        raise problem(404, "not_found", f"no control-plane backup {backup_id}")
    return manifest


@router.post("/platform/backups/{backup_id}/restore", response_model=ControlRestoreReport)
async def restore_backup(backup_id: BackupId, request: Request, deps: Deps):
    """Write a backup back into an empty NATS; the provisioner then adopts the engines that still
    run. The answer says what changed after the backup (engines it does not know, clusters whose
    engine is gone). Refused, with nothing written, if NATS already holds clusters, tenants or
    keys, or if any file of the backup fails its checksum."""
    operator_only(request)
    try:
        return await deps.control.restore(backup_id)
    except BackupNotFound as exc:
        raise problem(404, "not_found", f"no control-plane backup {backup_id}") from exc
    except BackupDamaged as exc:
        raise problem(422, "backup_damaged", f"backup {backup_id} is damaged, nothing was restored: {exc}; "
                      "restore another backup (GET /platform/backups lists them)", "backup_id",
                      "choose a backup whose files match its manifest") from exc
    except ControlPlaneNotEmpty as exc:
        raise problem(409, "control_plane_not_empty", f"NATS already holds state in {exc}: a restore goes only "
                      "into an empty NATS, nothing was restored") from exc
    except (BackupsUnavailable, ObjectStoreError) as exc:
        raise _unavailable(exc) from exc
