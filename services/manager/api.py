"""The manager's REST API: authenticates, validates, records desired state, answers at once.

Every route but /health and /ready needs an API key, and a tenant's key sees only its tenant.
Engines are touched only by the vector-index routes; the provisioner acts on what this writes.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from datetime import datetime
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from libs.common import subjects
from libs.common.engines import (
    EngineError,
    IndexAlreadyExists,
    IndexNotFound,
    SearchEngine,
    VectorDocument,
    VectorIndexSpec,
    VectorQuery,
)
from libs.common.events import ClusterDesiredStateChanged
from libs.common.models import SERVING, ClusterRecord, ClusterSpec, ClusterStatus, utcnow
from libs.common.store import AlreadyExists, RecordGone
from libs.common.streams import read_subject
from services.manager.auth import Principal
from services.manager.drivers import EngineUnavailable, NoCredentials
from services.manager.quotas import QuotaExceeded, QuotaRefused
from services.manager.usage import TenantUsage, read_usage, total
from services.manager.schemas import (
    DNS_LABEL,
    INDEX_NAME,
    ClusterList,
    ClusterView,
    CreateClusterRequest,
    DocumentsRequest,
    DocumentsResult,
    SearchHitView,
    SearchRequest,
    SearchResult,
    UpdateClusterRequest,
    VectorIndexRequest,
    VectorIndexView,
)

ClusterId = Annotated[str, Path(pattern=r"^c[0-9a-f]{12}$", description="a cluster id, e.g. c1a2b3c4d5e6f")]
IndexName = Annotated[str, Path(max_length=200, pattern=INDEX_NAME)]
TenantId = Annotated[str, Path(max_length=63, pattern=DNS_LABEL)]
KeyId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")]
MUTATING = ("POST", "PATCH", "PUT", "DELETE")


def is_mutation(method: str, path: str) -> bool:
    return method in MUTATING and not path.endswith("/search")


async def authenticated(
    request: Request,
    authorization: Annotated[str | None, Header(description="ApiKey <key>")] = None,
) -> Principal:
    platform = request.app.state.platform
    principal = await platform.keys.authenticate(authorization, utcnow())
    if principal is None:
        raise HTTPException(401, {"error": "unauthorized", "message": "missing or unknown API key; send "
                                  "Authorization: ApiKey <key>"}, headers={"WWW-Authenticate": "ApiKey"})
    request.state.principal = principal
    if is_mutation(request.method, request.url.path):
        wait = platform.limiter.take(principal.actor)
        if wait:
            raise HTTPException(429, {"error": "rate_limited", "message": f"too many changes; retry in "
                                      f"{math.ceil(wait)} s"}, headers={"Retry-After": str(math.ceil(wait))})
    return principal


def caller(request: Request) -> Principal:
    return request.state.principal


def operator_only(request: Request) -> None:
    if not caller(request).is_operator:
        raise problem(403, "forbidden", "only the operator key may do this")


public = APIRouter()
router = APIRouter(dependencies=[Depends(authenticated)])
log = structlog.get_logger("api")


def quota_problem(exceeded: QuotaExceeded) -> HTTPException:
    return HTTPException(403, {"error": "quota_exceeded", "quota": exceeded.quota, "limit": exceeded.limit,
                               "message": exceeded.message})


def problem(status: int, error: str, message: str, field: str | None = None, fix: str | None = None) -> HTTPException:
    detail = {"error": error, "message": message}
    if field:
        detail["fields"] = [{"field": field, "message": message, "fix": fix}]
    return HTTPException(status_code=status, detail=detail)


async def _load(request: Request, cluster_id: ClusterId) -> ClusterRecord:
    record = await request.app.state.platform.store.read(cluster_id)
    if record is None or not caller(request).may_see(record.tenant_org_id):
        raise problem(404, "not_found", f"no cluster {cluster_id}")  # another tenant's looks absent
    return record


async def _announce(request: Request, record: ClusterRecord, change: str) -> None:
    event = ClusterDesiredStateChanged(
        cluster_id=record.id, tenant_org_id=record.tenant_org_id, change=change,
        generation=record.generation, request_id=request.state.request_id,
    )
    try:
        await request.app.state.platform.publish(event, subjects.cluster_desired(record.tenant_org_id, record.id))
    except Exception:
        # the desired state is already in KV: the periodic reconcile picks it up
        log.warning("desired-state event not published; the reconcile pass will catch up", cluster=record.id)


@public.get("/health", response_class=PlainTextResponse, tags=["platform"])
async def health() -> str:
    return "ok"


@public.get("/ready", tags=["platform"])
async def ready(request: Request) -> JSONResponse:
    connected = request.app.state.platform.nats_connected()
    body = {"status": "ready" if connected else "not ready", "nats": "connected" if connected else "unreachable"}
    return JSONResponse(body, status_code=200 if connected else 503)


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
    tenant = await platform.tenants.ensure(body.tenant_org_id)
    record = ClusterRecord(
        id="c" + uuid.uuid4().hex[:12],
        tenant_org_id=body.tenant_org_id, user=body.user, service_name=body.service_name,
        spec=ClusterSpec(replicas=body.replicas, cpu=body.cpu, memory=body.memory, storage=body.storage,
                         engine=engine, version=version),
        request_id=request.state.request_id, engine_lacks=sorted(platform.driver.engine_lacks.get(engine, ())),
    )
    try:
        async with platform.quotas.creating(tenant, record):  # the quota first, then the name
            await platform.store.create(record)
    except QuotaRefused as refused:
        raise quota_problem(refused.exceeded)
    except AlreadyExists:
        raise problem(409, "conflict", f"tenant {body.tenant_org_id} already has a service {body.service_name!r}",
                      "service_name", "choose another service_name, or delete the existing cluster first")
    view = ClusterView.of(record)
    if answer_key:
        await platform.store.remember_answer(answer_key, view.model_dump(mode="json"))
    await _announce(request, record, "created")
    structlog.contextvars.bind_contextvars(cluster=record.id, tenant=record.tenant_org_id)
    log.info("cluster requested", replicas=body.replicas, memory=body.memory)
    return view


@router.get("/clusters", response_model=ClusterList, tags=["clusters"])
async def list_clusters(
    request: Request,
    tenant_org_id: Annotated[str | None, Query(max_length=63, pattern=DNS_LABEL)] = None,
):
    me = caller(request)
    if tenant_org_id and not me.may_see(tenant_org_id):
        raise problem(404, "not_found", f"no tenant {tenant_org_id}")
    wanted = tenant_org_id or me.tenant_org_id
    records = await request.app.state.platform.store.read_all()
    mine = [r for r in records if wanted is None or r.tenant_org_id == wanted]
    return ClusterList(clusters=[ClusterView.of(r) for r in sorted(mine, key=lambda r: r.created_at)])


@router.get("/clusters/{cluster_id}", response_model=ClusterView, tags=["clusters"])
async def get_cluster(cluster_id: ClusterId, request: Request):
    # the hot read: serialised once, not validated again against response_model
    view = ClusterView.of(await _load(request, cluster_id))
    return Response(view.model_dump_json(), media_type="application/json")


@router.patch("/clusters/{cluster_id}", status_code=202, response_model=ClusterView, tags=["clusters"])
async def update_cluster(cluster_id: ClusterId, body: UpdateClusterRequest, request: Request):
    current = await _load(request, cluster_id)
    if current.delete_requested:
        raise problem(409, "conflict", f"cluster {cluster_id} is being deleted")

    def change(record: ClusterRecord) -> ClusterRecord | None:
        spec = record.spec.model_copy(update=body.spec_changes())
        scaling = record.scaling.model_copy(update=body.scaling_changes())
        if (spec, scaling) == (record.spec, record.scaling) or record.delete_requested:
            return None
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
    await _announce(request, record, "updated")
    return ClusterView.of(record)


@router.delete("/clusters/{cluster_id}", status_code=202, response_model=ClusterView, tags=["clusters"])
async def delete_cluster(cluster_id: ClusterId, request: Request):
    await _load(request, cluster_id)

    def change(record: ClusterRecord) -> ClusterRecord | None:
        if record.delete_requested:
            return None  # deleting twice is deleting once
        record.delete_requested = True
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
    await _announce(request, record, "deleted")
    return ClusterView.of(record)


# -- vector indices, through the engine adapter ----------------------------------------------
async def _engine(request: Request, cluster_id: ClusterId) -> SearchEngine:
    record = await _load(request, cluster_id)
    if record.status not in SERVING or not record.endpoint:
        raise problem(409, "not_ready", f"cluster {cluster_id} is {record.status}; retry once it is ready")
    return request.app.state.platform.engine_for(record)


def _check_dimensions(vector: list, dimensions: int, field: str) -> None:
    if len(vector) != dimensions:
        raise problem(422, "invalid_request", f"vector has {len(vector)} numbers, the index {dimensions}",
                      field, f"send exactly {dimensions} numbers")


def _engine_problem(exc: EngineError, index: str) -> HTTPException:
    if isinstance(exc, IndexNotFound):
        return problem(404, "not_found", f"no vector index {index!r} in this cluster")
    if isinstance(exc, IndexAlreadyExists):
        return problem(409, "conflict", f"vector index {index!r} already exists", "name", "choose another name")
    if exc.status and 400 <= exc.status < 500:
        return problem(400, "engine_rejected", str(exc))
    return problem(503, "engine_unavailable", f"the cluster's engine did not answer: {exc}; retry shortly")


@router.post("/clusters/{cluster_id}/vector-indices", status_code=201, response_model=VectorIndexView,
             tags=["vectors"])
async def create_vector_index(cluster_id: ClusterId, body: VectorIndexRequest, request: Request):
    engine = await _engine(request, cluster_id)
    try:
        await engine.create_vector_index(VectorIndexSpec(body.name, body.dimensions, body.similarity, body.text_fields))
    except EngineError as exc:
        raise _engine_problem(exc, body.name)
    return VectorIndexView(**body.model_dump())


@router.post("/clusters/{cluster_id}/vector-indices/{index}/documents", response_model=DocumentsResult,
             tags=["vectors"])
async def index_documents(cluster_id: ClusterId, index: IndexName, body: DocumentsRequest, request: Request):
    engine = await _engine(request, cluster_id)
    try:
        dimensions = await engine.vector_dimensions(index)
        for i, doc in enumerate(body.documents):
            _check_dimensions(doc.vector, dimensions, f"documents[{i}].vector")
        result = await engine.index_documents(
            index, [VectorDocument(d.id, [float(x) for x in d.vector], d.fields) for d in body.documents]
        )
    except EngineError as exc:
        raise _engine_problem(exc, index)
    return DocumentsResult(indexed=result.indexed, errors=result.errors)


@router.post("/clusters/{cluster_id}/vector-indices/{index}/search", response_model=SearchResult, tags=["vectors"])
async def search(cluster_id: ClusterId, index: IndexName, body: SearchRequest, request: Request):
    engine = await _engine(request, cluster_id)
    try:
        _check_dimensions(body.vector, await engine.vector_dimensions(index), "vector")
        hits = await engine.vector_search(index, VectorQuery([float(x) for x in body.vector], body.k, body.filter))
    except EngineError as exc:
        raise _engine_problem(exc, index)
    return SearchResult(hits=[SearchHitView(id=h.id, score=h.score, fields=h.fields) for h in hits])


@router.post("/clusters/{cluster_id}/credentials", tags=["clusters"])
async def rotate_credentials(cluster_id: ClusterId, request: Request):
    """New engine credentials for the cluster: the old ones stop working. Shown to the owner only."""
    record = await _load(request, cluster_id)
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
    await _load(request, cluster_id)
    state = await request.app.state.platform.shard_plan(cluster_id)
    if state is None:
        return {"cluster_id": cluster_id, "plan": None, "reason": "the shard controller has not planned it yet"}
    return state


@router.get("/clusters/{cluster_id}/events", tags=["shards"])
async def cluster_events(cluster_id: ClusterId, request: Request,
                         limit: Annotated[int, Query(ge=1, le=1000)] = 200):
    """The cluster's lifecycle: status changes, shard plans, actions and node-count requests, oldest first."""
    record = await _load(request, cluster_id)
    messages = await read_subject(request.app.state.platform.jetstream(), subjects.LIFECYCLE_STREAM,
                                  subjects.cluster_events(record.tenant_org_id, record.id))
    return {"cluster_id": cluster_id, "events": [
        {"kind": m.subject.rsplit(".", 1)[1], **json.loads(m.data)} for m in messages[-limit:]
    ]}


@router.get("/tenants/{tenant_org_id}/usage", response_model=TenantUsage, tags=["usage"])
async def tenant_usage(
    tenant_org_id: TenantId,
    request: Request,
    start: Annotated[datetime, Query(alias="from", description="ISO 8601, e.g. 2026-11-24T00:00:00Z")],
    end: Annotated[datetime, Query(alias="to", description="ISO 8601, after from")],
):
    """Hourly usage records of the tenant's clusters whose period starts in [from, to), with totals."""
    if not caller(request).may_see(tenant_org_id):
        raise problem(404, "not_found", f"no tenant {tenant_org_id}")
    if start.tzinfo is None or end.tzinfo is None:
        raise problem(422, "invalid_request", "times need a zone", "from", "write times like 2026-11-24T00:00:00Z")
    if end <= start:
        raise problem(422, "invalid_request", "to must be after from", "to", "send a to later than from")
    records = await read_usage(request.app.state.platform.jetstream(), tenant_org_id, start, end)
    return TenantUsage(tenant_org_id=tenant_org_id, start=start, end=end, records=records, totals=total(records))


@public.get("/asyncapi.json", tags=["platform"], include_in_schema=False)
async def asyncapi(request: Request) -> Response:
    return Response(request.app.state.platform.asyncapi_json(), media_type="application/json")
