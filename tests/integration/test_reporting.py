"""Reporting against real engines: gauges and metric events follow the data, a dead engine
shows as down while the others keep being polled, and usage is recorded once per period."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from datetime import datetime, timedelta, timezone

import httpx
import nats
import pytest
from nats.js.api import DeliverPolicy
from prometheus_client.parser import text_string_to_metric_families

from libs.common import subjects
from libs.common.events import MetricsSample
from services.manager.drivers.local_processes import find_engines
from tests.conftest import seed_request
from tests.helpers import wait_for_status, wait_until

DOCS = 37


def scrape(settings) -> dict[tuple[str, frozenset], float]:
    text = httpx.get(f"http://127.0.0.1:{settings.reporting_port}/metrics").text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text) for sample in family.samples
    }


def value(settings, name: str, **labels) -> float | None:
    return scrape(settings).get((name, frozenset(labels.items())))


async def latest_sample(settings, cluster: dict) -> MetricsSample | None:
    connection = await nats.connect(settings.nats_url)
    try:
        subscription = await connection.jetstream().subscribe(
            subjects.cluster_metrics(cluster["tenant_org_id"], cluster["id"]), ordered_consumer=True,
            deliver_policy=DeliverPolicy.LAST,
        )
        try:
            message = await subscription.next_msg(timeout=2)
        except nats.errors.TimeoutError:
            return None
        return MetricsSample.model_validate_json(message.data)
    finally:
        await connection.close()


def sample_of(settings, cluster) -> MetricsSample | None:
    return asyncio.run(latest_sample(settings, cluster))


@pytest.fixture(scope="module")
def clusters(api, settings, reporting):
    made = [api.post("/clusters", json=seed_request(service_name=name)).json() for name in ("left", "right")]
    ready = [wait_for_status(api, c["id"], "ready") for c in made]
    for cluster in ready:
        labels = {"tenant": cluster["tenant_org_id"], "cluster": cluster["id"]}
        wait_until(lambda: value(settings, "ess_cluster_up", **labels) == 1, 30, what="first poll")
    yield ready
    for cluster in ready:
        api.delete(f"/clusters/{cluster['id']}")


def index_documents(api, cluster, count, start=0):
    base = f"/clusters/{cluster['id']}/vector-indices"
    if start == 0:
        assert api.post(base, json={"name": "metered", "dimensions": 2}).status_code == 201
    docs = [{"id": f"d{i}", "vector": [1, i]} for i in range(start, start + count)]
    assert api.post(f"{base}/metered/documents", json={"documents": docs}).json()["indexed"] == count


def test_docs_gauge_and_metric_event_show_what_was_indexed(api, settings, clusters):
    left = clusters[0]
    labels = {"tenant": left["tenant_org_id"], "cluster": left["id"]}
    index_documents(api, left, DOCS)

    wait_until(lambda: value(settings, "ess_cluster_docs", **labels) == DOCS, 15, what="docs gauge")
    assert value(settings, "ess_index_docs", **labels, index="metered-000001") == DOCS  # the generation behind the alias
    assert value(settings, "ess_cluster_indexing_operations_total", **labels) >= DOCS
    assert value(settings, "ess_cluster_health_status", **labels, status="red") == 0
    sample = wait_until(lambda: (s := sample_of(settings, left)) and s.stats.docs == DOCS and s, 15,
                        what="metric event")
    assert sample.tenant_org_id == left["tenant_org_id"]
    assert [i.name for i in sample.stats.per_index] == ["metered-000001"]
    # the cluster's own load: its engine's CPU on the processor it was given (500m: one), its pools
    assert [n.cpu_limit for n in sample.stats.node_loads] == [1.0]
    wait_until(lambda: value(settings, "ess_cluster_engine_cpu_percent", **labels) is not None, 15,
               what="engine CPU, from two polls")
    assert value(settings, "ess_cluster_thread_pool_queue", **labels, pool="search") is not None
    assert value(settings, "ess_cluster_thread_pool_rejected_total", **labels, pool="write") == 0


def test_killed_engine_shows_down_while_the_other_is_still_polled(api, settings, clusters):
    left, right = clusters
    left_labels = {"tenant": left["tenant_org_id"], "cluster": left["id"]}
    before = sample_of(settings, right).taken_at
    [engine] = [e for e in find_engines(settings.clusters_dir) if e.cluster_id == left["id"]]

    os.kill(engine.pid, signal.SIGKILL)
    wait_until(lambda: value(settings, "ess_cluster_up", **left_labels) == 0, 15, interval_s=0.1, what="down")
    assert value(settings, "ess_cluster_health_status", **left_labels, status="green") is None
    assert value(settings, "ess_cluster_health_status", **left_labels, status="yellow") is None
    # the neighbour keeps being polled while its peer is down
    wait_until(lambda: sample_of(settings, right).taken_at > before, 15, what="neighbour polled")

    wait_for_status(api, left["id"], "ready", timeout_s=60)
    wait_until(lambda: value(settings, "ess_cluster_up", **left_labels) == 1, 30, what="back up")


def usage(api, tenant, since):
    answer = api.get(f"/tenants/{tenant}/usage",
                      params={"from": since.isoformat(), "to": (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_usage_is_recorded_once_per_period_across_a_reporting_crash(api, settings, clusters, reporting):
    right = clusters[1]
    tenant = right["tenant_org_id"]
    since = datetime.now(timezone.utc) - timedelta(hours=1)
    index_documents(api, right, 20)
    for _ in range(3):
        api.post(f"/clusters/{right['id']}/vector-indices/metered/search", json={"vector": [1, 0], "k": 3})

    period = settings.metering_period_s
    time.sleep(period - time.time() % period + period / 3)  # a third into a period
    reporting.kill()
    index_documents(api, right, 15, start=20)  # written while reporting is down
    reporting.start()
    crashed_in = int(time.time() // period * period)

    def two_periods_closed_after_the_crash():
        body = usage(api, tenant, since)
        starts = [datetime.fromisoformat(r["period_start"]).timestamp() for r in body["records"]]
        return body if starts and max(starts) >= crashed_in + period else None

    body = wait_until(two_periods_closed_after_the_crash, 60, interval_s=1, what="periods closed")
    keys = [(r["cluster_id"], r["period_start"]) for r in body["records"]]
    assert len(keys) == len(set(keys)), "a period was recorded twice"
    assert {r["cluster_id"] for r in body["records"]} == {right["id"]}
    assert body["totals"]["documents_indexed"] == 35
    assert body["totals"]["search_requests"] >= 3
    assert body["totals"]["node_hours"] == pytest.approx(sum(r["node_hours"] for r in body["records"]))
    assert body["totals"]["node_hours"] > 0


def test_usage_query_needs_a_sane_window(api):
    answer = api.get("/tenants/acme/usage", params={"from": "2026-11-24T10:00:00Z", "to": "2026-11-24T09:00:00Z"})
    assert answer.status_code == 422
    assert answer.json()["fields"][0]["field"] == "to"
    assert api.get("/tenants/acme/usage", params={"from": "yesterday", "to": "2026-11-24T09:00:00Z"}).status_code == 422
