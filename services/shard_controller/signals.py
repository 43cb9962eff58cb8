"""What the samples of a sustain window say about a cluster's own load: each pressure the planner
may add a node for, whether the cluster served any request, whether its load is gone.

Only the cluster's own figures are read here (its engine processes' CPU, heap, disk, thread-pool
queues and rejections, search latency, its request counters); the host's never reach a sample.
Pure: samples in, values out.
"""

from __future__ import annotations

from dataclasses import dataclass

from libs.common.events import MetricsSample
from libs.common.settings import ShardPolicySection


@dataclass(frozen=True)
class Pressure:
    what: str  # the threshold crossed, in words that stay the same from sample to sample
    latest: str  # the latest sample's figure (or the window's count), told when the node count changes
    lasting: bool = True  # held in every sample of the window (refusals and the shard budget need not)

    def told(self, with_figure: bool) -> str:
        return f"{self.what} ({self.latest})" if with_figure else self.what


def tell(pressed: list[Pressure], over: str, with_figures: bool) -> str:
    """The pressures in words: those that held the whole window ("... for 3 samples"), then the rest."""
    lasting = [p.told(with_figures) for p in pressed if p.lasting]
    rest = [p.told(with_figures) for p in pressed if not p.lasting]
    return ", ".join(([", ".join(lasting) + f" for {over}"] if lasting else []) + rest)


def heap_used(sample: MetricsSample) -> float:
    stats = sample.stats
    return stats.heap_used_bytes / stats.heap_max_bytes if stats.heap_max_bytes else 0.0


def heap_live(sample: MetricsSample) -> float:
    """The heap an idle JVM still needs: what its last old-generation collection left (garbage
    waits there until the old generation fills, so heap used says little once a node is quiet)."""
    stats = sample.stats
    return (stats.heap_live_bytes or stats.heap_used_bytes) / stats.heap_max_bytes if stats.heap_max_bytes else 0.0


def disk_used(sample: MetricsSample) -> float:
    total = sample.stats.disk_total_bytes
    return 1 - sample.stats.disk_free_bytes / total if total else 0.0


def longest_queue(sample: MetricsSample) -> int:
    return max(sample.load.search_queue, sample.load.write_queue)


def served_requests(window: list[MetricsSample]) -> bool:
    """Whether requests reached the engine in the window: its search or write counters moved, or
    it rejected some (a rejected request counts in neither)."""
    return any((s.rates.search_per_s or 0) > 0 or (s.rates.indexing_per_s or 0) > 0 or s.load.rejected > 0
               for s in window)


def pressures(window: list[MetricsSample], policy: ShardPolicySection) -> list[Pressure]:
    """The pressures that held in every sample of the window, and the rejections within it."""
    latest = window[-1]
    found: list[Pressure] = []

    def held(test) -> bool:
        return all(test(s) for s in window)

    if held(lambda s: s.load.engine_cpu_percent is not None and s.load.engine_cpu_percent > policy.cpu_high):
        found.append(Pressure(f"engine CPU above {policy.cpu_high:g} % of its CPUs",
                              f"{latest.load.engine_cpu_percent:.0f} %"))
    if held(lambda s: heap_used(s) > policy.heap_high):
        found.append(Pressure(f"heap above {policy.heap_high:.0%}", f"{heap_used(latest):.0%}"))
    if held(lambda s: disk_used(s) > policy.disk_used_high):
        found.append(Pressure(f"disk above {policy.disk_used_high:.0%} used", f"{disk_used(latest):.0%}"))
    if held(lambda s: longest_queue(s) > policy.pool_queue_high):
        found.append(Pressure(f"more than {policy.pool_queue_high} searches or writes queued on a node",
                              f"{longest_queue(latest)} queued"))
    if held(lambda s: (s.rates.search_latency_ms or 0) > policy.search_latency_high_ms):
        found.append(Pressure(f"search latency above {policy.search_latency_high_ms:g} ms",
                              f"{latest.rates.search_latency_ms:.0f} ms"))
    rejected = sum(s.load.rejected for s in window)
    if rejected >= policy.rejections_high:
        found.append(Pressure("searches or writes refused, a pool full or memory short",
                              f"{rejected} in {len(window)} sample{'s' if len(window) > 1 else ''}", lasting=False))
    return found


def load_gone(window: list[MetricsSample], policy: ShardPolicySection) -> bool:
    """Engine CPU and live heap below their low marks in every sample, nothing queued or refused."""
    return all(
        s.load.engine_cpu_percent is not None and s.load.engine_cpu_percent < policy.cpu_low
        and heap_live(s) < policy.heap_low and longest_queue(s) == 0 and s.load.rejected == 0
        for s in window
    )
