"""Tenant keys at the gateway: checked as the manager checks them, remembered briefly so a
request costs no KV read (a revoked key keeps working for at most `ESS_KEY_CACHE_S`)."""

from __future__ import annotations

import hashlib
import time

from nats.js.kv import KeyValue

from libs.common.api_keys import Principal, verify_key
from libs.common.models import utcnow


class KeyCache:
    def __init__(self, kv: KeyValue, operator_key: str | None, ttl_s: float):
        self._kv = kv
        self._operator_key = operator_key
        self._ttl_s = ttl_s
        self._known: dict[str, tuple[Principal, float]] = {}  # sha256 of a key -> who, until when

    async def principal(self, key: str) -> Principal | None:
        digest = hashlib.sha256(key.encode()).hexdigest()  # the key itself is never kept
        now = time.monotonic()
        known = self._known.get(digest)
        if known and known[1] > now:
            return known[0]
        principal = await verify_key(self._kv, self._operator_key, key, utcnow())
        if principal is None:
            self._known.pop(digest, None)  # not cached: a key made a moment ago works at once
            return None
        if len(self._known) > 10_000:
            self._known.clear()
        self._known[digest] = (principal, now + self._ttl_s)
        return principal
