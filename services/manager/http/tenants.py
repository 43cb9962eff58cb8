"""Tenants, their quotas and API keys, the audit trail and usage: the access side of the API."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

from fastapi import Query, Request, Response
from pydantic import BaseModel, Field

from libs.common import subjects
from libs.common.models import TenantQuotas, TenantRecord, utcnow
from libs.common.streams import read_subject
from services.manager.http.deps import Deps, KeyId, TenantId, caller, keyed_router, manager, operator_only, problem
from services.manager.usage import TenantUsage, read_usage, total
from services.manager.auth import new_key
from services.manager.schemas import DNS_LABEL, DnsName, Strict

router = keyed_router(tags=["tenants"])


class QuotasIn(Strict):
    max_clusters: Annotated[int, Field(ge=0, le=1000)] = 5
    max_nodes: Annotated[int, Field(ge=0, le=10000)] = 9
    max_storage_gb: Annotated[int, Field(ge=0, le=10**6)] = 100


class CreateTenantRequest(Strict):
    tenant_org_id: DnsName
    quotas: QuotasIn = QuotasIn()


class UpdateTenantRequest(Strict):
    quotas: QuotasIn


class CreateKeyRequest(Strict):
    expires_in_s: Annotated[int, Field(ge=60, le=366 * 24 * 3600)] | None = None


class KeyView(BaseModel):
    key_id: str
    tenant_org_id: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class NewKeyView(KeyView):
    key: str  # shown once, never stored


async def _tenant(request: Request, tenant_org_id: str) -> TenantRecord:
    found = await manager(request).tenants.get(tenant_org_id)
    if found is None or not caller(request).may_see(tenant_org_id):
        raise problem(404, "not_found", f"no tenant {tenant_org_id}")
    return found


@router.post("/tenants", status_code=201, response_model=TenantRecord)
async def create_tenant(body: CreateTenantRequest, request: Request, deps: Deps):
    operator_only(request)
    tenant = TenantRecord(tenant_org_id=body.tenant_org_id, quotas=TenantQuotas(**body.quotas.model_dump()))
    if not await deps.tenants.create(tenant):
        raise problem(409, "conflict", f"tenant {body.tenant_org_id} exists", "tenant_org_id", "choose another id")
    return tenant


@router.get("/whoami")
async def whoami(request: Request):
    """Who the key is: the operator (every tenant) or a tenant's key; for the CLI and the console."""
    me = caller(request)
    return {"actor": me.actor, "tenant_org_id": me.tenant_org_id, "operator": me.is_operator}


@router.get("/tenants", response_model=list[TenantRecord])
async def list_tenants(request: Request, deps: Deps):
    tenants = await deps.tenants.all()
    return [t for t in tenants if caller(request).may_see(t.tenant_org_id)]


@router.get("/tenants/{tenant_org_id}", response_model=TenantRecord)
async def get_tenant(tenant_org_id: TenantId, request: Request):
    return await _tenant(request, tenant_org_id)


@router.patch("/tenants/{tenant_org_id}", response_model=TenantRecord)
async def update_tenant(tenant_org_id: TenantId, body: UpdateTenantRequest, request: Request, deps: Deps):
    operator_only(request)
    tenant = await _tenant(request, tenant_org_id)
    tenant.quotas = TenantQuotas(**body.quotas.model_dump())
    await deps.tenants.put(tenant)
    return tenant


@router.post("/tenants/{tenant_org_id}/keys", status_code=201, response_model=NewKeyView)
async def create_key(tenant_org_id: TenantId, request: Request, deps: Deps, body: CreateKeyRequest | None = None):
    """A new API key of the tenant. The key is in this answer only: store it now."""
    if caller(request).is_operator:
        await deps.tenants.ensure(tenant_org_id)
    await _tenant(request, tenant_org_id)
    key, record = new_key(tenant_org_id, body.expires_in_s if body else None)
    await deps.keys.put(record)
    return NewKeyView(key=key, **record.model_dump(include=set(KeyView.model_fields)))


@router.get("/tenants/{tenant_org_id}/keys", response_model=list[KeyView])
async def list_keys(tenant_org_id: TenantId, request: Request, deps: Deps):
    await _tenant(request, tenant_org_id)
    keys = await deps.keys.of_tenant(tenant_org_id)
    return [KeyView(**k.model_dump(include=set(KeyView.model_fields))) for k in keys]


@router.delete("/tenants/{tenant_org_id}/keys/{key_id}", status_code=204)
async def revoke_key(tenant_org_id: TenantId, key_id: KeyId, request: Request, deps: Deps):
    """Revoke a key: its next request is refused."""
    await _tenant(request, tenant_org_id)
    keys = deps.keys
    record = await keys.get(key_id)
    if record is None or record.tenant_org_id != tenant_org_id:
        raise problem(404, "not_found", f"no key {key_id}")
    record.revoked_at = record.revoked_at or utcnow()
    await keys.put(record)
    return Response(status_code=204)


@router.get("/audit")
async def audit(request: Request, deps: Deps, tenant_org_id: Annotated[str | None, Query(max_length=63,
                pattern=DNS_LABEL)] = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 200):
    """Every mutating call (who, what, when, result), oldest first; the operator's view."""
    operator_only(request)
    subject = subjects.tenant_audit(tenant_org_id) if tenant_org_id else subjects.AUDIT_ALL
    try:
        messages = await read_subject(deps.jetstream(), subjects.AUDIT_STREAM, subject)
    except TimeoutError:  # a long trail on a busy NATS: say so, rather than a 500
        raise problem(503, "audit_busy", "the audit trail did not come back in time; retry, or narrow it with "
                      "tenant_org_id")
    return {"events": [json.loads(m.data) for m in messages[-limit:]]}
@router.get("/tenants/{tenant_org_id}/usage", response_model=TenantUsage, tags=["usage"])
async def tenant_usage(
    tenant_org_id: TenantId,
    request: Request,
    deps: Deps,
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
    records = await read_usage(deps.jetstream(), tenant_org_id, start, end)
    return TenantUsage(tenant_org_id=tenant_org_id, start=start, end=end, records=records, totals=total(records))


