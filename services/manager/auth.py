"""Who is calling: API keys (operator and per tenant), ownership, and rate limits.

Keys are checked as `libs.common.api_keys` says (the gateway checks them the same way); this
module issues them and keeps them. A key of another tenant gets 404 for that tenant's
resources, so their existence is not revealed.
"""

from __future__ import annotations

import secrets
import time
from datetime import datetime, timedelta

from nats.js.kv import KeyValue

from libs.common.api_keys import Principal, api_key_of, key_digest, read_key, verify_key
from libs.common.kv import all_keys
from libs.common.models import ApiKeyRecord, utcnow

def new_key(tenant_org_id: str, expires_in_s: int | None) -> tuple[str, ApiKeyRecord]:
    """A fresh key (shown once) and the record to store for it."""
    key_id, secret, salt = secrets.token_hex(8), secrets.token_urlsafe(32), secrets.token_hex(16)
    expires_at = utcnow() + timedelta(seconds=expires_in_s) if expires_in_s else None
    record = ApiKeyRecord(key_id=key_id, tenant_org_id=tenant_org_id, salt=salt,
                          secret_hash=key_digest(salt, secret), expires_at=expires_at)
    return f"ess_{key_id}_{secret}", record


class ApiKeys:
    def __init__(self, kv: KeyValue, operator_key: str | None):
        self._kv = kv
        self._operator_key = operator_key

    async def put(self, record: ApiKeyRecord) -> None:
        await self._kv.put(record.key_id, record.model_dump_json().encode())

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        return await read_key(self._kv, key_id)

    async def of_tenant(self, tenant_org_id: str) -> list[ApiKeyRecord]:
        found = [await self.get(k) for k in await all_keys(self._kv)]
        return [k for k in found if k and k.tenant_org_id == tenant_org_id]

    async def authenticate(self, authorization: str | None, now: datetime) -> Principal | None:
        """The caller behind an `Authorization: ApiKey <key>` header, or None."""
        key = api_key_of(authorization)
        return await verify_key(self._kv, self._operator_key, key, now) if key else None


class RateLimiter:
    """A token bucket per caller: `burst` at once, refilled at `per_minute`."""

    def __init__(self, per_minute: int, burst: int):
        self._rate = per_minute / 60.0
        self._burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, actor: str, now: float | None = None) -> float:
        """0 when allowed; else the seconds until a call would be."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(actor, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        if tokens >= 1:
            self._buckets[actor] = (tokens - 1, now)
            return 0.0
        self._buckets[actor] = (tokens, now)
        return (1 - tokens) / self._rate
