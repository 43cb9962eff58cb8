"""Many sleeping clusters woken at once on a busy machine: their cold starts take turns
(`ESS_LOCAL_CONCURRENT_STARTS`), and a request held for a cluster whose start waits its turn is
not refused after `ESS_WAKE_TIMEOUT_S` counted from its arrival: the timeout counts from the
start itself. Here one start at a time and a 15 s timeout: the last of seven clusters starts
after the other six, past 15 s whether a start takes 3 s (a calm machine) or 10 s (busy loops on
every core, where a 10 s timeout failed one start itself), and still answers with every document.

It runs its own platform, not the session's.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from bench.private_platform import AUTH, private_platform, seed_body
from tests.helpers import wait_for_status

CLUSTERS = 7
WAKE_TIMEOUT_S = 15
DOCS = 20


@pytest.mark.engine
def test_wakes_beyond_the_concurrent_starts_wait_their_turn_and_all_answer():
    env = {"ESS_LOCAL_CONCURRENT_STARTS": "1", "ESS_WARM_ENGINES": "0",
           "ESS_WAKE_TIMEOUT_S": str(WAKE_TIMEOUT_S), "ESS_DELETED_RETENTION_S": "0"}
    with private_platform(env=env) as running:
        running.keep_state = True  # its logs, until the checks passed
        api = httpx.Client(base_url=running.api, headers=AUTH, timeout=30)
        # two tenants: seven clusters are over one tenant's quota of five
        ids = [api.post("/clusters", json={**seed_body(f"many{i}"), "tenant_org_id": f"many-{i % 2}"}).json()["id"]
               for i in range(CLUSTERS)]
        views = [wait_for_status(api, cluster_id, "ready", 240) for cluster_id in ids]
        lines = "".join(f'{{"index":{{"_index":"kept","_id":"d{i}"}}}}\n{{"n":{i}}}\n' for i in range(DOCS))
        for view in views:
            httpx.post(f"{view['endpoint']}/_bulk?refresh=true", content=lines, timeout=60,
                       headers={**AUTH, "content-type": "application/x-ndjson"}).raise_for_status()
            assert api.post(f"/clusters/{view['id']}/hibernate").status_code == 202
        for view in views:
            wait_for_status(api, view["id"], "hibernated", 120)

        reasons: set[str] = set()  # what the clusters said while the wakes went on
        done = threading.Event()

        def watch() -> None:
            with httpx.Client(base_url=running.api, headers=AUTH, timeout=30) as watcher:
                while not done.is_set():
                    reasons.update(watcher.get(f"/clusters/{i}").json()["status_reason"] for i in ids)
                    done.wait(0.2)

        watching = threading.Thread(target=watch)
        watching.start()
        try:
            with ThreadPoolExecutor(CLUSTERS) as pool:
                answers = list(pool.map(
                    lambda v: httpx.get(f"{v['endpoint']}/kept/_count", headers=AUTH, timeout=200), views))
        finally:
            done.set()
            watching.join()
        assert [(a.status_code, a.json().get("count")) for a in answers] == [(200, DOCS)] * CLUSTERS, \
            [a.text[:200] for a in answers]
        # the point: a call held longer than the wake timeout, counted from its arrival, still answered
        slowest = max(a.elapsed.total_seconds() for a in answers)
        assert slowest > WAKE_TIMEOUT_S, f"the queue took {slowest:.1f} s: too short to show anything, add clusters"
        assert any(r.startswith("queued: ") for r in reasons), reasons  # the starts did take turns
        for cluster_id in ids:
            api.delete(f"/clusters/{cluster_id}")
        running.keep_state = False
