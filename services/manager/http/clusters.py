"""Cluster routes: create, list, read, change, delete, hibernate and wake, credentials, and what
the shard controller and the lifecycle say of a cluster. Each records desired state and answers at
once; the provisioner acts on it."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Annotated

import structlog
from fastapi import Header, Query, Request, Response
from fastapi.responses import JSONResponse

from libs.common import subjects
from libs.common.engines import EngineError
from libs.common.models import ClusterRecord, ClusterSpec, ClusterStatus, utcnow
from libs.common.store import AlreadyExists, RecordGone
from libs.common.streams import read_subject
from services.manager.backups import new_policy
from services.manager.drivers import EngineUnavailable, NoCredentials
from services.manager.http.deps import (
    ClusterId, announce, caller, load_cluster, keyed_router, log, problem, quota_problem,
)
from services.manager.http.snapshots import backups_on, clone_restore
from services.manager.quotas import QuotaRefused
from services.manager.transitions import NotNow, request_hibernation
from services.manager.schemas import DNS_LABEL, ClusterList, ClusterView, CreateClusterRequest, UpdateClusterRequest

router = keyed_router()


def view(request: Request, record: ClusterRecord) -> ClusterView:
    return ClusterView.of(record, request.app.state.platform.settings.public_gateway_url, caller(request).is_operator)


@router.post("/clusters", status_code=202, response_model=ClusterView, tags=["clusters"])
async def create_cluster(
    body: CreateClusterRequest,
    request: Request,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
):
    platform = request.app.state.platform
    if not caller(request).may_see(body.tenant_org_id):
        raise problem(403, "forbidden", "a tenant key creates clusters of its own tenant only", "tenant_org_id",
                      f"use {caller(request).tenant_org_id}")
    answer_key = hashlib.sha256(f"{body.tenant_org_id}:{idempotency_key}".encode()).hexdigest() \
        if idempotency_key else None
    if answer_key and (answer := await platform.store.remembered_answer(answer_key)):
        return JSONResponse(answer, status_code=202)
    available = platform.driver.engine_versions
    engine = body.engine or (platform.settings.default_engine if platform.settings.default_engine in available
                             else next(iter(available)))
    if engine not in available:
        raise problem(422, "invalid_request", f"engine {engine!r} cannot run on the {platform.settings.driver} driver",
                      "engine", f"use one of {sorted(available)}")
    version = body.version or available[engine][0]
    if version not in available[engine]:
        raise problem(422, "invalid_request", f"{engine} {version} is not available on this platform",
                      "version", f"use one of {available[engine]} or leave version out")
    restore = await clone_restore(request, body.source, body.tenant_org_id, engine)
    tenant = await platform.tenants.ensure(body.tenant_org_id)
    record = ClusterRecord(
        id="c" + uuid.uuid4().hex[:12],
        tenant_org_id=body.tenant_org_id, user=body.user, service_name=body.service_name,
        spec=ClusterSpec(replicas=body.replicas, cpu=body.cpu, memory=body.memory, storage=body.storage,
                         engine=engine, version=version),
        request_id=request.state.request_id, engine_lacks=sorted(platform.driver.engine_lacks.get(engine, ())),
        hibernate_after_s=platform.settings.hibernate_after_s if body.hibernate_after_s is None
        else body.hibernate_after_s,
        snapshot_policy=new_policy(platform.settings, engine),
        restore=restore,
    )
    try:
        async with platform.quotas.creating(tenant, record):  # the quota first, then the name
            await platform.store.create(record)
    except QuotaRefused as refused:
        raise quota_problem(refused.exceeded)
    except AlreadyExists:
        raise problem(409, "conflict", f"tenant {body.tenant_org_id} already has a service {body.service_name!r}",
                      "service_name", "choose another service_name, or delete the existing cluster first")
    shown = view(request, record)
    if answer_key:
        await platform.store.remember_answer(answer_key, shown.model_dump(mode="json"))
    await announce(request, record, "created")
    structlog.contextvars.bind_contextvars(cluster=record.id, tenant=record.tenant_org_id)
    log.info("cluster requested", replicas=body.replicas, memory=body.memory)
    return shown


@router.get("/clusters", response_model=ClusterList, tags=["clusters"])
async def list_clusters(
    request: Request,
    tenant_org_id: Annotated[str | None, Query(max_length=63, pattern=DNS_LABEL)] = None,
    deleted: Annotated[bool, Query(description="true: deleted clusters still kept for undelete")] = False,
):
    me = caller(request)
    if tenant_org_id and not me.may_see(tenant_org_id):
        raise problem(404, "not_found", f"no tenant {tenant_org_id}")
    wanted = tenant_org_id or me.tenant_org_id
    records = await request.app.state.platform.store.read_all()
    mine = [r for r in records if (wanted is None or r.tenant_org_id == wanted)
            and (r.status == ClusterStatus.DELETED) == deleted]
    return ClusterList(clusters=[view(request, r) for r in sorted(mine, key=lambda r: r.created_at)])


@router.get("/clusters/{cluster_id}", response_model=ClusterView, tags=["clusters"])
async def get_cluster(cluster_id: ClusterId, request: Request):
    # the hot read: serialised once, not validated again against response_model
    shown = view(request, await load_cluster(request, cluster_id))
    return Response(shown.model_dump_json(), media_type="application/json")


@router.patch("/clusters/{cluster_id}", status_code=202, response_model=ClusterView, tags=["clusters"])
async def update_cluster(cluster_id: ClusterId, body: UpdateClusterRequest, request: Request):
    current = await load_cluster(request, cluster_id)
    if current.delete_requested:
        raise problem(409, "conflict", f"cluster {cluster_id} is being deleted")
    if body.policy_changes().get("every_s", 0) > 0:
        backups_on(request, current.spec.engine)  # a schedule nothing would follow

    def change(record: ClusterRecord) -> ClusterRecord | None:
        spec = record.spec.model_copy(update=body.spec_changes())
        scaling = record.scaling.model_copy(update=body.scaling_changes())
        idle = record.hibernate_after_s if body.hibernate_after_s is None else body.hibernate_after_s
        policy = record.snapshot_policy.model_copy(update=body.policy_changes())
        if ((spec, scaling, idle, policy) == (record.spec, record.scaling, record.hibernate_after_s,
                                              record.snapshot_policy) or record.delete_requested):
            return None
        record.hibernate_after_s = idle
        record.snapshot_policy = policy
        if scaling.min_nodes > scaling.max_nodes:
            raise problem(422, "invalid_request", f"min_nodes {scaling.min_nodes} is above max_nodes "
                          f"{scaling.max_nodes}", "min_nodes", "send both, or keep min_nodes <= max_nodes")
        record.scaling = scaling
        record.request_id = request.state.request_id
        if spec != record.spec:
            record.spec = spec
            record.generation += 1
            record.status = ClusterStatus.SCALING
            record.status_reason = "spec changed; waiting for the provisioner"
        return record

    platform = request.app.state.platform
    try:
        if body.replicas:  # of the changes, only the node count counts against a quota
            tenant = await platform.tenants.ensure(current.tenant_org_id)
            async with platform.quotas.resizing(tenant, current, body.replicas):
                record = await platform.store.mutate(cluster_id, change)
        else:
            record = await platform.store.mutate(cluster_id, change)
    except QuotaRefused as refused:
        raise quota_problem(refused.exceeded)
    except RecordGone:
        raise problem(404, "not_found", f"no cluster {cluster_id}")
    await announce(request, record, "updated")
    return view(request, record)


@router.delete("/clusters/{cluster_id}", status_code=202, response_model=ClusterView, tags=["clusters"])
async def delete_cluster(cluster_id: ClusterId, request: Request):
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
        record = await request.app.state.platform.store.mutate(cluster_id, change)
    except RecordGone:
        raise problem(404, "not_found", f"no cluster {cluster_id}")
    # a cluster being deleted counts against no quota; also when it was asked before (a retry)
    await request.app.state.platform.quotas.release(record.tenant_org_id, cluster_id)
    await announce(request, record, "deleted")
    return view(request, record)


@router.post("/clusters/{cluster_id}/hibernate", status_code=202, response_model=ClusterView, tags=["serverless"])
async def hibernate_cluster(cluster_id: ClusterId, request: Request):
    """Stop the cluster's engine now, keeping its data; the next request through the gateway wakes it."""
    await load_cluster(request, cluster_id)
    platform = request.app.state.platform
    reason = f"asked by {caller(request).actor}"
    try:
        record = await platform.store.mutate(cluster_id, lambda r: request_hibernation(r, reason))
    except NotNow as exc:
        raise problem(409, "not_ready", str(exc))
    except RecordGone:
        raise problem(404, "not_found", f"no cluster {cluster_id}")
    await announce(request, record, "updated")
    return view(request, record)


@router.post("/clusters/{cluster_id}/wake", status_code=202, response_model=ClusterView, tags=["serverless"])
async def wake_cluster(cluster_id: ClusterId, request: Request):
    """Start a hibernated cluster's engine without waiting for a request; its status says when it is ready."""
    if (await load_cluster(request, cluster_id)).delete_requested:
        raise problem(409, "conflict", f"cluster {cluster_id} is being deleted")
    record = await request.app.state.platform.wake(cluster_id, f"asked by {caller(request).actor}")
    return view(request, record or await load_cluster(request, cluster_id))


@router.post("/clusters/{cluster_id}/credentials", tags=["clusters"])
async def rotate_credentials(cluster_id: ClusterId, request: Request):
    """New engine credentials for the cluster: the old ones stop working. Shown to the owner only."""
    record = await load_cluster(request, cluster_id)
    if record.status != ClusterStatus.READY:
        raise problem(409, "not_ready", f"cluster {cluster_id} is {record.status}; retry once it is ready")
    platform = request.app.state.platform
    try:
        credentials = await platform.driver.rotate_credentials(record)
    except NoCredentials as exc:
        raise problem(409, "no_credentials", str(exc))
    except (EngineUnavailable, EngineError) as exc:
        raise problem(503, "engine_unavailable", f"credentials not rotated: {exc}; retry shortly")

    def change(current: ClusterRecord) -> ClusterRecord:
        current.credentials = credentials
        return current

    await platform.store.mutate(cluster_id, change)
    platform.forget_engine(cluster_id)
    return {"cluster_id": cluster_id, "credentials": credentials.model_dump()}


@router.get("/clusters/{cluster_id}/plan", tags=["shards"])
async def shard_plan(cluster_id: ClusterId, request: Request):
    """The shard controller's latest plan for the cluster and why, and any operation in flight."""
    await load_cluster(request, cluster_id)
    state = await request.app.state.platform.shard_plan(cluster_id)
    if state is None:
        return {"cluster_id": cluster_id, "plan": None, "reason": "the shard controller has not planned it yet"}
    return state


@router.get("/clusters/{cluster_id}/events", tags=["shards"])
async def cluster_events(cluster_id: ClusterId, request: Request,
                         limit: Annotated[int, Query(ge=1, le=1000)] = 200):
    """The cluster's lifecycle: status changes, shard plans, actions and node-count requests, oldest first."""
    record = await load_cluster(request, cluster_id)
    messages = await read_subject(request.app.state.platform.jetstream(), subjects.LIFECYCLE_STREAM,
                                  subjects.cluster_events(record.tenant_org_id, record.id))
    return {"cluster_id": cluster_id, "events": [
        {"kind": m.subject.rsplit(".", 1)[1], **json.loads(m.data)} for m in messages[-limit:]
    ]}
