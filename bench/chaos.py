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
    EngineWatch, check_sizes, check_statuses, check_writes, request_table, status_story, wait_settled,
)
from bench.chaos_faults import CpuHogs, Monkey, Timeline
from bench.chaos_traffic import (
    API_WRITE, INDEX, PATHS, VECTOR_INDEX, ApiPool, ChaosCluster, ClusterTraffic, Outcome, Recorder,
    endpoint_client,
)
from bench.private_platform import AUTH, private_platform
from devrun.supervisor import free_port
from libs.common.settings import LocalDriverSection
from devrun.engine_setup import install_engine


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
    # NATS servers: 1, whose kill excuses what fails meanwhile; or a JetStream cluster (3), whose
    # kills, one server at a time, excuse nothing
    nats_servers: int = 1
    replicas: int = 1  # of the shard controller and of reporting each (a kill takes one of them)


@dataclass
class ChaosReport:
    lines: list[str]
    violations: list[str]
    counts: Counter = field(default_factory=Counter)  # faults and requests made, by kind
    acked: int = 0  # acknowledged writes, all clusters and paths


def _refused_by_contract(outcome: Outcome, cause: str) -> bool:
    """The manager's vector routes answer 409 not_ready for a cluster that is not `ready`: while
    it scales, that is their contract (outside scaling, the cluster should be ready)."""
    return (outcome.path == API_WRITE and cause == "scaling" and outcome.error.startswith("HTTP 409")
            and '"not_ready"' in outcome.error)


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
        client = endpoint_client(view["engine_endpoint"])
        client.indices.create(index=INDEX, body={"settings": {"number_of_shards": 2, "number_of_replicas": 1}})
        client.close()
        answer, _ = api.request("POST", f"/clusters/{cluster_id}/vector-indices", json={"name": VECTOR_INDEX, "dimensions": 2})
        assert answer.status_code == 201, answer.text
        clusters.append(ChaosCluster(cluster_id, tenant, view["engine_endpoint"], view["endpoint"], target=1))
        timeline.say(f"{cluster_id} ready at {view['endpoint']}")
    return clusters


def _spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.1f} s, max {max(values):.1f} s ({len(values)})" if values else "none"


def run_chaos(config: ChaosConfig, echo=print) -> ChaosReport:
    seed = config.seed if config.seed is not None else random.randrange(1_000_000)
    assert config.max_nodes >= 2, "node counts to ask need a choice"
    settings = LocalDriverSection()
    install_engine(settings.engine_home, settings.java_bin)
    header = (f"== chaos run: {config.seconds:.0f} s of faults, {config.clusters} clusters of 1-{config.max_nodes} "
              f"nodes, {config.managers} manager replicas (lease TTL {config.lease_ttl_s:g} s), {config.cpu_hogs} CPU "
              f"hogs, a fault every {config.pause_s[0]:g}-{config.pause_s[1]:g} s, settle up to {config.settle_s:.0f} s, "
              f"{config.nats_servers} NATS server(s), {config.replicas} shard controller(s) and reporting(s), "
              f"seed {seed}, {os.cpu_count()} cores ==")
    echo(header, flush=True)
    env = {"ESS_LEASE_TTL_S": str(config.lease_ttl_s), "ESS_LOG_LEVEL": "INFO", "ESS_RECONCILE_INTERVAL_S": "1",
           "ESS_POLL_INTERVAL_S": "2", "ESS_RATE_LIMIT_PER_MINUTE": "1000000", "ESS_RATE_LIMIT_BURST": "100000",
           "ESS_LOCAL_PORT_BASE": "41200", "ESS_ENGINE_HOME": str(settings.engine_home)}
    if config.nats_servers > 1:
        env["ESS_NATS_URL"] = ",".join(f"nats://127.0.0.1:{free_port()}" for _ in range(config.nats_servers))
        env["ESS_NATS_REPLICAS"] = str(config.nats_servers)
    with private_platform(config.managers, env, replicas=config.replicas) as running:
        running.keep_state = True  # until every check passed: also when this run itself breaks
        echo(f"state dir {running.state_dir}; services {running.pids}", flush=True)
        run = _Run(config, running.supervisor, random.Random(seed), echo)
        try:
            run.faults_then_settle()
        finally:
            run.halt()
        lines, violations = run.summary(header)
        running.keep_state = bool(violations)
        run.api.close()
    echo("\n".join(lines), flush=True)
    acked = sum(len(ids) for c in run.clusters for ids in c.acked.values())
    return ChaosReport(lines, violations, run.monkey.counts, acked)


class _Run:
    """One chaos run in a running platform: its parts, its phases, its summary."""

    def __init__(self, config: ChaosConfig, supervisor, rng: random.Random, echo):
        self.config, self.sup, self.rng = config, supervisor, rng
        self.started, self.started_wall = time.monotonic(), time.time()
        self.timeline = Timeline(self.started, echo)
        self.recorder = Recorder()
        self.urls = {n: f"http://127.0.0.1:{s.port}" for n, s in supervisor.services.items()
                     if s.module == "services.manager"}
        self.api = ApiPool(self.urls, AUTH, self.recorder)
        self.clusters = _create_clusters(self.api, config, self.timeline)
        self.setup_s = time.monotonic() - self.started
        self.traffics = [ClusterTraffic(c, self.urls, AUTH, self.recorder) for c in self.clusters]
        self.watch = EngineWatch(supervisor.state / "clusters")
        self.monkey = Monkey(supervisor, self.clusters, self.api, self.recorder, self.timeline, rng,
                             config.max_nodes, config.recovery_cap_s)
        self.hogs: CpuHogs | None = None
        self.settled, self.settle_s = False, 0.0

    def faults_then_settle(self) -> None:
        for traffic in self.traffics:
            traffic.start()
        self.hogs = CpuHogs(self.config.cpu_hogs)
        end = time.monotonic() + self.config.seconds
        next_fault = time.monotonic() + self.rng.uniform(*self.config.pause_s)
        while time.monotonic() < end:
            if time.monotonic() >= next_fault:
                self.monkey.step()
                next_fault = time.monotonic() + self.rng.uniform(*self.config.pause_s)
            self.monkey.close_settled()
            time.sleep(0.2)
        self.hogs.stop()
        self.timeline.say("faults over, CPU hogs stopped; waiting for what was killed to come back")
        self.monkey.finish()
        settle_start = time.monotonic()
        self.settled = wait_settled(self.api, self.clusters, self.sup.state / "clusters", self.config.settle_s,
                                    tick=lambda: (self.monkey.send_unanswered(), self.monkey.close_settled()))
        self.settle_s = time.monotonic() - settle_start
        self.timeline.say(f"settled after {self.settle_s:.1f} s" if self.settled
                          else f"NOT settled within {self.config.settle_s:.0f} s")
        time.sleep(3)  # traffic on the settled platform too

    def halt(self) -> None:
        """Everything this run started stops (also after an error), before the platform does."""
        if self.hogs:
            self.hogs.stop()
        self.monkey.halt()
        for traffic in self.traffics:
            traffic.stop()
        self.watch.stop()
        self.monkey.close_settled()

    def summary(self, header: str) -> tuple[list[str], list[str]]:
        config, monkey, recorder = self.config, self.monkey, self.recorder
        lines, violations = [header], list(monkey.problems)
        lines.append(f"setup {self.setup_s:.0f} s, faults {config.seconds:.0f} s, settle {self.settle_s:.0f} s; "
                     f"{recorder.failovers} API requests refused by a dead replica and taken by the other")
        lines.append("did: " + ", ".join(f"{kind} {n}" for kind, n in sorted(monkey.counts.items())))
        lines.append("serving again after a kill: " + "; ".join(
            f"{kind} {_spread(values)}" for kind, values in sorted(monkey.recoveries.items())))
        table, failed, unexcused = request_table(recorder.outcomes, self.timeline.windows, _refused_by_contract,
                                                 self.started)
        lines += table
        counts = Counter((outcome.path, cause) for outcome, cause in unexcused)
        for (path, cause), n in sorted(counts.items()):
            violations.append(f"{n} {path} requests failed " + (
                "during scaling" if cause == "scaling" else "with nothing of theirs killed and no scaling"))
        if unexcused:
            lines.append("what the clusters said around the unexcused failures:")
            for cluster in self.clusters:
                mine = [o for o, _ in unexcused if o.cluster == cluster.id]
                if mine:
                    lines += status_story(self.api, cluster, min(o.start for o in mine) - 10,
                                          max(o.end for o in mine), self.started, self.started_wall)
        by_contract = failed[API_WRITE, "scaling"] - counts[API_WRITE, "scaling"]
        lines.append(f"FAILED REQUESTS DURING SCALING (outside kill windows): {sum(failed[p, 'scaling'] for p in PATHS)}"
                     + "".join(f"; {p} {failed[p, 'scaling']}" for p in PATHS)
                     + (f" ({by_contract} of them 409 not_ready: the manager's vector routes refuse a cluster that is "
                        "not `ready`, scaling included; not counted as a check failure)" if by_contract else ""))
        if not self.settled:
            violations.append(f"not settled within {config.settle_s:.0f} s after the faults")
        clusters_dir = self.sup.state / "clusters"
        for check in (lambda: check_writes(self.clusters), lambda: check_sizes(self.api, self.clusters, clusters_dir),
                      lambda: check_statuses(self.api, self.clusters)):
            check_lines, check_violations = check()
            lines += check_lines
            violations += check_violations
        twins = self.watch.twins
        lines.append(f"engine processes sampled {self.watch.samples} times during the run: "
                     f"{len(twins)} twin(s) seen {sorted(twins.items())[:5]}")
        violations += [f"twin seen during the run: cluster {c} node {n} pids {p}" for (c, n), p in twins.items()]
        lines += [f"FAIL {v}" for v in violations] or ["PASS every check"]
        return lines, violations


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
    parser.add_argument("--nats-servers", type=int, default=defaults.nats_servers, choices=(1, 3))
    parser.add_argument("--replicas", type=int, default=defaults.replicas, choices=(1, 2),
                        help="shard controllers and reporting replicas, each")
    args = parser.parse_args()
    report = run_chaos(ChaosConfig(args.seconds, args.clusters, args.max_nodes, args.cpu_hogs, tuple(args.pause),
                                   args.settle, args.managers, args.lease_ttl, seed=args.seed,
                                   nats_servers=args.nats_servers, replicas=args.replicas))
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
