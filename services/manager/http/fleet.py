"""The operator's fleet upgrades: move every cluster of an engine from one version to another, at
most `at_once` at a time, and read each cluster's progress. Tenants get 403."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Request

from services.manager.fleet import UPGRADE_ID, FleetUpgradeRequest, FleetUpgradeView
from services.manager.http.deps import Deps, caller, keyed_router, operator_only, problem
from services.manager.transitions import Invalid

router = keyed_router(tags=["platform"])
UpgradeId = Annotated[str, Path(pattern=UPGRADE_ID, description="a fleet upgrade's id, e.g. up-a1b2c3d4e5f6")]


@router.post("/platform/upgrades", status_code=202, response_model=FleetUpgradeView)
async def ask_fleet_upgrade(body: FleetUpgradeRequest, request: Request, deps: Deps):
    """Upgrade every `engine` cluster on `from_version` to `to_version`, `at_once` at a time: a
    ready one stops with its requests held and starts on the new version; a hibernated one wakes
    on it at its next request, or now with `wake_hibernated`."""
    operator_only(request)
    try:
        return await deps.fleet.ask(body, caller(request).actor)
    except Invalid as exc:
        raise problem(422, "invalid_request", exc.message, "to_version", exc.fix) from exc


@router.get("/platform/upgrades", response_model=list[FleetUpgradeView])
async def list_fleet_upgrades(request: Request, deps: Deps):
    """Every fleet upgrade, newest first, with each cluster's progress."""
    operator_only(request)
    return await deps.fleet.list()


@router.get("/platform/upgrades/{upgrade_id}", response_model=FleetUpgradeView)
async def get_fleet_upgrade(upgrade_id: UpgradeId, request: Request, deps: Deps):
    operator_only(request)
    found = await deps.fleet.get(upgrade_id)
    if found is None:
        raise problem(404, "not_found", f"no fleet upgrade {upgrade_id}")
    return found
