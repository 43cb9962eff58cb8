"""Density on the local driver: a hibernated cluster gives its port slot back, so clusters asleep
are bounded by disk, not by `ESS_LOCAL_PORT_SLOTS`. Its engine then starts on whichever slot is
free, while its last endpoint may be another cluster's engine by now: a wake finds every document
through the gateway, and a delete's final snapshot is taken of the cluster itself (an undelete
brings its documents back), not of the cluster now on its old slot.

It runs its own platform with three port slots, not the session's.
"""

from __future__ import annotations

import json

import httpx
import pytest

from bench.private_platform import AUTH, private_platform, seed_body
from tests.helpers import wait_for_status, wait_until

DOCS = 50


def slot_of(state_dir, cluster_id: str) -> int | None:
    held = state_dir / "clusters" / cluster_id / "engine.json"
    return json.loads(held.read_text())["slot"] if held.exists() else None


@pytest.mark.engine
def test_a_sleeping_cluster_holds_no_slot_and_wakes_and_snapshots_on_another():
    env = {"ESS_LOCAL_PORT_SLOTS": "3", "ESS_WARM_ENGINES": "0"}
    with private_platform(env=env) as running:
        running.keep_state = True  # its logs, until the checks passed
        state = running.state_dir
        api = httpx.Client(base_url=running.api, headers=AUTH, timeout=30)

        def ready_cluster(name: str) -> str:
            cluster_id = api.post("/clusters", json=seed_body(name)).json()["id"]
            wait_for_status(api, cluster_id, "ready", 180)
            return cluster_id

        def hibernated(cluster_id: str) -> None:
            assert api.post(f"/clusters/{cluster_id}/hibernate").status_code == 202
            wait_for_status(api, cluster_id, "hibernated", 120)
            assert slot_of(state, cluster_id) is None  # given back

        kept = ready_cluster("kept")
        endpoint = httpx.Client(base_url=api.get(f"/clusters/{kept}").json()["endpoint"], headers=AUTH, timeout=120)
        lines = "".join(f'{{"index":{{"_index":"kept","_id":"d{i}"}}}}\n{{"n":{i}}}\n' for i in range(DOCS))
        endpoint.post("/_bulk?refresh=true", content=lines,
                      headers={"content-type": "application/x-ndjson"}).raise_for_status()
        first_slot = slot_of(state, kept)
        hibernated(kept)
        neighbour = ready_cluster("neighbour")
        assert slot_of(state, neighbour) == first_slot  # the sleeping cluster's slot serves another

        # a wake through the gateway: held until the engine answers, on another slot
        assert endpoint.get("/kept/_count").json()["count"] == DOCS
        woken_slot = slot_of(state, kept)
        assert woken_slot not in (None, first_slot)
        hibernated(kept)
        third = ready_cluster("third")
        assert slot_of(state, third) == woken_slot

        # deleted while asleep: the final snapshot is of its own engine, started on the last free slot
        assert api.delete(f"/clusters/{kept}").status_code == 202
        deleted = wait_until(lambda: next((c for c in api.get("/clusters", params={"deleted": "true"}).json()[
            "clusters"] if c["id"] == kept), None), 180, 0.5, "the cluster deleted")
        assert deleted["final_snapshot"], deleted
        assert api.post(f"/clusters/{kept}/undelete").status_code == 202
        wait_until(lambda: (c := api.get(f"/clusters/{kept}").json()).get("status") == "ready"
                   and (c.get("restore") or {}).get("state") == "done", 240, 0.5, "undeleted and restored")
        assert endpoint.get("/kept/_count").json()["count"] == DOCS
        for cluster_id in (kept, neighbour, third):
            api.delete(f"/clusters/{cluster_id}")
        running.keep_state = False
