"""Chaos run: clusters under traffic while NATS, two manager replicas, the shard controller,
reporting and engine nodes are SIGKILLed at random (each comes back), node counts are asked
at random and busy loops take the CPU; then what a tenant would check.

    .venv/bin/python bench/chaos.py                       # 900 s, 3 clusters of 1-3 nodes
    .venv/bin/python bench/chaos.py --seconds 90 --clusters 2 --max-nodes 2 --seed 7

Prints each fault as it happens, then what it did and what it checked: every acknowledged
write found, every cluster `ready` at the node count last asked for, no engine process
orphaned or twinned, no status back to `requested` after the first `ready`, and the failed
requests split by the fault window they fell in (bench/chaos_checks.py says which excuse
which). Exit status 1 when a check failed; the state dir (service and engine logs) is then
kept and its path printed. tests/integration/test_chaos.py runs a short one and asserts it.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repo, not bench/

import argparse
import random
import statistics
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from bench.chaos_checks import (
    EngineWatch, check_sizes, check_statuses, check_writes, request_table, wait_settled,
)
from bench.chaos_faults import CpuHogs, Monkey, Timeline
from bench.chaos_traffic import API_WRITE, VECTOR_INDEX, INDEX, ApiPool, ChaosCluster, ClusterTraffic, Recorder, endpoint_client
from bench.private_platform import AUTH, private_platform
from libs.common.settings import Settings
from libs.devrun.engine_setup import install_engine


@dataclass(frozen=True)
class ChaosConfig:
    seconds: float = 900  # of faults; then the settle
    clusters: int = 3
    max_nodes: int = 3  # node counts asked are 1..max_nodes; every cluster starts at 1
    cpu_hogs: int = 2  # busy loops during the faults
    pause_s: tuple[float, float] = (4.0, 12.0)  # between two faults, drawn evenly
    settle_s: float = 300  # after the faults, for every cluster to be ready at its count
    managers: int = 2
    lease_ttl_s: float = 5
    recovery_cap_s: float = 180  # an engine kill's window closes by then at the latest
    seed: int | None = None


@dataclass
class ChaosReport:
    lines: list[str]
    violations: list[str]
    counts: Counter = field(default_factory=Counter)  # faults and requests made, by kind
    acked: int = 0  # acknowledged writes, all clusters and paths


def _refused_by_contract(error: str) -> bool:
    """The manager's vector routes answer 409 not_ready for a cluster that is not `ready`."""
    return error.startswith("HTTP 409") and '"not_ready"' in error


def _create_clusters(api: ApiPool, config: ChaosConfig, timeline: Timeline) -> list[ChaosCluster]:
    """One tenant per cluster (quotas stay out of the way), 1 node each, autoscaling off so the node
    count last asked for is this run's; ready, with an endpoint index and a vector index."""
    ids = []
    for i in range(config.clusters):
        body = {"tenant_org_id": f"chaos{i}-{uuid.uuid4().hex[:6]}", "user": "chaos", "service_name": f"chaos{i}",
                "replicas": 1, "cpu": "500m", "memory": "512Mi", "storage": "1Gi"}
        answer, _ = api.request("POST", "/clusters", json=body)
        assert answer.status_code == 202, answer.text
        ids.append((answer.json()["id"], body["tenant_org_id"]))
        assert api.request("PATCH", f"/clusters/{ids[-1][0]}", json={"autoscaling": False})[0].status_code == 202
    clusters, deadline = [], time.monotonic() + 300
    for cluster_id, tenant in ids:
        while (view := api.request("GET", f"/clusters/{cluster_id}")[0].json())["status"] != "ready":
            if time.monotonic() > deadline:
                raise RuntimeError(f"{cluster_id} not ready within 300 s: {view}")
            time.sleep(0.5)
        client = endpoint_client(view["endpoint"])
        client.indices.create(index=INDEX, body={"settings": {"number_of_shards": 2, "number_of_replicas": 1}})
        client.close()
        answer, _ = api.request("POST", f"/clusters/{cluster_id}/vector-indices", json={"name": VECTOR_INDEX, "dimensions": 2})
        assert answer.status_code == 201, answer.text
        clusters.append(ChaosCluster(cluster_id, tenant, view["endpoint"], target=1))
        timeline.say(f"{cluster_id} ready at {view['endpoint']}")
    return clusters


def _spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.1f} s, max {max(values):.1f} s ({len(values)})" if values else "none"


def run_chaos(config: ChaosConfig, echo=print) -> ChaosReport:
    seed = config.seed if config.seed is not None else random.randrange(1_000_000)
    rng = random.Random(seed)
    assert config.max_nodes >= 2, "node counts to ask need a choice"
    settings = Settings()
    install_engine(settings.engine_home, settings.java_bin)
    header = (f"== chaos run: {config.seconds:.0f} s of faults, {config.clusters} clusters of 1-{config.max_nodes} "
              f"nodes, {config.managers} manager replicas (lease TTL {config.lease_ttl_s:g} s), {config.cpu_hogs} CPU "
              f"hogs, a fault every {config.pause_s[0]:g}-{config.pause_s[1]:g} s, settle up to {config.settle_s:.0f} s, "
              f"seed {seed}, {os.cpu_count()} cores ==")
    echo(header, flush=True)
    env = {"ESS_LEASE_TTL_S": str(config.lease_ttl_s), "ESS_LOG_LEVEL": "INFO", "ESS_RECONCILE_INTERVAL_S": "1",
           "ESS_POLL_INTERVAL_S": "2", "ESS_RATE_LIMIT_PER_MINUTE": "1000000", "ESS_RATE_LIMIT_BURST": "100000",
           "ESS_LOCAL_PORT_BASE": "41200", "ESS_ENGINE_HOME": str(settings.engine_home)}
    with private_platform(config.managers, env) as running:
        sup = running.supervisor
        echo(f"state dir {running.state_dir}; services {running.pids}", flush=True)
        started = time.monotonic()
        timeline = Timeline(started, echo)
        recorder = Recorder()
        urls = {name: f"http://127.0.0.1:{s.port}" for name, s in sup.services.items() if s.module == "services.manager"}
        api = ApiPool(urls, AUTH, recorder)
        clusters = _create_clusters(api, config, timeline)
        setup_s = time.monotonic() - started
        traffics = [ClusterTraffic(c, urls, AUTH, recorder) for c in clusters]
        for traffic in traffics:
            traffic.start()
        watch = EngineWatch(sup.state / "clusters")
        monkey = Monkey(sup, clusters, api, recorder, timeline, rng, config.max_nodes, config.recovery_cap_s)
        hogs = CpuHogs(config.cpu_hogs)
        try:
            chaos_start = time.monotonic()
            end, next_fault = chaos_start + config.seconds, chaos_start + rng.uniform(*config.pause_s)
            while time.monotonic() < end:
                if time.monotonic() >= next_fault:
                    monkey.step()
                    next_fault = time.monotonic() + rng.uniform(*config.pause_s)
                monkey.close_settled()
                time.sleep(0.2)
        finally:
            hogs.stop()
        timeline.say("faults over, CPU hogs stopped; waiting for what was killed to come back")
        monkey.finish()
        settle_start = time.monotonic()
        settled = wait_settled(api, clusters, sup.state / "clusters", config.settle_s,
                               tick=lambda: (monkey.send_unanswered(), monkey.close_settled()))
        settle_s = time.monotonic() - settle_start
        timeline.say(f"settled after {settle_s:.1f} s" if settled else f"NOT settled within {config.settle_s:.0f} s")
        time.sleep(3)  # traffic on the settled platform too
        for traffic in traffics:
            traffic.stop()
        watch.stop()
        monkey.close_settled()

        lines, violations = [header], list(monkey.problems)
        lines.append(f"setup {setup_s:.0f} s, faults {config.seconds:.0f} s, settle {settle_s:.0f} s; "
                     f"{recorder.failovers} API requests refused by a dead replica and taken by the other")
        lines.append("did: " + ", ".join(f"{kind} {n}" for kind, n in sorted(monkey.counts.items())))
        lines.append("serving again after a kill: " + "; ".join(
            f"{kind} {_spread(values)}" for kind, values in sorted(monkey.recoveries.items())))
        exempt = lambda o: o.path == API_WRITE and _refused_by_contract(o.error)  # noqa: E731
        table, unexcused = request_table(recorder.outcomes, timeline.windows, exempt, started)
        lines += table
        for (path, cause), n in sorted(unexcused.items()):
            violations.append(f"{n} {path} requests failed " + (
                "during scaling" if cause == "scaling" else "with nothing of theirs killed and no scaling"))
        refused = sum(1 for o in recorder.outcomes if o.error and exempt(o))
        if refused:
            lines.append(f"{refused} API writes answered 409 not_ready (in the table above): the manager's vector "
                         "routes refuse a cluster that is not `ready`, also while it scales and serves")
        if not settled:
            violations.append(f"not settled within {config.settle_s:.0f} s after the faults")
        for check in (lambda: check_writes(clusters), lambda: check_sizes(api, clusters, sup.state / "clusters"),
                      lambda: check_statuses(api, clusters)):
            check_lines, check_violations = check()
            lines += check_lines
            violations += check_violations
        lines.append(f"engine processes sampled {watch.samples} times during the run: "
                     f"{len(watch.twins)} twin(s) seen {sorted(watch.twins.items())[:5]}")
        violations += [f"twin seen during the run: cluster {c} node {n} pids {p}" for (c, n), p in watch.twins.items()]
        lines += [f"FAIL {v}" for v in violations] or ["PASS every check"]
        running.keep_state = bool(violations)
        api.close()
    echo("\n".join(lines), flush=True)
    acked = sum(len(ids) for c in clusters for ids in c.acked.values())
    return ChaosReport(lines, violations, monkey.counts, acked)


def main() -> int:
    defaults = ChaosConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=defaults.seconds)
    parser.add_argument("--clusters", type=int, default=defaults.clusters)
    parser.add_argument("--max-nodes", type=int, default=defaults.max_nodes)
    parser.add_argument("--cpu-hogs", type=int, default=defaults.cpu_hogs)
    parser.add_argument("--pause", type=float, nargs=2, default=defaults.pause_s, metavar=("MIN", "MAX"))
    parser.add_argument("--settle", type=float, default=defaults.settle_s)
    parser.add_argument("--managers", type=int, default=defaults.managers)
    parser.add_argument("--lease-ttl", type=float, default=defaults.lease_ttl_s)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    report = run_chaos(ChaosConfig(args.seconds, args.clusters, args.max_nodes, args.cpu_hogs, tuple(args.pause),
                                   args.settle, args.managers, args.lease_ttl, seed=args.seed))
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
