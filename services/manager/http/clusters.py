"""Cluster routes: create, list, read, change, delete, hibernate and wake, credentials, and what
the shard controller and the lifecycle say of a cluster. Each records desired state and answers at
once; the provisioner acts on it."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated

import structlog
from fastapi import Header, Query, Request, Response
from fastapi.responses import JSONResponse

from libs.common import subjects
from libs.common.engines import EngineError
from libs.common.models import ClusterRecord, ClusterStatus, utcnow
from libs.common.store import RecordGone
from libs.common.streams import read_subject
from services.manager.drivers import EngineUnavailable, NoCredentials
from services.manager.http.deps import (
    ClusterId, Deps, announce, caller, load_cluster, keyed_router, manager, log, problem, quota_problem,
)
from services.manager.http.snapshots import backups_on, clone_restore
from services.manager.quotas import QuotaRefused
from services.manager.transitions import (
    Invalid, NotNow, change_spec, check_upgrade, new_cluster_id, new_record, pick_engine, start_upgrade,
)
from services.manager.schemas import DNS_LABEL, ClusterList, ClusterView, CreateClusterRequest, UpdateClusterRequest
from services.manager.store_index import AlreadyExists

router = keyed_router()


def view(request: Request, record: ClusterRecord) -> ClusterView:
    return ClusterView.of(record, manager(request).settings.public_gateway_url, caller(request).is_operator)


@router.post("/clusters", status_code=202, response_model=ClusterView, tags=["clusters"])
async def create_cluster(
    body: CreateClusterRequest,
    request: Request,
    deps: Deps,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
):
    if not caller(request).may_see(body.tenant_org_id):
        raise problem(403, "forbidden", "a tenant key creates clusters of its own tenant only", "tenant_org_id",
                      f"use {caller(request).tenant_org_id}")
    answer_key = hashlib.sha256(f"{body.tenant_org_id}:{idempotency_key}".encode()).hexdigest() \
        if idempotency_key else None
    if answer_key and (answer := await deps.store.remembered_answer(answer_key)):
        return JSONResponse(answer, status_code=202)
    try:  # before looking at a clone's source
        engine, _ = pick_engine(body.engine, body.version, deps.offer, deps.new_cluster_defaults.engine)
    except Invalid as exc:
        raise problem(422, "invalid_request", exc.message, exc.field, exc.fix)
    restore = await clone_restore(request, body.source, body.tenant_org_id, engine)
    tenant = await deps.tenants.ensure(body.tenant_org_id)
    record = new_record(body, new_cluster_id(), deps.offer, deps.new_cluster_defaults,
                        request.state.request_id, restore)
    try:
        async with deps.quotas.creating(tenant, record):  # the quota first, then the name
            await deps.store.create(record)
    except QuotaRefused as refused:
        raise quota_problem(refused.exceeded)
    except AlreadyExists:
        raise problem(409, "conflict", f"tenant {body.tenant_org_id} already has a service {body.service_name!r}",
                      "service_name", "choose another service_name, or delete the existing cluster first")
    shown = view(request, record)
    if answer_key:
        await deps.store.remember_answer(answer_key, shown.model_dump(mode="json"))
    await announce(request, record, "created")
    structlog.contextvars.bind_contextvars(cluster=record.id, tenant=record.tenant_org_id)
    log.info("cluster requested", replicas=body.replicas, memory=body.memory)
    return shown


@router.get("/clusters", response_model=ClusterList, tags=["clusters"])
async def list_clusters(
    request: Request,
    deps: Deps,
    tenant_org_id: Annotated[str | None, Query(max_length=63, pattern=DNS_LABEL)] = None,
    deleted: Annotated[bool, Query(description="true: deleted clusters still kept for undelete")] = False,
):
    me = caller(request)
    if tenant_org_id and not me.may_see(tenant_org_id):
        raise problem(404, "not_found", f"no tenant {tenant_org_id}")
    wanted = tenant_org_id or me.tenant_org_id
    records = await deps.store.read_all()
    mine = [r for r in records if (wanted is None or r.tenant_org_id == wanted)
            and (r.status == ClusterStatus.DELETED) == deleted]
    return ClusterList(clusters=[view(request, r) for r in sorted(mine, key=lambda r: r.created_at)])


@router.get("/clusters/{cluster_id}", response_model=ClusterView, tags=["clusters"])
async def get_cluster(cluster_id: ClusterId, request: Request):
    # the hot read: serialised once, not validated again against response_model
    shown = view(request, await load_cluster(request, cluster_id))
    return Response(shown.model_dump_json(), media_type="application/json")


@router.patch("/clusters/{cluster_id}", status_code=202, response_model=ClusterView, tags=["clusters"])
async def update_cluster(cluster_id: ClusterId, body: UpdateClusterRequest, request: Request, deps: Deps):
    current = await load_cluster(request, cluster_id)
    if current.delete_requested:
        raise problem(409, "conflict", f"cluster {cluster_id} is being deleted")
    if body.policy_changes().get("every_s", 0) > 0:
        backups_on(request, current.spec.engine)  # a schedule nothing would follow

    def change(record: ClusterRecord) -> ClusterRecord | None:
        try:
            if body.version:
                check_upgrade(record.spec.engine, record.spec.version, body.version, deps.offer)
                return start_upgrade(record, body.version, request.state.request_id)
            return change_spec(record, body, request.state.request_id)
        except Invalid as exc:
            raise problem(422, "invalid_request", exc.message, exc.field, exc.fix)
        except NotNow as exc:
            raise problem(409, "not_ready", str(exc))

    try:
        if body.replicas:  # of the changes, only the node count counts against a quota
            tenant = await deps.tenants.ensure(current.tenant_org_id)
            async with deps.quotas.resizing(tenant, current, body.replicas):
                record = await deps.store.mutate(cluster_id, change)
        else:
            record = await deps.store.mutate(cluster_id, change)
    except QuotaRefused as refused:
        raise quota_problem(refused.exceeded)
    except RecordGone:
        raise problem(404, "not_found", f"no cluster {cluster_id}")
    await announce(request, record, "updated")
    return view(request, record)


@router.delete("/clusters/{cluster_id}", status_code=202, response_model=ClusterView, tags=["clusters"])
async def delete_cluster(cluster_id: ClusterId, request: Request, deps: Deps):
    await load_cluster(request, cluster_id)

    def change(record: ClusterRecord) -> ClusterRecord | None:
        if record.delete_requested:
            return None  # deleting twice is deleting once
        record.delete_requested = True
        record.deleted_at = utcnow()  # the final snapshot's retention counts from here
        record.status = ClusterStatus.DELETING
        record.status_reason = "delete requested"
        record.request_id = request.state.request_id
        return record

    try:
        record = await deps.store.mutate(cluster_id, change)
    except RecordGone:
        raise problem(404, "not_found", f"no cluster {cluster_id}")
    # a cluster being deleted counts against no quota; also when it was asked before (a retry)
    await deps.quotas.release(record.tenant_org_id, cluster_id)
    await announce(request, record, "deleted")
    return view(request, record)


@router.post("/clusters/{cluster_id}/hibernate", status_code=202, response_model=ClusterView, tags=["serverless"])
async def hibernate_cluster(cluster_id: ClusterId, request: Request, deps: Deps):
    """Stop the cluster's engine now, keeping its data (status `hibernating`, then `hibernated`).
    The stop completes even if requests come meanwhile: the gateway holds them and wakes it after."""
    await load_cluster(request, cluster_id)
    reason = f"asked by {caller(request).actor}"
    try:
        record = await deps.hibernate(cluster_id, reason)
    except NotNow as exc:
        raise problem(409, "not_ready", str(exc))
    except RecordGone:
        raise problem(404, "not_found", f"no cluster {cluster_id}")
    await announce(request, record, "updated")
    return view(request, record)


@router.post("/clusters/{cluster_id}/wake", status_code=202, response_model=ClusterView, tags=["serverless"])
async def wake_cluster(cluster_id: ClusterId, request: Request, deps: Deps):
    """Start a hibernated cluster's engine without waiting for a request; its status says when it is ready."""
    if (await load_cluster(request, cluster_id)).delete_requested:
        raise problem(409, "conflict", f"cluster {cluster_id} is being deleted")
    record = await deps.wake(cluster_id, f"asked by {caller(request).actor}")
    return view(request, record or await load_cluster(request, cluster_id))


@router.post("/clusters/{cluster_id}/credentials", tags=["clusters"])
async def rotate_credentials(cluster_id: ClusterId, request: Request, deps: Deps):
    """New engine credentials for the cluster: the old ones stop working. Shown to the owner only."""
    record = await load_cluster(request, cluster_id)
    if record.status != ClusterStatus.READY:
        raise problem(409, "not_ready", f"cluster {cluster_id} is {record.status}; retry once it is ready")
    try:
        credentials = await deps.driver.rotate_credentials(record)
    except NoCredentials as exc:
        raise problem(409, "no_credentials", str(exc))
    except (EngineUnavailable, EngineError) as exc:
        raise problem(503, "engine_unavailable", f"credentials not rotated: {exc}; retry shortly")

    def change(current: ClusterRecord) -> ClusterRecord:
        current.credentials = credentials
        return current

    await deps.store.mutate(cluster_id, change)
    deps.engines.forget(cluster_id)
    return {"cluster_id": cluster_id, "credentials": credentials.model_dump()}


@router.get("/clusters/{cluster_id}/plan", tags=["shards"])
async def shard_plan(cluster_id: ClusterId, request: Request, deps: Deps):
    """The shard controller's latest plan for the cluster and why, and any operation in flight."""
    await load_cluster(request, cluster_id)
    state = await deps.shard_plan(cluster_id)
    if state is None:
        return {"cluster_id": cluster_id, "plan": None, "reason": "the shard controller has not planned it yet"}
    return state


@router.get("/clusters/{cluster_id}/events", tags=["shards"])
async def cluster_events(cluster_id: ClusterId, request: Request, deps: Deps,
                         limit: Annotated[int, Query(ge=1, le=1000)] = 200):
    """The cluster's lifecycle: status changes, shard plans, actions and node-count requests, oldest first."""
    record = await load_cluster(request, cluster_id)
    messages = await read_subject(deps.jetstream(), subjects.LIFECYCLE_STREAM,
                                  subjects.cluster_events(record.tenant_org_id, record.id))
    return {"cluster_id": cluster_id, "events": [
        {"kind": m.subject.rsplit(".", 1)[1], **json.loads(m.data)} for m in messages[-limit:]
    ]}
