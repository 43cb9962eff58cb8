"""What every route shares: the manager's wiring (`Deps`), path parameters, who is calling, rate
limits, problems, and loading a cluster the caller may see (another tenant's looks absent)."""

from __future__ import annotations

import math
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Header, HTTPException, Path, Request

from libs.common import subjects
from libs.common.events import ClusterDesiredStateChanged
from libs.common.models import ClusterRecord, ClusterStatus, utcnow
from libs.common.api_keys import Principal
from libs.common.failures import NATS_FAILURES
from services.manager.quotas import QuotaExceeded
from services.manager.schemas import CLUSTER_ID, DNS_LABEL, INDEX_NAME
from services.manager.wiring import ManagerDeps

ClusterId = Annotated[str, Path(pattern=CLUSTER_ID, description="a cluster id, e.g. c1a2b3c4d5e6f")]
IndexName = Annotated[str, Path(max_length=200, pattern=INDEX_NAME)]
TenantId = Annotated[str, Path(max_length=63, pattern=DNS_LABEL)]
KeyId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")]
MUTATING = ("POST", "PATCH", "PUT", "DELETE")


def manager(request: Request) -> ManagerDeps:
    """The wiring `app.py` built at start-up; FastAPI serves no route before, so 503 is a guard."""
    deps = getattr(request.app.state, "deps", None)
    if deps is None:
        raise HTTPException(503, {"error": "starting", "message": "the manager is starting; retry shortly"})
    return deps


Deps = Annotated[ManagerDeps, Depends(manager)]


def is_mutation(method: str, path: str) -> bool:
    return method in MUTATING and not path.endswith("/search")


async def authenticated(
    request: Request,
    deps: Deps,
    authorization: Annotated[str | None, Header(description="ApiKey <key>")] = None,
) -> Principal:
    principal = await deps.keys.authenticate(authorization, utcnow())
    if principal is None:
        raise HTTPException(401, {"error": "unauthorized", "message": "missing or unknown API key; send "
                                  "Authorization: ApiKey <key>"}, headers={"WWW-Authenticate": "ApiKey"})
    request.state.principal = principal
    if is_mutation(request.method, request.url.path):
        wait = deps.limiter.take(principal.actor)
        if wait:
            raise HTTPException(429, {"error": "rate_limited", "message": f"too many changes; retry in "
                                      f"{math.ceil(wait)} s"}, headers={"Retry-After": str(math.ceil(wait))})
    return principal


def caller(request: Request) -> Principal:
    return request.state.principal


def operator_only(request: Request) -> None:
    if not caller(request).is_operator:
        raise problem(403, "forbidden", "only the operator key may do this")


def keyed_router(**kwargs) -> APIRouter:
    """A router whose every route needs an API key."""
    return APIRouter(dependencies=[Depends(authenticated)], **kwargs)


log = structlog.get_logger("api")


def quota_problem(exceeded: QuotaExceeded) -> HTTPException:
    return HTTPException(403, {"error": "quota_exceeded", "quota": exceeded.quota, "limit": exceeded.limit,
                               "message": exceeded.message})


def problem(status: int, error: str, message: str, field: str | None = None, fix: str | None = None) -> HTTPException:
    detail = {"error": error, "message": message}
    if field:
        detail["fields"] = [{"field": field, "message": message, "fix": fix}]
    return HTTPException(status_code=status, detail=detail)


async def load_cluster(request: Request, cluster_id: ClusterId, deleted: bool = False) -> ClusterRecord:
    """The cluster, if the caller may see it; a deleted one (kept for undelete) only if `deleted`."""
    store = manager(request).store
    record = await store.read(cluster_id)
    if record is None and (found := await store.get(cluster_id)):
        record = found[0]  # made a moment ago through another replica: its watch has not caught up
    if record is None or not caller(request).may_see(record.tenant_org_id) or (
            (record.status == ClusterStatus.DELETED) != deleted):
        raise problem(404, "not_found", f"no cluster {cluster_id}")  # another tenant's looks absent
    return record


async def announce(request: Request, record: ClusterRecord, change: str) -> None:
    event = ClusterDesiredStateChanged(
        cluster_id=record.id, tenant_org_id=record.tenant_org_id, change=change,
        generation=record.generation, request_id=request.state.request_id,
    )
    try:
        await manager(request).outbox.lifecycle(event, subjects.cluster_desired(record.tenant_org_id, record.id))
    except NATS_FAILURES:
        # the desired state is already in KV: the periodic reconcile picks it up
        log.warning("desired-state event not published; the reconcile pass will catch up", cluster=record.id)
