"""Test helpers: the whole platform's settings, processes of the platform under test, waiting
for a status, a cluster's status events."""

from __future__ import annotations

import asyncio
import math
import random
import time
from pathlib import Path

import httpx
import nats
from opensearchpy import OpenSearch

from libs.common import subjects
from libs.common.events import ClusterStatusChanged
from libs.common.settings import SECTIONS

REPO = Path(__file__).resolve().parents[1]


class PlatformSettings(*SECTIONS):
    """Every section: the tests run the whole platform and read what any of its services reads."""


def wait_until(check, timeout_s: float, interval_s: float = 0.25, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"{what} not reached within {timeout_s} s (last: {last!r})")


def wait_for_status(api: httpx.Client, cluster_id: str, status: str, timeout_s: float = 90) -> dict:
    seen: dict = {}

    def check():
        answer = api.get(f"/clusters/{cluster_id}")
        body = answer.json() if answer.status_code == 200 else {"status": f"HTTP {answer.status_code}"}
        seen.update(status=body.get("status"), reason=body.get("status_reason"))
        return body if body.get("status") == status else None

    try:
        return wait_until(check, timeout_s, what=f"cluster {cluster_id} {status}")
    except AssertionError as exc:  # what it was instead says why
        raise AssertionError(f"{exc}; it was {seen.get('status')}: {seen.get('reason')}") from None


def endpoint_client(endpoint: str, key: str, **options) -> OpenSearch:
    """The official client on a cluster's gateway endpoint, as a tenant configures it."""
    return OpenSearch(hosts=[endpoint], headers={"Authorization": f"ApiKey {key}"}, **options)


async def status_events(settings, cluster: dict) -> list[ClusterStatusChanged]:
    """Every status event of `cluster` in the lifecycle stream, read with an ephemeral consumer."""
    connection = await nats.connect(settings.nats_url)
    try:
        js = connection.jetstream()
        subject = subjects.cluster_status(cluster["tenant_org_id"], cluster["id"])
        subscription = await js.subscribe(subject, ordered_consumer=True)
        events = []
        while True:
            try:
                message = await subscription.next_msg(timeout=1.0)
            except (asyncio.TimeoutError, nats.errors.TimeoutError):
                return events
            events.append(ClusterStatusChanged.model_validate_json(message.data))
    finally:
        await connection.close()


def vector_items(api: httpx.Client, cluster_id: str, count: int, seed: int, dimensions: int = 8):
    """A vector index `items` (l2) holding `count` random vectors through the platform's API:
    (the vectors by id, a query vector, the ids of its true 5 nearest by brute force)."""
    rng = random.Random(seed)
    made = api.post(f"/clusters/{cluster_id}/vector-indices",
                    json={"name": "items", "dimensions": dimensions, "similarity": "l2"})
    assert made.status_code == 201, made.text
    vectors = {f"doc-{i}": [rng.uniform(-1, 1) for _ in range(dimensions)] for i in range(count)}
    stored = api.post(f"/clusters/{cluster_id}/vector-indices/items/documents",
                      json={"documents": [{"id": i, "vector": v} for i, v in vectors.items()]})
    assert stored.json() == {"indexed": count, "errors": []}, stored.text
    query = [rng.uniform(-1, 1) for _ in range(dimensions)]
    return vectors, query, sorted(vectors, key=lambda i: math.dist(vectors[i], query))[:5]


def nearest_items(api: httpx.Client, cluster_id: str, query: list[float]) -> list[str]:
    """The ids the platform's vector search finds nearest to `query` in `items`, best first."""
    answer = api.post(f"/clusters/{cluster_id}/vector-indices/items/search", json={"vector": query, "k": 5})
    assert answer.status_code == 200, answer.text
    return [hit["id"] for hit in answer.json()["hits"]]
