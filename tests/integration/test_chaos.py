"""A short chaos run (bench/chaos.py): two clusters under traffic while NATS, two manager replicas,
the shard controller, reporting and engine nodes are SIGKILLed at random, node counts are asked
at random and busy loops take the CPU. Afterwards every acknowledged write is found, every
cluster is ready at the node count last asked for, no engine process is orphaned or twinned,
no status went back to `requested`, and no request failed that a kill does not explain.

It runs its own platform (NATS included, which it kills), not the session's.
"""

from __future__ import annotations

import pytest

from bench.chaos import ChaosConfig, run_chaos

SHORT = ChaosConfig(seconds=75, clusters=2, max_nodes=2, cpu_hogs=2, pause_s=(3.0, 6.0), settle_s=150,
                    recovery_cap_s=120)


@pytest.mark.engine
def test_chaos_run_keeps_every_write_and_settles_at_the_asked_size():
    report = run_chaos(SHORT)

    summary = "\n".join(report.lines)
    assert report.violations == [], summary
    # the run did what it claims: each kind of fault at least once, writes acknowledged
    for kind in ("kill nats", "kill manager", "kill shard_controller", "kill reporting", "node-count request"):
        assert report.counts[kind] >= 1, f"no {kind} in the run:\n{summary}"
    assert report.counts["kill engine node 1"] + report.counts["kill engine node > 1"] >= 1, summary
    assert report.acked > 100, summary
