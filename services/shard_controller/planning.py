"""Pure decisions of the shard controller: from recent samples, the cluster's policy and the
platform's, a `ShardPlan` (node count, replicas per index, splits) and why. It decides how many
nodes, never which: the manager's driver knows its nodes and drains those that go.

No I/O: the same samples and time always give the same plan. A "do nothing" plan has a reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

from libs.common.events import MetricsSample
from libs.common.models import ScalingPolicy
from libs.common.settings import ShardPolicySection
from services.shard_controller.signals import Pressure, load_gone, pressures, served_requests, tell

GB = 10**9


# The platform's policy is the shard controller's settings section itself: its thresholds and
# their defaults are declared once, in libs/common/settings.py. Tests and benchmarks build one
# with keyword overrides, as from any settings class (unset fields read their `ESS_` variable).
ShardPolicy = ShardPolicySection


@dataclass(frozen=True)
class ShardPlan:
    cluster_id: str
    nodes: int  # the node count to have
    replicas: dict[str, int]  # index -> replicas to have (changed ones only)
    splits: dict[str, int]  # index -> primaries to reshard to
    reason: str
    current_nodes: int = 0

    @property
    def changes_anything(self) -> bool:
        return self.nodes != self.current_nodes or bool(self.replicas or self.splits)


@dataclass
class _Reasons:
    parts: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.parts.append(text)

    def text(self, fallback: str) -> str:
        return "; ".join(self.parts) or fallback


def _sustained(samples: list[MetricsSample], n: int, test) -> bool:
    return len(samples) >= n and all(test(s) for s in samples[-n:])


def _search_per_copy(s: MetricsSample, index: str) -> float | None:
    stats = next((i for i in s.stats.per_index if i.name == index), None)
    rate = s.index_rates.get(index)
    if stats is None or rate is None or rate.search_per_s is None:
        return None
    return rate.search_per_s / (stats.primaries * (1 + stats.replicas))


def _shard_budget(latest: MetricsSample, policy: ShardPolicy) -> tuple[int, int]:
    """Shard copies the cluster holds, and how many one node's heap affords."""
    heap_gb_per_node = latest.stats.heap_max_bytes / max(latest.stats.nodes, 1) / 2**30
    budget = max(1, int(policy.shards_per_gb_heap * heap_gb_per_node))
    return sum(i.primaries * (1 + i.replicas) for i in latest.stats.per_index), budget


def _node_count(nodes: int, scaling: ScalingPolicy, samples: list[MetricsSample],
                policy: ShardPolicy) -> tuple[int, str | None]:
    """The node count to have and why (None: within policy). Out on the tenant's own pressure while
    it sends requests, in once its load is gone; a reason that keeps the count stays word for word
    the same from sample to sample, so an unchanged decision is not published again."""
    if nodes < scaling.min_nodes:
        return scaling.min_nodes, f"below the tenant's minimum of {scaling.min_nodes} nodes"
    if nodes > scaling.max_nodes:
        return scaling.max_nodes, f"above the tenant's maximum of {scaling.max_nodes} nodes"
    n = policy.sustain_samples
    over = f"{n} sample{'s' if n > 1 else ''}"
    if len(samples) < n:
        return nodes, f"node count kept until {over} are in"
    window = samples[-n:]
    copies, budget = _shard_budget(window[-1], policy)
    pressed = pressures(window, policy)
    if copies > budget * nodes:
        pressed.append(Pressure(f"shard copies beyond {budget} per node", f"{copies} on {nodes} node(s)",
                                lasting=False))
    busy = served_requests(window)
    if pressed and not busy:
        return nodes, f"no searches or writes in the last {over}: not scaled out for " + tell(pressed, over, False)
    if pressed and nodes >= scaling.max_nodes:
        return nodes, tell(pressed, over, False) + f", but at the tenant's maximum of {scaling.max_nodes} nodes"
    if pressed:
        return nodes + 1, tell(pressed, over, True)
    if load_gone(window, policy) and nodes > scaling.min_nodes and copies <= budget * (nodes - 1):
        return nodes - 1, (f"load gone: engine CPU below {policy.cpu_low:g} % of its CPUs and live heap below "
                           f"{policy.heap_low:.0%} for {over}, nothing queued or refused")
    if not busy:
        return nodes, f"no searches or writes in the last {over}: nothing to scale out for"
    return nodes, None


def plan_shards(
    cluster_id: str,
    nodes: int,
    scaling: ScalingPolicy,
    samples: list[MetricsSample],
    policy: ShardPolicy,
    now: datetime,
    last_action_at: datetime | None,
) -> ShardPlan:
    """The plan for one cluster; `samples` are its recent metric samples, oldest first."""
    def nothing(reason: str) -> ShardPlan:
        return ShardPlan(cluster_id, nodes, {}, {}, reason, nodes)

    if not scaling.autoscaling:
        return nothing("autoscaling is off for this cluster (pinned by the tenant)")
    if not samples:
        return nothing("no metrics yet")
    latest = samples[-1]
    if latest.stats.health == "red":
        return nothing("cluster is red: no changes until it recovers")
    why = _Reasons()
    n = policy.sustain_samples

    # -- node count: bounds first, then the cluster's own load --------------------------------
    target, node_reason = _node_count(nodes, scaling, samples, policy)
    if node_reason:
        why.add(node_reason)
    cooling = last_action_at is not None and (now - last_action_at).total_seconds() < policy.cooldown_s
    if target != nodes and cooling and scaling.min_nodes <= nodes <= scaling.max_nodes:
        why.parts.clear()
        why.add(f"would change nodes {nodes} -> {target} but is cooling down after the last action")
        target = nodes

    # -- replicas per index: by search load per shard copy, within what the nodes allow --------
    replicas: dict[str, int] = {}
    most = max(target - 1, 0)
    least = 1 if target > 1 else 0
    for index in latest.stats.per_index:
        wanted = index.replicas
        hot = _sustained(samples, n, lambda s: (r := _search_per_copy(s, index.name)) is not None
                         and r > policy.search_per_shard_high)
        cold = _sustained(samples, n, lambda s: (r := _search_per_copy(s, index.name)) is not None
                          and r < policy.search_per_shard_low)
        if hot and not cooling and index.replicas < most:
            wanted = index.replicas + 1
            why.add(f"{index.name}: search above {policy.search_per_shard_high:g}/s per shard copy")
        elif cold and not cooling and index.replicas > least:
            wanted = index.replicas - 1
            why.add(f"{index.name}: search below {policy.search_per_shard_low:g}/s per shard copy")
        bounded = min(max(wanted, least), most)
        if bounded != wanted:
            why.add(f"{index.name}: {target} node(s) hold {bounded} replica(s)")
        if bounded != index.replicas:
            replicas[index.name] = bounded

    # -- splits: primaries beyond the target size ---------------------------------------
    splits: dict[str, int] = {}
    for index in latest.stats.per_index:
        per_primary = index.primary_store_bytes / index.primaries
        if per_primary > policy.shard_target_max_gb * GB and index.primaries < policy.max_primaries and not cooling:
            wanted = max(index.primaries + 1, math.ceil(index.primary_store_bytes / (policy.shard_target_gb * GB)))
            splits[index.name] = min(wanted, policy.max_primaries)
            why.add(f"{index.name}: primaries of {per_primary / GB:.1f} GB exceed {policy.shard_target_max_gb:g} GB")

    return ShardPlan(cluster_id, target, replicas, splits, why.text("within policy: nothing to change"), nodes)
