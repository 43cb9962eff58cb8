"""API keys: only a salted hash is kept; expired, revoked and forged keys are refused."""

from datetime import timedelta

from nats.js.errors import KeyNotFoundError

from libs.common.models import utcnow
from services.manager.auth import ApiKeys, RateLimiter, new_key


class MemoryKV:
    def __init__(self):
        self.values: dict[str, bytes] = {}

    async def put(self, key, value):
        self.values[key] = value

    async def get(self, key):
        if key not in self.values:
            raise KeyNotFoundError
        return type("Entry", (), {"value": self.values[key]})()


async def test_a_key_works_until_it_expires_and_is_stored_only_as_a_hash():
    keys = ApiKeys(MemoryKV(), operator_key="op")
    key, record = new_key("acme", expires_in_s=3600)
    await keys.put(record)
    assert key.split("_", 2)[2] not in keys._kv.values[record.key_id].decode()  # the secret is not stored
    now = utcnow()
    principal = await keys.authenticate(f"ApiKey {key}", now)
    assert (principal.actor, principal.tenant_org_id) == (record.key_id, "acme")
    assert await keys.authenticate(f"ApiKey {key}", now + timedelta(seconds=3601)) is None


async def test_forged_revoked_and_malformed_keys_are_refused():
    keys = ApiKeys(MemoryKV(), operator_key="op")
    key, record = new_key("acme", None)
    await keys.put(record)
    forged = key[:-4] + ("aaaa" if not key.endswith("aaaa") else "bbbb")
    for header in (f"ApiKey {forged}", "ApiKey", "Basic abc", None, "ApiKey ess_../x_y", "ApiKey opp"):
        assert await keys.authenticate(header, utcnow()) is None, header
    assert (await keys.authenticate("ApiKey op", utcnow())).is_operator
    record.revoked_at = utcnow()
    await keys.put(record)
    assert await keys.authenticate(f"ApiKey {key}", utcnow()) is None


def test_rate_limiter_allows_a_burst_then_says_when_to_retry():
    limiter = RateLimiter(per_minute=60, burst=2)
    assert limiter.take("k", now=0) == 0 and limiter.take("k", now=0) == 0
    assert limiter.take("k", now=0) == 1.0  # one token a second
    assert limiter.take("k", now=1.0) == 0
    assert limiter.take("other", now=1.0) == 0
