"""Who is calling, by API key: the contract the manager's API and the gateway both check.

Tenant keys look like `ess_<key id>_<secret>`; KV keeps only a salted SHA-256 of the secret
(the secret is 32 random bytes, so a slow hash adds nothing but latency). The operator key
is a setting and sees every tenant.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

from nats.js.kv import KeyValue

from libs.common.kv import read_model
from libs.common.models import ApiKeyRecord

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


def key_digest(salt: str, secret: str) -> str:
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


def api_key_of(authorization: str | None) -> str | None:
    """The key of an `Authorization: ApiKey <key>` header, else None."""
    scheme, _, key = (authorization or "").partition(" ")
    return key.strip() or None if scheme.lower() == "apikey" else None


async def read_key(kv: KeyValue, key_id: str) -> ApiKeyRecord | None:
    if not key_id.isalnum():
        return None
    return await read_model(kv, key_id, ApiKeyRecord)


async def verify_key(kv: KeyValue, operator_key: str | None, key: str, now: datetime) -> Principal | None:
    """The caller behind `key`, read from KV each time (a revocation holds at once), or None."""
    if operator_key and hmac.compare_digest(key.encode(), operator_key.encode()):
        return Principal(OPERATOR, None)
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "ess":
        return None
    record = await read_key(kv, parts[1])
    if record is None or record.revoked_at or (record.expires_at and record.expires_at <= now):
        return None
    if not hmac.compare_digest(record.secret_hash, key_digest(record.salt, parts[2])):
        return None
    return Principal(record.key_id, record.tenant_org_id)
