"""Autoscaling follows the cluster's own load, never the host's: with busy loops of another process
on every core for longer than the sustain window, an idle one-node cluster stays at one node, and
its events, through the API and `ess clusters events`, say why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bench.chaos_faults import CpuHogs, host_busy_between, host_cpu_ticks
from libs.common.models import utcnow
from tests.conftest import OPERATOR_KEY, seed_request, shard_controller_with
from tests.helpers import wait_for_status, wait_until

pytestmark = pytest.mark.engine

ESS = Path(sys.executable).parent / "ess"
SUSTAIN_SAMPLES = 5  # at the session's 1 s poll interval: a 5 s window
# the platform's thresholds as shipped; only the window and the cool-down are those of a test
POLICY = {"ESS_SUSTAIN_SAMPLES": str(SUSTAIN_SAMPLES), "ESS_COOLDOWN_S": "5"}
HOGS_S = 90.0  # each busy loop ends by itself after this, should the test die before stopping it
IDLE = f"no searches or writes in the last {SUSTAIN_SAMPLES} samples"


@pytest.fixture(scope="module")
def controller(nats, reporting, manager, settings, platform_env, state_dir):
    with shard_controller_with(POLICY, settings, platform_env, state_dir) as process:
        yield process


def planned_at(api, cluster_id: str) -> datetime | None:
    state = api.get(f"/clusters/{cluster_id}/plan").json()
    return datetime.fromisoformat(state["planned_at"]) if state.get("planned_at") else None


def test_a_busy_host_does_not_scale_an_idle_cluster(api, settings, controller):
    # the user: one node, one index of three documents, no requests
    created = api.post("/clusters", json=seed_request(service_name="quiet")).json()
    cluster_id = created["id"]
    wait_for_status(api, cluster_id, "ready", timeout_s=120)
    base = f"/clusters/{cluster_id}/vector-indices"
    assert api.post(base, json={"name": "recipes", "dimensions": 3}).status_code == 201
    docs = [{"id": name, "vector": [1, i, 0]} for i, name in enumerate(("pie", "soup", "tart"))]
    assert api.post(f"{base}/recipes/documents", json={"documents": docs}).json()["indexed"] == 3

    window = timedelta(seconds=SUSTAIN_SAMPLES * settings.poll_interval_s)
    hogs = CpuHogs(os.cpu_count() or 1, seconds=HOGS_S)
    started, host_before = utcnow(), host_cpu_ticks()
    try:
        # planned from windows wholly under the busy loops, three windows' worth, while they still run
        wait_until(lambda: (at := planned_at(api, cluster_id)) is not None and at >= started + 3 * window,
                   HOGS_S - 10, interval_s=0.5, what="plans from samples taken under the busy loops")
        assert hogs.running
        host_busy = host_busy_between(host_before, host_cpu_ticks())
    finally:
        hogs.stop()
    assert host_busy > 0.9, f"the host was busy {host_busy:.0%} of the time: the busy loops did not take it"

    cluster = api.get(f"/clusters/{cluster_id}").json()
    assert (cluster["nodes"], cluster["replicas"], cluster["status"]) == (1, 1, "ready")
    events = api.get(f"/clusters/{cluster_id}/events").json()["events"]
    assert [e for e in events if e["kind"] == "scale"] == []
    plans = [e for e in events if e["kind"] == "plan"]
    assert plans and all(p["nodes"] == 1 for p in plans)
    assert plans[-1]["reason"].startswith(IDLE), plans[-1]
    assert api.get(f"/clusters/{cluster_id}/plan").json()["plan"]["reason"].startswith(IDLE)

    # what the tenant sees from `ess`: the decision and its reason, for people and for scripts
    env = {**os.environ, "ESS_API_URL": f"http://127.0.0.1:{settings.api_port}", "ESS_API_KEY": OPERATOR_KEY,
           "COLUMNS": "250"}
    shown = subprocess.run([str(ESS), "clusters", "events", cluster_id], env=env, capture_output=True, text=True,
                           timeout=60, stdin=subprocess.DEVNULL)
    assert shown.returncode == 0, shown.stderr
    assert f"nodes kept at 1: {IDLE}" in shown.stdout
    scripted = subprocess.run([str(ESS), "clusters", "events", cluster_id, "--json"], env=env, capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert scripted.returncode == 0, scripted.stderr
    assert any(e["kind"] == "plan" and e["reason"].startswith(IDLE) for e in json.loads(scripted.stdout))
    api.delete(f"/clusters/{cluster_id}")
