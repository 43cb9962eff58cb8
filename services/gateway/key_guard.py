"""Bounds on what refused keys may cost: a flood of wrong or random keys must not slow other
tenants or NATS. Pure bookkeeping with an injected clock; `keys.py` consults it.

- A key refused a moment ago is refused again from memory (no KV read) for the key cache's time.
- An address with too many refused keys in a minute gets 429 for keys not already known good.
- Lookups of keys not known good share a budget per second, so many addresses together cannot
  turn the gateway into a KV read amplifier either. Known-good keys are re-checked outside it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

WINDOW_S = 60.0
MAX_TRACKED = 50_000  # digests or addresses remembered; the oldest are forgotten first


class Expiring:
    """A bounded map of key -> deadline; `fresh` says whether one is still in force."""

    def __init__(self, limit: int = MAX_TRACKED):
        self._until: OrderedDict[str, float] = OrderedDict()
        self._limit = limit

    def put(self, key: str, until: float) -> None:
        self._until[key] = until
        self._until.move_to_end(key)
        while len(self._until) > self._limit:
            self._until.popitem(last=False)

    def fresh(self, key: str, now: float) -> bool:
        until = self._until.get(key)
        if until is None:
            return False
        if until <= now:
            del self._until[key]
            return False
        return True

    def drop(self, key: str) -> None:
        self._until.pop(key, None)


@dataclass(frozen=True)
class Throttled:
    retry_after_s: int
    reason: str


class KeyGuard:
    def __init__(self, failures_per_minute: int, lookups_per_s: float, refused_ttl_s: float):
        self._failures_per_minute = failures_per_minute
        self._lookups_per_s = lookups_per_s
        self._refused_ttl_s = refused_ttl_s
        self._refused = Expiring()
        self._failures: OrderedDict[str, tuple[float, int]] = OrderedDict()  # address -> (window start, count)
        self._tokens = lookups_per_s
        self._filled_at = 0.0

    def refused_recently(self, digest: str, now: float) -> bool:
        return self._refused.fresh(digest, now)

    def may_look_up(self, address: str, now: float) -> Throttled | None:
        """Before a KV read for a key not known good: None (and the read is charged to `address`
        until it turns out good), or why this one waits. Charged before the read, so concurrent
        requests cannot all pass a count that each of them saw below the limit."""
        start, count = self._failures.pop(address, (now, 0))
        if now - start >= WINDOW_S:
            start, count = now, 0
        self._failures[address] = (start, count)
        while len(self._failures) > MAX_TRACKED:
            self._failures.popitem(last=False)
        if count >= self._failures_per_minute:
            return Throttled(max(1, int(start + WINDOW_S - now) + 1),
                             f"too many refused keys from {address}; wait before trying again")
        self._tokens = min(self._lookups_per_s, self._tokens + (now - self._filled_at) * self._lookups_per_s)
        self._filled_at = now
        if self._tokens < 1:
            return Throttled(1, "too many unknown keys at this gateway right now; retry in a second")
        self._tokens -= 1
        self._failures[address] = (start, count + 1)
        return None

    def refused(self, digest: str, now: float) -> None:
        self._refused.put(digest, now + self._refused_ttl_s)

    def accepted(self, digest: str, address: str) -> None:
        """A good key: nothing refused, and its lookup is not held against its address."""
        self._refused.drop(digest)
        if address in self._failures:
            start, count = self._failures[address]
            self._failures[address] = (start, max(0, count - 1))
