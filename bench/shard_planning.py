"""Plan computation for 10,000 clusters of synthetic metrics (target: under 1 s in total).

Run: .venv/bin/python bench/shard_planning.py [--clusters N] [--rounds R]
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repo, not bench/

import argparse
import random
import statistics
import time
from datetime import datetime, timezone

from libs.common.events import ClusterLoad, MetricsSample, OperationRates
from libs.common.metrics import ClusterStats, IndexStats
from libs.common.models import ScalingPolicy
from services.shard_controller.planning import ShardPolicy, plan_shards

GiB = 2**30


def synthetic_fleet(count: int, samples: int, seed: int = 1) -> list[tuple[int, list[MetricsSample]]]:
    """Clusters of 1-9 nodes, 1-8 indices each, with load from idle to hot."""
    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    fleet = []
    for c in range(count):
        nodes = rng.randint(1, 9)
        indices = [IndexStats(name=f"i{k}-000001", primaries=rng.randint(1, 4), replicas=rng.randint(0, nodes - 1),
                              primary_store_bytes=rng.randint(0, 80 * 10**9)) for k in range(rng.randint(1, 8))]
        heap, cpu = rng.random(), rng.uniform(0, 100)
        history = [
            MetricsSample(
                cluster_id=f"c{c}", tenant_org_id=f"t{c % 500}", taken_at=now,
                stats=ClusterStats(health="green", nodes=nodes, heap_max_bytes=nodes * GiB,
                                   heap_used_bytes=int(heap * nodes * GiB),
                                   disk_total_bytes=10**12, disk_free_bytes=rng.randint(10**10, 10**12),
                                   per_index=indices),
                rates=OperationRates(search_per_s=rng.uniform(0, 500), search_latency_ms=rng.uniform(1, 900)),
                load=ClusterLoad(engine_cpu_percent=cpu, search_queue=rng.randint(0, 20),
                                 search_rejected=rng.choice((0, 0, 0, 5)), write_rejected=0),
                index_rates={i.name: OperationRates(search_per_s=rng.uniform(0, 500)) for i in indices},
            )
            for _ in range(samples)
        ]
        fleet.append((nodes, history))
    return fleet


def measure(clusters: int, rounds: int) -> str:
    policy = ShardPolicy()
    fleet = synthetic_fleet(clusters, policy.sustain_samples)
    scaling = ScalingPolicy()
    now = datetime.now(timezone.utc)
    timings, changing = [], 0
    for _ in range(rounds):
        started = time.perf_counter()
        plans = [plan_shards(f"c{i}", nodes, scaling, history, policy, now, None)
                 for i, (nodes, history) in enumerate(fleet)]
        timings.append(time.perf_counter() - started)
        changing = sum(p.changes_anything for p in plans)
    median = statistics.median(timings)
    return (f"shard plans for {clusters} clusters ({policy.sustain_samples} samples each, {changing} with changes), "
            f"{rounds} rounds: median {median:.3f} s  min {min(timings):.3f}  max {max(timings):.3f}   "
            f"target < 1 s   {'PASS' if median < 1 else 'MISS'}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clusters", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(measure(args.clusters, args.rounds))


if __name__ == "__main__":
    main()
