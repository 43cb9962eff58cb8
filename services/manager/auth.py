"""Who is calling: API keys (operator and per tenant), ownership, and rate limits.

Tenant keys look like `ess_<key id>_<secret>`; KV keeps only a salted SHA-256 of the secret
(the secret is 32 random bytes, so a slow hash adds nothing but latency). A key of another
tenant gets 404 for that tenant's resources, so their existence is not revealed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from nats.js.kv import KeyValue

from libs.common.models import ApiKeyRecord, utcnow
from libs.common.kv import all_keys, read_model

OPERATOR = "operator"


@dataclass(frozen=True)
class Principal:
    actor: str  # "operator" or a key id
    tenant_org_id: str | None  # None: the operator, who sees every tenant

    @property
    def is_operator(self) -> bool:
        return self.tenant_org_id is None

    def may_see(self, tenant_org_id: str) -> bool:
        return self.is_operator or self.tenant_org_id == tenant_org_id


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


def new_key(tenant_org_id: str, expires_in_s: int | None) -> tuple[str, ApiKeyRecord]:
    """A fresh key (shown once) and the record to store for it."""
    key_id, secret, salt = secrets.token_hex(8), secrets.token_urlsafe(32), secrets.token_hex(16)
    expires_at = utcnow() + timedelta(seconds=expires_in_s) if expires_in_s else None
    record = ApiKeyRecord(key_id=key_id, tenant_org_id=tenant_org_id, salt=salt,
                          secret_hash=_digest(salt, secret), expires_at=expires_at)
    return f"ess_{key_id}_{secret}", record


class ApiKeys:
    def __init__(self, kv: KeyValue, operator_key: str | None):
        self._kv = kv
        self._operator_key = operator_key

    async def put(self, record: ApiKeyRecord) -> None:
        await self._kv.put(record.key_id, record.model_dump_json().encode())

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        if not key_id.isalnum():
            return None
        return await read_model(self._kv, key_id, ApiKeyRecord)

    async def of_tenant(self, tenant_org_id: str) -> list[ApiKeyRecord]:
        found = [await self.get(k) for k in await all_keys(self._kv)]
        return [k for k in found if k and k.tenant_org_id == tenant_org_id]

    async def authenticate(self, authorization: str | None, now: datetime) -> Principal | None:
        """The caller behind an `Authorization: ApiKey <key>` header, or None."""
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "apikey" or not key:
            return None
        if self._operator_key and hmac.compare_digest(key.encode(), self._operator_key.encode()):
            return Principal(OPERATOR, None)
        parts = key.split("_", 2)
        if len(parts) != 3 or parts[0] != "ess":
            return None
        record = await self.get(parts[1])  # read each time: a revocation holds at once
        if record is None or record.revoked_at or (record.expires_at and record.expires_at <= now):
            return None
        if not hmac.compare_digest(record.secret_hash, _digest(record.salt, parts[2])):
            return None
        return Principal(record.key_id, record.tenant_org_id)


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
