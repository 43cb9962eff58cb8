"""Tenant keys at the gateway: checked as the manager checks them, remembered briefly so a
request costs no KV read (a revoked key keeps working for at most `ESS_KEY_CACHE_S`), and a
refused key bounded by `KeyGuard` so a flood of bad keys costs neither NATS nor other tenants.
While the store does not answer (a NATS leader election, an outage), a key that was valid in the
last ten minutes keeps working; an unknown one gets 503."""

from __future__ import annotations

import asyncio
import hashlib
import time

from nats.js.kv import KeyValue

from libs.common.api_keys import Principal, verify_key
from libs.common.failures import KNOWN_STATE_WAIT_S, NATS_FAILURES
from libs.common.models import utcnow
from services.gateway.key_guard import Expiring, KeyGuard, Throttled


class KeyCache:
    def __init__(self, kv: KeyValue, operator_key: str | None, ttl_s: float, guard: KeyGuard):
        self._kv = kv
        self._operator_key = operator_key
        self._ttl_s = ttl_s
        self._guard = guard
        self._known: dict[str, tuple[Principal, float]] = {}  # sha256 of a key -> who, until when
        self._known_good = Expiring()  # keys valid lately: re-checked after the TTL outside the guard

    def trusted_for(self, key: str | None) -> float:
        """How much longer this gateway takes `key` on trust (engine credentials: the key cache's time),
        so a pump it grants the key to trusts it no longer than the gateway would."""
        if key is None:
            return self._ttl_s
        known = self._known.get(hashlib.sha256(key.encode()).hexdigest())
        return max(0.0, known[1] - time.monotonic()) if known else 0.0

    async def principal(self, key: str, address: str) -> Principal | Throttled | None:
        digest = hashlib.sha256(key.encode()).hexdigest()  # the key itself is never kept
        now = time.monotonic()
        known = self._known.get(digest)
        if known and known[1] > now:
            return known[0]
        if not self._known_good.fresh(digest, now):
            if self._guard.refused_recently(digest, now):
                return None
            throttled = self._guard.may_look_up(address, now)
            if throttled:
                return throttled
        lookup = verify_key(self._kv, self._operator_key, key, utcnow())
        try:
            if known and self._known_good.fresh(digest, now):
                principal = await asyncio.wait_for(lookup, KNOWN_STATE_WAIT_S)
            else:
                principal = await lookup
        except NATS_FAILURES:
            if known and self._known_good.fresh(digest, now):
                return known[0]  # the store not answering: a key valid lately stays so until it does
            raise
        if principal is None:
            self._known.pop(digest, None)
            self._known_good.drop(digest)
            self._guard.refused(digest, now)
            return None
        if len(self._known) > 10_000:
            self._known.clear()
        self._known[digest] = (principal, now + self._ttl_s)
        self._known_good.put(digest, now + max(600.0, self._ttl_s))
        self._guard.accepted(digest, address)
        return principal
